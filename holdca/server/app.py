"""The reference XRPC server: a small Starlette app around a :class:`~holdca.hold.HoldCA`.

Routes:

==========================================  ================================================
``POST /xrpc/io.atcr.hold.coSignManifest``  co-sign an image for the caller's DID (below)
``POST /xrpc/io.atcr.hold.reSignManifest``  same body; a fresh signature for an older image
``POST /xrpc/io.atcr.hold.revokeCertificates`` the caller revokes its own certificates
``POST /xrpc/io.atcr.hold.allowIssuance``   the caller lifts the denial its own
                                            keyCompromise revocation made
``GET /ca.crt``                             the root new leaves chain to (PEM)
``GET /ca-bundle.crt``                      every trusted root incl. a rotation's old one
``GET /ca.crl``                             the active CA's CRL (DER, built once per change);
                                            ``?ca=<16 hex>``: the CRL of that CA (what
                                            certificates name: every CA has its own)
                                            ``&p=<period>``: that CA's partition CRL
                                            (``2025-01-06``, ``2025-W02``: what leaves
                                            name; ``all`` or none: the full CRL)
``GET /crl/<16 hex>[-<period>].crl``        the same, for ``HOLD_CRL_URL`` with ``{ca}``
``POST /ocsp``, ``GET /ocsp/<base64>``      OCSP (RFC 6960 appendix A; cached answers)
``POST /tsa``                               the hold's RFC 3161 TSA (``HOLD_TSA=local``)
``GET /log/checkpoint``, ``/log/tile/...``  the transparency log, read-only (``HOLD_LOG_DIR``;
                                            :mod:`holdca.server.logfiles`)
==========================================  ================================================

Request body of the two XRPC procedures::

    {"userDid": "did:plc:...", "recordUri": "at://did:plc:.../io.atcr.manifest/<rkey>",
     "manifest": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": "sha256:...", "size": 1234},
     "proof": "<optional base64 getRecord CAR: a hint, checked for freshness>"}

The seed's ``manifestDigest`` is accepted in place of ``manifest.digest``. A
``didDocument`` in the body is ignored: the hold resolves the DID itself. An optional
``"signatureFormat": "jws" | "cose"`` (or the media type) picks the envelope format; the
answer's ``signatureFormat`` is the envelope's media type.

``revokeCertificates`` takes ``{"reason": "keyCompromise" | "superseded" |
"cessationOfOperation" | "unspecified", "serials": ["<hex>", ...]}`` or ``"since":
"<ISO 8601>"`` instead of serials (neither: every certificate of the caller's DID) and
answers ``{"revoked": [{"serial", "revokedAt", "reason"}]}``; only certificates of the
authenticated caller's DID are ever revoked. ``allowIssuance`` takes ``{}`` and answers
``{"lifted": true | false}``.

**Callers authenticate** with ATProto service auth by default: ``Authorization: Bearer
<JWT>`` minted by the user's PDS (``com.atproto.server.getServiceAuth`` with ``aud`` = the
hold's DID and ``lxm`` = the method), verified by :class:`holdca.hold.auth.ServiceAuth`;
the token's ``iss`` is the caller the hold's authorizer judges (by default it must be
``userDid``). An embedder may pass its own ``authenticate(request) -> caller`` instead, or
run without authentication only with ``insecure_no_auth=True``.

Errors are XRPC JSON, ``{"error": "...", "message": "..."}``: 400 bad input or proof, 401
authentication (the error names what was wrong: ``MissingJwt``, ``BadJwtSignature``,
``JwtExpired``, ...), 403 authorisation or policy, 404/405 unknown route or method, 408 a
stalled upload, 413 a body over the limit, 429 rate limit, 502 the user's PDS or DID could
not be fetched, 500/503 hold failure (details stay in the server log).

Example::

    app = create_app(hold_ca)                 # service auth through hold_ca's resolver
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from holdca.errors import (
    AddressRefusedError,
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    HoldCAError,
    LedgerError,
    MalformedInputError,
    OCSPRequestError,
    PolicyError,
    RateLimitError,
    ResolutionError,
    VerificationError,
)
from holdca.hold.auth import ServiceAuth
from holdca.hold.crlparts import period_from_url
from holdca.hold.service import CosignRequest, HoldCA
from holdca.notation import Descriptor
from holdca.notation.formats import SignatureFormat
from holdca.pki import decode_ocsp_get
from holdca.server.limits import (
    DEFAULT_BODY_TIMEOUT,
    ClientBudget,
    XRPCError,
    parse_json,
    read_body,
)
from holdca.server.logfiles import log_routes

__all__ = [
    "ALLOW_NSID",
    "COSIGN_NSID",
    "DEFAULT_MAX_BODY",
    "RESIGN_NSID",
    "REVOKE_NSID",
    "Authenticate",
    "create_app",
    "error_for",
]

COSIGN_NSID: Final = "io.atcr.hold.coSignManifest"
RESIGN_NSID: Final = "io.atcr.hold.reSignManifest"
REVOKE_NSID: Final = "io.atcr.hold.revokeCertificates"
ALLOW_NSID: Final = "io.atcr.hold.allowIssuance"
_MAX_SERIALS: Final = 1000

DEFAULT_MAX_BODY: Final = 256 * 1024
"""Largest request body accepted (a getRecord CAR hint is a few kB)."""

if TYPE_CHECKING:
    from holdca.server.metrics import HoldMetrics

_MAX_OCSP_BODY: Final = 64 * 1024
_log = logging.getLogger("holdca.server")

Authenticate = Callable[[Request], "str | Awaitable[str | None] | None"]
"""An embedder's authentication hook: the caller's identity, or raise AuthenticationError."""


def error_for(exc: HoldCAError) -> XRPCError:
    """Map a holdca error to the XRPC error a client sees (no internal details on 5xx)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return XRPCError(401, exc.error, message, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, AuthorizationError):
        return XRPCError(403, "Forbidden", message)
    if isinstance(exc, RateLimitError):
        return XRPCError(429, "RateLimitExceeded", message)
    if isinstance(exc, MalformedInputError):
        return XRPCError(400, "InvalidRequest", message)
    if isinstance(exc, AddressRefusedError):
        return XRPCError(400, "InvalidRequest", message)
    if isinstance(exc, ResolutionError):
        return XRPCError(502, "UpstreamFailure", message)
    if isinstance(exc, VerificationError):
        return XRPCError(400, "InvalidProof", message)
    if isinstance(exc, PolicyError):
        return XRPCError(403, "Forbidden", message)
    if isinstance(exc, LedgerError):
        return XRPCError(503, "NotEnoughResources", "the hold could not record the issuance")
    if isinstance(exc, ConfigError):
        return XRPCError(500, "InternalServerError", "the hold is misconfigured")
    return XRPCError(500, "InternalServerError", "the hold could not complete the request")


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise XRPCError(400, "InvalidRequest", f"{key!r} is missing or not a {kind.__name__}")
    return value


def _parse_cosign(body: bytes, caller: str | None) -> CosignRequest:
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise XRPCError(400, "InvalidRequest", "the body must be a JSON object")
    manifest = _field(obj, "manifest", dict)
    digest = manifest.get("digest", obj.get("manifestDigest"))
    alias = obj.get("manifestDigest")
    if alias is not None and alias != digest:
        raise XRPCError(400, "InvalidRequest", "manifestDigest differs from manifest.digest")
    hint = None
    if obj.get("proof") is not None:
        try:
            hint = base64.b64decode(_field(obj, "proof", str), validate=True)
        except (binascii.Error, ValueError):
            raise XRPCError(400, "InvalidRequest", "'proof' is not base64") from None
    if not isinstance(digest, str):
        raise XRPCError(400, "InvalidRequest", "'manifest.digest' is missing or not a str")
    try:
        descriptor = Descriptor(
            media_type=_field(manifest, "mediaType", str),
            digest=digest,
            size=_field(manifest, "size", int),
        )
    except MalformedInputError as exc:
        raise XRPCError(400, "InvalidRequest", f"manifest: {exc}") from None
    envelope_format = None
    if obj.get("signatureFormat") is not None:
        try:
            envelope_format = SignatureFormat.parse(
                _field(obj, "signatureFormat", str), "signatureFormat"
            )
        except MalformedInputError as exc:
            raise XRPCError(400, "InvalidRequest", str(exc)) from None
    return CosignRequest(
        did=_field(obj, "userDid", str),
        descriptor=descriptor,
        record_uri=_field(obj, "recordUri", str),
        proof_hint=hint,
        caller=caller,
        signature_format=envelope_format,
    )


def _authenticated(caller: str | None) -> str:
    if caller is None:
        raise XRPCError(401, "AuthenticationRequired", "this method needs an authenticated caller")
    return caller


def _parse_revocation(body: bytes) -> tuple[list[int] | None, datetime | None, str]:
    """``{"reason", "serials"?: [hex], "since"?: ISO 8601}`` of revokeCertificates."""
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise XRPCError(400, "InvalidRequest", "the body must be a JSON object")
    reason = _field(obj, "reason", str)
    serials = None
    if obj.get("serials") is not None:
        raw = _field(obj, "serials", list)
        if not 1 <= len(raw) <= _MAX_SERIALS:
            raise XRPCError(400, "InvalidRequest", f"'serials' must list 1 to {_MAX_SERIALS}")
        serials = []
        for item in raw:
            text = item.lower().removeprefix("0x") if isinstance(item, str) else ""
            if not 1 <= len(text) <= 40 or any(ch not in "0123456789abcdef" for ch in text):
                raise XRPCError(400, "InvalidRequest", "'serials' must be hexadecimal strings")
            serials.append(int(text, 16))
    since = None
    if obj.get("since") is not None:
        try:
            since = datetime.fromisoformat(_field(obj, "since", str).replace("Z", "+00:00"))
        except ValueError:
            raise XRPCError(400, "InvalidRequest", "'since' is not an ISO 8601 time") from None
        if since.tzinfo is None:
            raise XRPCError(400, "InvalidRequest", "'since' needs a time zone (Z)")
    return serials, since, reason


def create_app(
    ca: HoldCA,
    *,
    auth: ServiceAuth | None = None,
    authenticate: Authenticate | None = None,
    insecure_no_auth: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ocsp_budget: ClientBudget | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics: HoldMetrics | None = None,
    log_dir: Path | str | None = None,
) -> Starlette:
    """Build the Starlette app serving ``ca``.

    Args:
        ca: the hold.
        auth: the service-auth verifier (default: one over ``ca``'s resolver and ledger,
            audience ``ca.hold_did``).
        authenticate: instead of service auth, the embedder's hook: returns the caller's
            identity for a request (sync or async), or raises AuthenticationError (401) or
            AuthorizationError (403). The HoldCA's authorizer then decides whether the
            caller may act for the DID.
        insecure_no_auth: accept every caller as anonymous (``caller=None``). For tests and
            closed networks only: the hold's authorizer must then allow anonymous callers.
        max_body: request size limit in bytes.
        body_timeout: seconds a client has to send its request body.
        ocsp_budget: per-client budget of OCSP answers that need a new signature (default:
            20 a second, bursts of 100); cached answers are not counted.
        clock: the time source (tests pass a fixed clock).
        metrics: count each OCSP and CRL request's outcome into these and serve them at
            ``GET /metrics`` (:func:`holdca.server.metrics.instrument` feeds the rest).
        log_dir: serve this transparency log directory read-only under ``/log/``
            (default: the directory of ``ca.transparency``, if the hold has a log).

    Raises:
        ConfigError: service auth is wanted but ``ca`` has no resolver; or both
            ``authenticate`` and ``insecure_no_auth``.
    """
    if authenticate is not None and insecure_no_auth:
        raise ConfigError("give either authenticate= or insecure_no_auth=True, not both")
    if authenticate is None and not insecure_no_auth and auth is None:
        if ca.gate is None:
            raise ConfigError("service auth needs the hold's resolver (HoldCA(resolver=...))")
        auth = ServiceAuth(ca.gate.resolver, ca.ledger, audience=ca.hold_did, observer=ca.watch)
    budget = ocsp_budget if ocsp_budget is not None else ClientBudget(rate=20, burst=100)

    async def caller_of(request: Request, nsid: str) -> str | None:
        if insecure_no_auth:
            return None
        if authenticate is not None:
            result = authenticate(request)
            if isinstance(result, Awaitable):
                result = await result
            return result
        assert auth is not None
        header = request.headers.get("authorization")
        return await run_in_threadpool(auth.authenticate, header, lxm=nsid, now=clock())

    def procedure(
        nsid: str, operation: str, run: Callable[[bytes, str | None], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """An XRPC procedure: authenticate for ``nsid``, read the body, ``run`` it in a
        worker thread (it may raise XRPCError or HoldCAError), answer its JSON."""

        async def handler(request: Request) -> Response:
            caller = None
            try:
                try:
                    caller = await caller_of(request, nsid)
                except (AuthenticationError, AuthorizationError) as exc:
                    ca.audit.refused(
                        operation="authenticate", did=None, caller=None, error=exc, now=clock()
                    )
                    raise
                body = await read_body(request, max_body, body_timeout)
                result = await run_in_threadpool(run, body, caller)
            except XRPCError as exc:
                ca.audit.refused(
                    operation=operation, did=None, caller=caller, error=exc, now=clock()
                )
                return exc.response()
            except HoldCAError as exc:  # audited by the HoldCA (or above, for auth)
                err = error_for(exc)
                if err.status >= 500:
                    _log.error("%s failed: %s: %s", operation, type(exc).__name__, str(exc)[:500])
                return err.response()
            return JSONResponse(result)

        return handler

    def signing(kind: str) -> Callable[[bytes, str | None], dict[str, Any]]:
        def run(body: bytes, caller: str | None) -> dict[str, Any]:
            method = ca.cosign if kind == "cosign" else ca.resign
            return method(_parse_cosign(body, caller), now=clock()).to_json()

        return run

    def revoke_certificates(body: bytes, caller: str | None) -> dict[str, Any]:
        serials, since, reason = _parse_revocation(body)
        revoked = ca.revoke_own(
            _authenticated(caller), now=clock(), reason=reason, serials=serials, since=since
        )
        return {
            "revoked": [
                {
                    "serial": format(r.serial, "x"),
                    "revokedAt": r.revoked_at.isoformat(),
                    "reason": r.reason,
                }
                for r in revoked
            ]
        }

    def allow_issuance(body: bytes, caller: str | None) -> dict[str, Any]:
        parse_json(body or b"{}")
        lifted = ca.lift_own_denial(_authenticated(caller), now=clock())
        return {"lifted": lifted is not None}

    async def ca_crt(request: Request) -> Response:
        pem = ca.root_certificate.public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")

    async def ca_bundle(request: Request) -> Response:
        certs = ca.trust_bundle(clock())
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        return Response(pem, media_type="application/x-pem-file")

    async def ca_crl(request: Request) -> Response:
        key = request.path_params.get("key") or request.query_params.get("ca")
        period = request.query_params.get("p")
        if key is not None and "-" in key:  # /crl/<16 hex>-<period>.crl
            key, _, period = key.partition("-")
        now = clock()
        try:
            period_from_url(period)  # a bad one is the client's fault (400), not logged
        except MalformedInputError as exc:
            return error_for(exc).response()
        crl_der: Callable[[datetime], bytes] = functools.partial(ca.crl_der, period=period)
        if key is not None:
            named = ca.state(now).by_key(key)
            if named is None:
                return XRPCError(404, "NotFound", "no CA of this hold has that id").response()
            crl_der = functools.partial(ca.crl_der, ca_id=named.ca_id, period=period)
        try:
            if metrics is None:
                der = await run_in_threadpool(crl_der, now)
            else:
                der = await run_in_threadpool(metrics.serve_crl, crl_der, now)
        except HoldCAError as exc:
            _log.error("CRL failed: %s: %s", type(exc).__name__, str(exc)[:500])
            return error_for(exc).response()
        return Response(der, media_type="application/pkix-crl")

    def may_sign(request: Request) -> Callable[[], bool]:
        client = request.client.host if request.client is not None else "-"
        return lambda: budget.take(client)

    async def answer_ocsp(request: Request, body: bytes) -> Response:
        budget = may_sign(request)
        if metrics is None:
            der = await run_in_threadpool(ca.ocsp, body, now=clock(), may_sign=budget)
        else:
            der = await run_in_threadpool(
                metrics.answer_ocsp, ca.ocsp, body, now=clock(), may_sign=budget
            )
        return Response(der, media_type="application/ocsp-response")

    async def ocsp_post(request: Request) -> Response:
        try:
            body = await read_body(request, _MAX_OCSP_BODY, body_timeout)
        except XRPCError as exc:
            return exc.response()
        return await answer_ocsp(request, body)

    async def ocsp_get(request: Request) -> Response:
        try:
            body = decode_ocsp_get(request.path_params["encoded"])
        except OCSPRequestError:
            body = b""  # answered malformedRequest
        return await answer_ocsp(request, body)

    async def tsa_post(request: Request) -> Response:
        """RFC 3161 over HTTP: a DER TimeStampReq in, a TimeStampResp out (404 without a
        built-in TSA; a malformed request gets HTTP 400 and a rejection; the signing
        budget is the OCSP responder's)."""
        from holdca.errors import TimestampError  # noqa: PLC0415
        from holdca.notation.timestamp import MAX_REQUEST_SIZE, MEDIA_TYPE_REPLY  # noqa: PLC0415
        from holdca.notation.timestamp_tsa import LocalTSA, rejection_response  # noqa: PLC0415

        tsa = getattr(ca, "timestamper", None)
        if not isinstance(tsa, LocalTSA):
            return XRPCError(404, "NotFound", "this hold runs no TSA").response()
        try:
            body = await read_body(request, MAX_REQUEST_SIZE, body_timeout)
        except XRPCError as exc:
            return exc.response()
        if not may_sign(request)():
            reply = rejection_response("busy, retry later", fail_info="system_failure")
            return Response(reply, status_code=429, media_type=MEDIA_TYPE_REPLY)
        try:
            reply = await run_in_threadpool(tsa.respond, body, now=clock())
        except TimestampError as exc:
            reply = rejection_response(str(exc), fail_info="bad_request")
            return Response(reply, status_code=400, media_type=MEDIA_TYPE_REPLY)
        return Response(reply, media_type=MEDIA_TYPE_REPLY)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        return XRPCError(
            exc.status_code, names.get(exc.status_code, "InvalidRequest"), str(exc.detail)
        ).response()

    async def internal_error(request: Request, exc: Exception) -> Response:
        _log.error("unhandled %s on %s", type(exc).__name__, request.url.path)
        # Starlette re-raises the exception after this response and uvicorn then closes
        # the connection: say so, or a keep-alive client's next request meets a reset.
        return XRPCError(
            500,
            "InternalServerError",
            "the hold could not complete the request",
            {"Connection": "close"},
        ).response()

    routes = [
        Route(
            f"/xrpc/{COSIGN_NSID}",
            procedure(COSIGN_NSID, "cosign", signing("cosign")),
            methods=["POST"],
        ),
        Route(
            f"/xrpc/{RESIGN_NSID}",
            procedure(RESIGN_NSID, "resign", signing("resign")),
            methods=["POST"],
        ),
        Route(
            f"/xrpc/{REVOKE_NSID}",
            procedure(REVOKE_NSID, "revokeCertificates", revoke_certificates),
            methods=["POST"],
        ),
        Route(
            f"/xrpc/{ALLOW_NSID}",
            procedure(ALLOW_NSID, "allowIssuance", allow_issuance),
            methods=["POST"],
        ),
        Route("/ca.crt", ca_crt, methods=["GET"]),
        Route("/ca-bundle.crt", ca_bundle, methods=["GET"]),
        Route("/ca.crl", ca_crl, methods=["GET"]),
        Route("/crl/{key}.crl", ca_crl, methods=["GET"]),
        Route("/ocsp", ocsp_post, methods=["POST"]),
        Route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"]),
        Route("/tsa", tsa_post, methods=["POST"]),
    ]
    if metrics is not None:
        routes.append(metrics.route())
    if log_dir is None and ca.transparency is not None:
        log_dir = ca.transparency.root
    if log_dir is not None:
        routes.extend(log_routes(log_dir))
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
