"""ATProto inter-service auth tokens: parse and check the JWT a user's PDS mints.

A caller proves it acts for a DID with ``Authorization: Bearer <JWT>`` minted by its PDS
(``com.atproto.server.getServiceAuth``) and signed by the DID's ``#atproto`` key. This
module is the sans-I/O part: :func:`parse_service_token` checks the structure,
:func:`check_claims` the claims against the hold and the method and ``now``,
:func:`verify_token_signature` the signature against a key the caller did NOT choose (the
hold resolves ``iss`` itself; see :class:`holdca.hold.auth.ServiceAuth`).

Rules (atproto xrpc-server ``verifyJwt``, made stricter where the reference is lax):

* three base64url segments (no padding, canonical), at most :data:`MAX_TOKEN_LENGTH`;
  header and payload are JSON objects without duplicate keys;
* header ``alg`` is ``ES256K`` or ``ES256`` (never ``none``, ``HS256``, ...) and matches the
  key's curve; ``typ``, when present, is not an access, refresh or DPoP token type;
* ``iss`` is a bare account DID (did:plc / did:web, no ``#service`` fragment), ``aud`` is the
  hold's DID, ``lxm`` is the called method, ``jti`` is present (replays are refused by the
  caller of this module), ``exp`` is in the future and at most ``max_lifetime`` after
  ``now``, ``iat`` is present, not in the future beyond the clock skew, and
  ``exp - iat <= max_lifetime``;
* the signature is 64 bytes ``r || s``, low-S (the reference accepts high-S for JWTs;
  holdca does not), ECDSA-SHA256 over ``header.payload``.

Every failure raises :class:`~holdca.errors.AuthenticationError` whose ``error`` is the
XRPC error name the reference uses (``BadJwt``, ``BadJwtType``, ``JwtExpired``,
``BadJwtAudience``, ``BadJwtLexiconMethod``, ``BadJwtIss``, ``BadJwtSignature``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from holdca._json import strict_json
from holdca.atproto.did import validate_account_did
from holdca.atproto.didkey import PublicKey
from holdca.errors import AuthenticationError, DIDSyntaxError, SignatureInvalidError

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_LIFETIME",
    "MAX_TOKEN_LENGTH",
    "ServiceToken",
    "check_claims",
    "parse_service_token",
    "verify_token_signature",
]

MAX_TOKEN_LENGTH: Final = 8192
"""Longest token accepted, in characters (a PDS token is about 400)."""

DEFAULT_MAX_LIFETIME: Final = timedelta(minutes=5)
"""Longest a token may live (``exp - iat``, and ``exp - now``); a PDS mints 60 s tokens."""

DEFAULT_CLOCK_SKEW: Final = timedelta(seconds=30)
"""How far the PDS's clock may run ahead of the hold's for ``iat``."""

_ALGS: Final = frozenset({"ES256K", "ES256"})
_FORBIDDEN_TYPES: Final = frozenset({"at+jwt", "refresh+jwt", "dpop+jwt"})
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]+")
_JTI: Final = re.compile(r"[\x21-\x7e]{1,128}")
_NSID_MAX: Final = 317
_MAX_TIME: Final = 253402300800  # 10000-01-01T00:00:00Z: datetime cannot go past year 9999


def _fail(message: str, error: str = "BadJwt") -> AuthenticationError:
    return AuthenticationError(message, error=error)


def _b64url(segment: str, what: str) -> bytes:
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise _fail(f"jwt {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _fail(f"jwt {what} is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise _fail(f"jwt {what} is not canonical base64url")  # non-zero padding bits
    return raw


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    value = strict_json(raw, f"jwt {what}", _fail)
    if not isinstance(value, dict):
        raise _fail(f"jwt {what} is not a JSON object")
    return value


def _time(payload: dict[str, Any], claim: str) -> datetime:
    value = payload.get(claim)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < _MAX_TIME:
        raise _fail(f"jwt lacks a numeric {claim!r} claim")
    return datetime.fromtimestamp(value, UTC)


def _string(payload: dict[str, Any], claim: str, limit: int) -> str:
    value = payload.get(claim)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise _fail(f"jwt lacks a string {claim!r} claim")
    return value


@dataclass(frozen=True)
class ServiceToken:
    """A structurally valid service-auth JWT (claims and signature not yet checked).

    Attributes:
        alg: ``ES256K`` or ``ES256``.
        iss: the issuer (claimed; the signature proves it).
        aud: the audience DID.
        lxm: the method the token is bound to.
        jti: the token's unique id.
        exp: expiry.
        iat: issue time.
        signing_input: ``header.payload`` as ASCII bytes (what is signed).
        signature: the 64 signature bytes as sent.
    """

    alg: str
    iss: str
    aud: str
    lxm: str | None
    jti: str | None
    exp: datetime
    iat: datetime | None
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    @property
    def replay_key(self) -> str:
        """What identifies this token for the replay cache: ``iss`` and ``jti``."""
        return f"{self.iss} {self.jti}"


def parse_service_token(token: object) -> ServiceToken:
    """Parse ``token`` (the text after ``Bearer ``); check its structure and types.

    Raises:
        AuthenticationError: not a token holdca accepts (``BadJwt``, ``BadJwtType``).
    """
    if not isinstance(token, str) or not token:
        raise _fail("missing jwt", "MissingJwt")
    if len(token) > MAX_TOKEN_LENGTH:
        raise _fail(f"jwt longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise _fail("poorly formatted jwt")
    header = _json_object(_b64url(parts[0], "header"), "header")
    payload = _json_object(_b64url(parts[1], "payload"), "payload")
    signature = _b64url(parts[2], "signature")
    alg = header.get("alg")
    if alg not in _ALGS:
        shown = str(alg)[:20] if isinstance(alg, str) else type(alg).__name__
        raise _fail(f"jwt alg {shown!r} is not ES256K or ES256")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() in _FORBIDDEN_TYPES):
        raise _fail(f"invalid jwt type {str(typ)[:20]!r}", "BadJwtType")
    if "crit" in header:
        raise _fail("jwt header 'crit' is not supported")
    lxm = payload.get("lxm")
    jti = payload.get("jti")
    if lxm is not None and (not isinstance(lxm, str) or len(lxm) > _NSID_MAX):
        raise _fail("jwt 'lxm' claim is not a method name")
    if jti is not None and (not isinstance(jti, str) or not _JTI.fullmatch(jti)):
        raise _fail("jwt 'jti' claim is not a short printable string")
    return ServiceToken(
        alg=str(alg),
        iss=_string(payload, "iss", 2048),
        aud=_string(payload, "aud", 2048),
        lxm=lxm,
        jti=jti,
        exp=_time(payload, "exp"),
        iat=_time(payload, "iat") if "iat" in payload else None,
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=signature,
    )


def check_claims(
    token: ServiceToken,
    *,
    audience: str,
    lxm: str,
    now: datetime,
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> str:
    """Check the claims of ``token`` for a call of ``lxm`` on the service ``audience``.

    Returns:
        ``iss``, an account DID.

    Raises:
        AuthenticationError: expired (``JwtExpired``), living too long, issued in the
            future, wrong audience (``BadJwtAudience``), wrong or missing method
            (``BadJwtLexiconMethod``), no ``jti`` or ``iat``, ``iss`` not a bare account
            DID (``BadJwtIss``).
    """
    if now >= token.exp:
        raise _fail("jwt expired", "JwtExpired")
    if token.exp - now > max_lifetime:
        raise _fail(f"jwt expires too far ahead (at most {max_lifetime} from now)")
    if token.iat is None:
        raise _fail("jwt lacks an 'iat' claim")
    if token.iat > now + clock_skew:
        raise _fail("jwt was issued in the future ('iat')")
    if token.exp - token.iat > max_lifetime:
        raise _fail(f"jwt lifetime (exp - iat) is over {max_lifetime}")
    if token.aud != audience:
        raise _fail("jwt audience does not match service did", "BadJwtAudience")
    if token.lxm != lxm:
        what = "missing" if token.lxm is None else "bad"
        raise _fail(f'{what} jwt lexicon method ("lxm"). must match: {lxm}', "BadJwtLexiconMethod")
    if token.jti is None:
        raise _fail("jwt lacks a 'jti' claim (needed to refuse replays)")
    try:
        return validate_account_did(token.iss)
    except DIDSyntaxError:
        raise _fail("jwt iss is not an account did (did:plc or did:web)", "BadJwtIss") from None


def verify_token_signature(token: ServiceToken, key: PublicKey) -> None:
    """Check the signature of ``token`` with ``key`` (the resolved ``iss`` key).

    Raises:
        AuthenticationError: ``BadJwtSignature``: the header's ``alg`` is not the key's,
            or the signature is not 64-byte low-S ECDSA over the signing input.
    """
    if token.alg != key.jwt_alg:
        raise _fail(
            f"jwt alg {token.alg} does not match the issuer's {key.jwt_alg} key",
            "BadJwtSignature",
        )
    try:
        key.verify(token.signing_input, token.signature)
    except SignatureInvalidError:
        raise _fail("jwt signature does not match jwt issuer", "BadJwtSignature") from None
