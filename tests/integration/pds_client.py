"""A small typed client for the reference PDS and PLC directory the integration tests run.

It speaks plain XRPC / PLC HTTP (httpx) and builds PLC operations with holdca's own DAG-CBOR,
CID and signing helpers, so a test can drive the real network: create accounts and records,
fetch getRecord CARs and service-auth tokens, read DID documents and the PLC audit log, and
rotate an account's ``#atproto`` key or tombstone the DID with a recovery key the test holds.

Every request goes to 127.0.0.1: a ``localhost`` URL (the PDS's dev-mode public URL, the one
its DID documents name) is connected to as ``127.0.0.1``, so no name is ever looked up.
A non-2xx answer raises :class:`XRPCError` with the server's error body.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import coincurve
import httpx

from holdca.atproto import dagcbor
from holdca.atproto.cid import CID
from holdca.atproto.didkey import PublicKey
from holdca.testing.atproto import sign_k256

__all__ = ["ATProtoClient", "Account", "XRPCError", "b64url_decode", "did_key_of", "jwt_claims"]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


class XRPCError(Exception):
    """A non-2xx answer from the PDS or the PLC directory.

    Attributes:
        method, url: the request.
        status: the HTTP status.
        error: the XRPC ``error`` name (e.g. ``RecordNotFound``), or None.
        message: the ``message`` of the body, or the body text.
        body: the parsed JSON body, or None when it was not JSON.
    """

    def __init__(self, method: str, url: str, status: int, text: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        self.body: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
        self.error: str | None = None
        self.message: str = text[:2000]
        if self.body is not None:
            error = self.body.get("error")
            self.error = error if isinstance(error, str) else None
            message = self.body.get("message")
            if isinstance(message, str):
                self.message = message
        super().__init__(f"{method} {url} -> HTTP {status} {self.error or ''}: {self.message}")


@dataclass(frozen=True)
class Account:
    """An account created on the PDS (the secrets stay out of repr)."""

    did: str
    handle: str
    access_jwt: str = field(repr=False)
    refresh_jwt: str = field(repr=False)
    password: str = field(repr=False)


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS (not verified)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"not a compact JWT ({len(parts)} parts)")
    claims = json.loads(b64url_decode(parts[1]))
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not a JSON object")
    return claims


def did_key_of(private_key: coincurve.PrivateKey) -> str:
    """The ``did:key:zQ3s...`` of a K-256 private key."""
    return PublicKey("k256", private_key.public_key.format(compressed=True)).did_key


def _loopback(url: str) -> str:
    """``url`` with a ``localhost`` host replaced by ``127.0.0.1``."""
    parts = urlsplit(url.rstrip("/"))
    if parts.hostname == "localhost":
        netloc = "127.0.0.1" + (f":{parts.port}" if parts.port is not None else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _split_uri(uri: str) -> tuple[str, str, str]:
    if not uri.startswith("at://"):
        raise ValueError(f"not an at:// URI: {uri!r}")
    pieces = uri[len("at://") :].split("/")
    if len(pieces) != 3 or not all(pieces):
        raise ValueError(f"not a record URI (at://did/collection/rkey): {uri!r}")
    return pieces[0], pieces[1], pieces[2]


class ATProtoClient:
    """XRPC calls to one PDS and HTTP calls to one PLC directory.

    Args:
        pds_url: the PDS's base URL (``http://localhost:<port>``).
        plc_url: the PLC directory's base URL.
        timeout: per-request timeout in seconds.
    """

    def __init__(self, pds_url: str, plc_url: str, *, timeout: float = 30.0) -> None:
        self.pds_url = pds_url.rstrip("/")
        self.plc_url = plc_url.rstrip("/")
        self._pds = _loopback(self.pds_url)
        self._plc = _loopback(self.plc_url)
        self._http = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = self._http.request(method, url, params=params, json=body, headers=headers)
        if not 200 <= response.status_code < 300:
            raise XRPCError(method, url, response.status_code, response.text)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise XRPCError(
                response.request.method,
                str(response.request.url),
                response.status_code,
                f"answer is not JSON: {response.text[:200]!r}",
            ) from exc

    def xrpc_get(
        self, nsid: str, params: dict[str, str], *, token: str | None = None
    ) -> httpx.Response:
        """GET ``{pds}/xrpc/{nsid}`` (raises :class:`XRPCError` unless 2xx)."""
        return self._request("GET", f"{self._pds}/xrpc/{nsid}", params=params, token=token)

    def xrpc_post(
        self, nsid: str, body: dict[str, Any], *, token: str | None = None
    ) -> dict[str, Any]:
        """POST JSON to ``{pds}/xrpc/{nsid}``; the JSON answer ({} when empty)."""
        response = self._request("POST", f"{self._pds}/xrpc/{nsid}", body=body, token=token)
        if not response.content:
            return {}
        out = self._json(response)
        if not isinstance(out, dict):
            raise XRPCError("POST", nsid, response.status_code, "answer is not a JSON object")
        return out

    # --- accounts and records -----------------------------------------------------------

    def create_account(
        self, handle: str | None = None, *, recovery_key: str | None = None
    ) -> Account:
        """com.atproto.server.createAccount: a new did:plc account.

        Args:
            handle: default ``u<hex>.test``.
            recovery_key: a ``did:key`` the PDS puts first in the DID's PLC rotationKeys.
        """
        handle = handle or f"u{secrets.token_hex(6)}.test"
        password = secrets.token_urlsafe(18)
        body: dict[str, Any] = {
            "handle": handle,
            "email": f"{handle}@example.com",  # required; no mail is sent (no SMTP configured)
            "password": password,
        }
        if recovery_key is not None:
            body["recoveryKey"] = recovery_key
        out = self.xrpc_post("com.atproto.server.createAccount", body)
        return Account(
            did=out["did"],
            handle=out["handle"],
            access_jwt=out["accessJwt"],
            refresh_jwt=out["refreshJwt"],
            password=password,
        )

    def create_record(
        self,
        account: Account,
        collection: str,
        record: dict[str, Any],
        rkey: str | None = None,
    ) -> tuple[str, str]:
        """com.atproto.repo.createRecord (lexicon validation left to the PDS's default);
        returns (uri, cid)."""
        body: dict[str, Any] = {"repo": account.did, "collection": collection, "record": record}
        if rkey is not None:
            body["rkey"] = rkey
        out = self.xrpc_post("com.atproto.repo.createRecord", body, token=account.access_jwt)
        return out["uri"], out["cid"]

    def put_record(
        self, account: Account, collection: str, rkey: str, record: dict[str, Any]
    ) -> tuple[str, str]:
        """com.atproto.repo.putRecord (create or replace); returns (uri, cid)."""
        body = {"repo": account.did, "collection": collection, "rkey": rkey, "record": record}
        out = self.xrpc_post("com.atproto.repo.putRecord", body, token=account.access_jwt)
        return out["uri"], out["cid"]

    def delete_record(self, account: Account, uri: str) -> None:
        """com.atproto.repo.deleteRecord of ``at://<did>/<collection>/<rkey>``."""
        did, collection, rkey = _split_uri(uri)
        if did != account.did:
            raise ValueError(f"{uri} is not in the repo of {account.did}")
        body = {"repo": did, "collection": collection, "rkey": rkey}
        self.xrpc_post("com.atproto.repo.deleteRecord", body, token=account.access_jwt)

    def get_record_car(self, did: str, collection: str, rkey: str) -> bytes:
        """com.atproto.sync.getRecord: the CAR (commit, MST path, record)."""
        params = {"did": did, "collection": collection, "rkey": rkey}
        return self.xrpc_get("com.atproto.sync.getRecord", params).content

    def get_latest_commit(self, did: str) -> tuple[str, str]:
        """com.atproto.sync.getLatestCommit: (commit CID, rev)."""
        out = self._json(self.xrpc_get("com.atproto.sync.getLatestCommit", {"did": did}))
        return out["cid"], out["rev"]

    def get_service_auth(self, account: Account, aud: str, lxm: str, exp: int | None = None) -> str:
        """com.atproto.server.getServiceAuth: a service-auth JWT for ``aud`` and ``lxm``."""
        params = {"aud": aud, "lxm": lxm}
        if exp is not None:
            params["exp"] = str(exp)
        response = self.xrpc_get(
            "com.atproto.server.getServiceAuth", params, token=account.access_jwt
        )
        token = self._json(response)["token"]
        assert isinstance(token, str)
        return token

    # --- the PLC directory --------------------------------------------------------------

    def _plc_get(self, path: str) -> Any:
        return self._json(self._request("GET", f"{self._plc}/{path}"))

    def did_document(self, did: str) -> dict[str, Any]:
        """GET {plc}/{did}: the DID document."""
        doc = self._plc_get(did)
        assert isinstance(doc, dict)
        return doc

    def plc_audit_log(self, did: str) -> list[dict[str, Any]]:
        """GET {plc}/{did}/log/audit: every operation with its cid, nullified and createdAt."""
        log = self._plc_get(f"{did}/log/audit")
        assert isinstance(log, list)
        return log

    def plc_data(self, did: str) -> dict[str, Any]:
        """GET {plc}/{did}/data: the current state (rotationKeys, verificationMethods, ...)."""
        data = self._plc_get(f"{did}/data")
        assert isinstance(data, dict)
        return data

    def update_atproto_key(
        self,
        did: str,
        recovery_private_key: coincurve.PrivateKey,
        new_atproto_did_key: str,
    ) -> str:
        """Replace the DID's ``#atproto`` key with a PLC operation signed by a rotation key.

        The operation carries the current state with ``verificationMethods.atproto`` replaced
        and ``prev`` = the CID of the last (non-nullified) operation. The key must be one of
        the DID's rotationKeys (pass its did:key as ``recovery_key`` to :meth:`create_account`).

        Returns:
            The new operation's CID (base32 ``b...``), as the directory's audit log lists it.
        """
        data = self._check_rotation_key(did, recovery_private_key)
        prev = self._last_cid(did)
        operation: dict[str, Any] = {
            "type": "plc_operation",
            "rotationKeys": list(data["rotationKeys"]),
            "verificationMethods": {**data["verificationMethods"], "atproto": new_atproto_did_key},
            "alsoKnownAs": list(data["alsoKnownAs"]),
            "services": data["services"],
            "prev": prev,
        }
        return self._post_signed(did, operation, recovery_private_key)

    def tombstone(self, did: str, recovery_private_key: coincurve.PrivateKey) -> str:
        """Deactivate the DID for good: a ``plc_tombstone`` operation signed by a rotation key.

        The operation is ``{"type": "plc_tombstone", "prev": <CID of the last operation>}``
        plus its signature; after it the directory's audit log ends in the tombstone and
        nothing may follow it.

        Returns:
            The tombstone's CID, as the directory's audit log lists it.
        """
        self._check_rotation_key(did, recovery_private_key)
        operation: dict[str, Any] = {"type": "plc_tombstone", "prev": self._last_cid(did)}
        return self._post_signed(did, operation, recovery_private_key)

    def _check_rotation_key(self, did: str, key: coincurve.PrivateKey) -> dict[str, Any]:
        data = self.plc_data(did)
        signer = did_key_of(key)
        if signer not in data["rotationKeys"]:
            raise ValueError(f"{signer} is not a rotation key of {did}: {data['rotationKeys']}")
        return data

    def _last_cid(self, did: str) -> str:
        log = [entry for entry in self.plc_audit_log(did) if not entry.get("nullified")]
        if not log:
            raise ValueError(f"the PLC audit log of {did} is empty")
        cid = log[-1]["cid"]
        assert isinstance(cid, str)
        return cid

    def _post_signed(self, did: str, operation: dict[str, Any], key: coincurve.PrivateKey) -> str:
        """Sign ``operation`` (DAG-CBOR without ``sig``), POST it; its CID."""
        operation["sig"] = _b64url(sign_k256(key, dagcbor.encode(operation)))
        cid = str(CID.for_dag_cbor(dagcbor.encode(operation)))
        self._request("POST", f"{self._plc}/{did}", body=operation)
        return cid
