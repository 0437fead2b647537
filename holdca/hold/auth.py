"""Callers prove who they are: ATProto service-auth verification for the hold's endpoints.

:class:`ServiceAuth` checks the ``Authorization: Bearer <JWT>`` a user's PDS minted
(``com.atproto.server.getServiceAuth``): the token's structure and claims
(:mod:`holdca.atproto.serviceauth`: alg, ``aud`` = the hold, ``lxm`` = the method, a
bounded ``exp``, ``iat``, ``jti``), then the signature with the ``#atproto`` key of ``iss``
as the hold's own resolver finds it (one re-resolution when it fails: the key may have just
rotated), then that the ``jti`` was never used (the ledger's used-token table, so that a
token replayed to another replica sharing the ledger is refused too).

With an ``observer`` (the hold's :class:`~holdca.hold.watch.DIDWatch`), the fresh
re-resolution after a failed signature is reported to it (``seen``, or ``gone`` when
``iss`` turned out deactivated): that is the resolution that refreshes the hold's
knowledge. The first, cached resolution is not (it may be up to ``HOLD_IDENTITY_TTL``
old). A LedgerError from ``seen`` is raised (the caller is not authenticated on knowledge
the hold could not record); one from ``gone`` is logged (the token is refused anyway).

The authenticated ``iss`` is the caller the :class:`~holdca.hold.policy.Authorizer` then
judges (by default a caller may act only for its own DID).

Example::

    auth = ServiceAuth(resolver, ledger, audience="did:web:hold.example.com")
    caller = auth.authenticate(request.headers.get("authorization"),
                               lxm="io.atcr.hold.coSignManifest", now=datetime.now(UTC))
"""

from __future__ import annotations

from datetime import datetime, timedelta

from holdca.atproto.identity import Resolver
from holdca.atproto.serviceauth import (
    DEFAULT_CLOCK_SKEW,
    DEFAULT_MAX_LIFETIME,
    check_claims,
    parse_service_token,
    verify_token_signature,
)
from holdca.errors import (
    AuthenticationError,
    MalformedInputError,
    ReplayError,
    ResolutionError,
    VerificationError,
)
from holdca.hold.ledger import IssuanceLedger
from holdca.hold.watch import DIDObserver, resolve_observed

__all__ = ["ServiceAuth", "bearer_token"]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value.

    Raises:
        AuthenticationError: no header (``MissingJwt``) or another scheme (``BadJwt``).
    """
    if authorization is None or not authorization.strip():
        raise AuthenticationError("missing jwt (Authorization: Bearer <token>)", error="MissingJwt")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header is not a Bearer token", error="BadJwt")
    return token.strip()


class ServiceAuth:
    """Verifies service-auth tokens for one hold (see the module docstring). Thread-safe."""

    def __init__(
        self,
        resolver: Resolver,
        ledger: IssuanceLedger,
        *,
        audience: str,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        observer: DIDObserver | None = None,
    ) -> None:
        """Verify tokens for the service DID ``audience``.

        Args:
            resolver: how ``iss`` is resolved to its key (the hold's own resolver).
            ledger: where used ``jti`` values are kept until their token expires.
            audience: the hold's DID (the ``aud`` every token must name).
            max_lifetime: longest token lifetime accepted.
            clock_skew: how far ``iat`` may be ahead of ``now``.
            observer: told of the fresh re-resolution (see the module docstring).
        """
        self.resolver = resolver
        self.ledger = ledger
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.clock_skew = clock_skew
        self.observer = observer

    def authenticate(self, authorization: str | None, *, lxm: str, now: datetime) -> str:
        """The DID that signed the request's token, for a call of ``lxm``.

        Raises:
            AuthenticationError: no, malformed, expired or forged token; wrong audience or
                method; ``iss`` unresolvable; ReplayError: its ``jti`` was already used.
            LedgerError: the used-token table could not be written, or the observer could
                not record what the fresh re-resolution showed.
        """
        token = parse_service_token(bearer_token(authorization))
        iss = check_claims(
            token,
            audience=self.audience,
            lxm=lxm,
            now=now,
            max_lifetime=self.max_lifetime,
            clock_skew=self.clock_skew,
        )
        try:
            identity = self.resolver.resolve(iss)
            try:
                verify_token_signature(token, identity.signing_key)
            except AuthenticationError:
                fresh = resolve_observed(self.resolver, iss, self.observer, now=now)
                if fresh.same_keys(identity):
                    raise
                verify_token_signature(token, fresh.signing_key)
        except ResolutionError as exc:
            raise AuthenticationError(
                f"the jwt issuer {iss} could not be resolved: {exc}", error="BadJwtIss"
            ) from None
        except AuthenticationError:
            raise
        except (VerificationError, MalformedInputError) as exc:  # a bad DID log or document
            raise AuthenticationError(
                f"the jwt issuer {iss} has no usable key: {exc}", error="BadJwtIss"
            ) from None
        if not self.ledger.use_token(token.replay_key, expires_at=token.exp, now=now):
            raise ReplayError("this jwt was already used (its jti was seen before)")
        return iss

    def __repr__(self) -> str:
        return f"<ServiceAuth aud={self.audience}>"
