"""RFC 3161 timestamp requests: build a ``TimeStampReq`` as notation sends it, parse one
strictly (:class:`TimestampRequest`).

* :func:`build_request`: v1, a messageImprint with NULL parameters, a random nonce, certReq.
* :func:`parse_request`: DER only, bounded by
  :data:`~holdca.notation.timestamp_core.MAX_REQUEST_SIZE`, version 1, sha256/sha384/sha512,
  a positive nonce, no extensions.

Sans-I/O; every malformed input raises :class:`~holdca.errors.TimestampError`. Every
public name is also importable from :mod:`holdca.notation.timestamp`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from asn1crypto import algos, core, tsp

from holdca.errors import TimestampError
from holdca.notation.timestamp_core import (
    HASH_ALGORITHMS,
    MAX_REQUEST_SIZE,
    checked_hash_name,
    guarded_parse,
    imprint_digest,
)

__all__ = ["TimestampRequest", "build_request", "parse_request"]


@dataclass(frozen=True)
class TimestampRequest:
    """A parsed TimeStampReq.

    Attributes:
        hash_algorithm: ``'sha256'``, ``'sha384'`` or ``'sha512'``.
        digest: the hashed message.
        nonce: the request's nonce, or None.
        cert_req: whether the TSA must include its certificate.
        policy: the requested policy OID (dotted), or None.
        message_imprint: the DER MessageImprint, as sent (a reply must echo it byte-exact).
        der: the whole request.
    """

    hash_algorithm: str
    digest: bytes
    nonce: int | None
    cert_req: bool
    policy: str | None
    message_imprint: bytes
    der: bytes


def build_request(
    data: bytes,
    *,
    hash_algorithm: str = "sha256",
    nonce: int | None = None,
    cert_req: bool = True,
) -> TimestampRequest:
    """A TimeStampReq over ``data`` as notation sends it: v1, messageImprint with NULL
    parameters, a random 127-bit nonce (unless given), certReq, no policy or extensions.

    Raises:
        TimestampError: ``hash_algorithm`` is not sha256/sha384/sha512.
        ValueError: ``nonce`` is not a positive int.
    """
    name = checked_hash_name(hash_algorithm, "timestamp request")
    if nonce is None:
        nonce = secrets.randbits(127) | 1 << 120
    elif isinstance(nonce, bool) or nonce <= 0:
        raise ValueError("nonce must be a positive int")
    imprint = tsp.MessageImprint(
        {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": name, "parameters": core.Null()}),
            "hashed_message": imprint_digest(name, data),
        }
    )
    der = tsp.TimeStampReq(
        {"version": "v1", "message_imprint": imprint, "nonce": nonce, "cert_req": cert_req}
    ).dump()
    return parse_request(der)


def parse_request(der: bytes) -> TimestampRequest:
    """Parse a DER TimeStampReq strictly.

    Checked: at most :data:`MAX_REQUEST_SIZE` bytes, DER with nothing trailing, version 1,
    a sha256/sha384/sha512 imprint whose length fits the hash, a positive nonce if present,
    no extensions (none is supported, so a critical one could not be honoured).

    Raises:
        TimestampError: naming what is wrong.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TimestampError("timestamp request: not bytes")
    der = bytes(der)
    if len(der) > MAX_REQUEST_SIZE:
        raise TimestampError(f"timestamp request: larger than {MAX_REQUEST_SIZE} bytes")

    def parse() -> TimestampRequest:
        req = tsp.TimeStampReq.load(der, strict=True)
        if req.dump(force=True) != der:
            raise TimestampError("timestamp request: not DER")
        if req["version"].native != "v1":
            raise TimestampError("timestamp request: version is not 1")
        imprint = req["message_imprint"]
        name = checked_hash_name(imprint["hash_algorithm"]["algorithm"].native, "timestamp request")
        digest = imprint["hashed_message"].native
        if len(digest) != HASH_ALGORITHMS[name]().digest_size:
            raise TimestampError("timestamp request: the imprint's length does not fit its hash")
        nonce = req["nonce"].native
        if nonce is not None and nonce <= 0:
            raise TimestampError("timestamp request: the nonce is not positive")
        if req["extensions"].native:
            raise TimestampError("timestamp request: extensions are not supported")
        policy = req["req_policy"].native
        return TimestampRequest(
            hash_algorithm=name,
            digest=digest,
            nonce=nonce,
            cert_req=bool(req["cert_req"].native),
            policy=req["req_policy"].dotted if policy is not None else None,
            message_imprint=imprint.dump(),
            der=der,
        )

    return guarded_parse("timestamp request", parse)
