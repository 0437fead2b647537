"""The reference XRPC server: a small Starlette app around a :class:`~holdca.hold.HoldCA`.

Optional (``pip install 'holdca[server]'``); nothing in holdca's core imports it.

Routes:

======================================  ====================================================
``POST /xrpc/io.atcr.hold.coSignManifest``  JSON request -> co-signature (see below)
``POST /xrpc/io.atcr.hold.reSignManifest``  same body; a fresh signature for an old image
``GET /ca.crt``                         the root new leaves chain to (PEM)
``GET /ca-bundle.crt``                  every trusted root incl. a rotation's old one (PEM)
``GET /ca.crl``                         the active CA's CRL (DER, ``application/pkix-crl``)
``POST /ocsp``, ``GET /ocsp/<base64>``  OCSP (RFC 6960 appendix A; SHA-1 CertIDs accepted)
======================================  ====================================================

Request body of the two XRPC procedures::

    {"userDid": "did:plc:...", "recordUri": "at://did:plc:.../io.atcr.manifest/<rkey>",
     "manifest": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": "sha256:...", "size": 1234},
     "proof": "<base64 getRecord CAR>", "didDocument": {...DID document JSON...}}

Errors are XRPC-style JSON, ``{"error": "InvalidRequest", "message": "..."}``, with HTTP
400 (bad input or proof), 401/403 (authentication/authorisation), 413 (body over the
limit), 429 (rate limit), 500/503 (hold failure). The embedder authenticates callers
with ``authenticate(request) -> caller | None`` (raise AuthorizationError to refuse).

Example::

    app = create_app(hold_ca, authenticate=my_service_token_check)
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from holdca.errors import (
    AuthorizationError,
    ConfigError,
    HoldCAError,
    LedgerError,
    MalformedInputError,
    OCSPRequestError,
    PolicyError,
    RateLimitError,
    VerificationError,
)
from holdca.hold.service import CosignRequest, HoldCA
from holdca.notation import Descriptor
from holdca.pki import decode_ocsp_get

__all__ = ["DEFAULT_MAX_BODY", "XRPCError", "create_app", "error_for"]

DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""Largest request body accepted (a getRecord CAR is a few kB)."""

_MAX_OCSP_BODY = 64 * 1024
_log = logging.getLogger("holdca.server")

Authenticate = Callable[[Request], "str | Awaitable[str | None] | None"]


class XRPCError(Exception):
    """An XRPC error response: HTTP status, error name and message."""

    def __init__(self, status: int, error: str, message: str) -> None:
        """Describe the error."""
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message

    def response(self) -> JSONResponse:
        """The JSON response."""
        return JSONResponse({"error": self.error, "message": self.message}, self.status)


def error_for(exc: HoldCAError) -> XRPCError:
    """Map a holdca error to the XRPC error a client sees."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, AuthorizationError):
        return XRPCError(403, "Forbidden", message)
    if isinstance(exc, RateLimitError):
        return XRPCError(429, "RateLimitExceeded", message)
    if isinstance(exc, MalformedInputError):
        return XRPCError(400, "InvalidRequest", message)
    if isinstance(exc, VerificationError):
        return XRPCError(400, "InvalidProof", message)
    if isinstance(exc, PolicyError):
        return XRPCError(403, "Forbidden", message)
    if isinstance(exc, LedgerError):
        return XRPCError(503, "NotEnoughResources", "the hold could not record the issuance")
    if isinstance(exc, ConfigError):
        return XRPCError(500, "InternalServerError", "the hold is misconfigured")
    return XRPCError(500, "InternalServerError", "the hold could not complete the request")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise XRPCError(413, "PayloadTooLarge", f"request body over {limit} bytes")
        except ValueError:
            raise XRPCError(400, "InvalidRequest", "bad Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise XRPCError(413, "PayloadTooLarge", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _field(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise XRPCError(400, "InvalidRequest", f"{key!r} is missing or not a {kind.__name__}")
    return value


def _parse_cosign(body: bytes, caller: str | None) -> CosignRequest:
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise XRPCError(400, "InvalidRequest", "the body is not JSON") from None
    if not isinstance(obj, dict):
        raise XRPCError(400, "InvalidRequest", "the body must be a JSON object")
    manifest = _field(obj, "manifest", dict)
    try:
        proof = base64.b64decode(_field(obj, "proof", str), validate=True)
    except (binascii.Error, ValueError):
        raise XRPCError(400, "InvalidRequest", "'proof' is not base64") from None
    doc = obj.get("didDocument")
    if isinstance(doc, dict):
        doc_bytes = json.dumps(doc).encode()
    elif isinstance(doc, str):
        doc_bytes = doc.encode()
    else:
        raise XRPCError(400, "InvalidRequest", "'didDocument' is missing")
    try:
        descriptor = Descriptor(
            media_type=_field(manifest, "mediaType", str),
            digest=_field(manifest, "digest", str),
            size=_field(manifest, "size", int),
        )
    except MalformedInputError as exc:
        raise XRPCError(400, "InvalidRequest", f"manifest: {exc}") from None
    digest = obj.get("manifestDigest")
    if digest is not None and digest != descriptor.digest:
        raise XRPCError(400, "InvalidRequest", "manifestDigest differs from manifest.digest")
    return CosignRequest(
        did=_field(obj, "userDid", str),
        descriptor=descriptor,
        record_uri=_field(obj, "recordUri", str),
        record_car=proof,
        did_document=doc_bytes,
        caller=caller,
    )


def create_app(
    ca: HoldCA,
    *,
    authenticate: Authenticate | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    """Build the Starlette app serving ``ca``.

    Args:
        ca: the hold.
        authenticate: returns the caller's identity for a request (sync or async), or
            ``None`` for an anonymous request; raise AuthorizationError to refuse (401).
            The HoldCA's authorizer then decides whether the caller may act for the DID.
        max_body: request size limit in bytes.
        clock: the time source (tests pass a fixed clock).
    """

    async def caller_of(request: Request) -> str | None:
        if authenticate is None:
            return None
        try:
            result = authenticate(request)
            if isinstance(result, Awaitable):
                result = await result
        except AuthorizationError as exc:
            raise XRPCError(401, "AuthenticationRequired", str(exc)) from None
        return result

    def procedure(kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            try:
                caller = await caller_of(request)
                body = await _body(request, max_body)
                req = _parse_cosign(body, caller)
                method = ca.cosign if kind == "cosign" else ca.resign
                result = await run_in_threadpool(method, req, now=clock())
            except XRPCError as exc:
                return exc.response()
            except HoldCAError as exc:
                err = error_for(exc)
                if err.status >= 500:
                    _log.error("%s failed: %s", kind, exc)
                return err.response()
            return JSONResponse(result.to_json())

        return handler

    async def ca_crt(request: Request) -> Response:
        pem = ca.root_certificate.public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")

    async def ca_bundle(request: Request) -> Response:
        certs = ca.trust_bundle(clock())
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        return Response(pem, media_type="application/x-pem-file")

    async def ca_crl(request: Request) -> Response:
        try:
            crl = await run_in_threadpool(ca.crl, clock())
        except HoldCAError as exc:
            _log.error("CRL failed: %s", exc)
            return error_for(exc).response()
        return Response(
            crl.public_bytes(serialization.Encoding.DER), media_type="application/pkix-crl"
        )

    async def ocsp_post(request: Request) -> Response:
        try:
            body = await _body(request, _MAX_OCSP_BODY)
        except XRPCError as exc:
            return exc.response()
        der = await run_in_threadpool(ca.ocsp, body, now=clock())
        return Response(der, media_type="application/ocsp-response")

    async def ocsp_get(request: Request) -> Response:
        try:
            body = decode_ocsp_get(request.path_params["encoded"])
        except OCSPRequestError:
            body = b""  # respond_ocsp answers malformedRequest
        der = await run_in_threadpool(ca.ocsp, body, now=clock())
        return Response(der, media_type="application/ocsp-response")

    routes = [
        Route("/xrpc/io.atcr.hold.coSignManifest", procedure("cosign"), methods=["POST"]),
        Route("/xrpc/io.atcr.hold.reSignManifest", procedure("resign"), methods=["POST"]),
        Route("/ca.crt", ca_crt, methods=["GET"]),
        Route("/ca-bundle.crt", ca_bundle, methods=["GET"]),
        Route("/ca.crl", ca_crl, methods=["GET"]),
        Route("/ocsp", ocsp_post, methods=["POST"]),
        Route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"]),
    ]
    return Starlette(routes=routes)
