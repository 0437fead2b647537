"""RFC 3161 timestamp countersignatures for Notation signatures (notary.x509 only).

The :class:`Timestamper` protocol is the one interface envelope builders use; holdca has
two: :class:`holdca.notation.timestamp_http.HTTPTimestamper` (an external TSA, the
``HOLD_TSA_URL``) and :class:`holdca.notation.timestamp_tsa.LocalTSA` (the hold's own).

This module is sans-I/O: bytes (and explicit certificates) in, checked values out. It
gathers the public names of three modules:

* :mod:`holdca.notation.timestamp_core`: :class:`Timestamper`, the media types, size
  limits and hashes, :func:`check_policy_oid`, and the helpers the other two share.
* :mod:`holdca.notation.timestamp_request`: :func:`build_request` / :func:`parse_request`:
  a DER ``TimeStampReq`` (:class:`TimestampRequest`).
* :mod:`holdca.notation.timestamp_token`: :func:`verify_token`: check a DER
  ``TimeStampToken`` as notation v1.3.2 (tspclient-go) does, returning its
  :class:`TimestampInfo`; :func:`check_response`: check a DER ``TimeStampResp`` against
  the request it answers (status, messageImprint byte-equal, nonce) and then its token;
  :func:`check_tsa_roots`.

Every malformed or failing input raises :class:`~holdca.errors.TimestampError`; sizes are
bounded by :data:`MAX_REQUEST_SIZE` and :data:`MAX_TOKEN_SIZE`.
"""

from __future__ import annotations

from holdca.notation.timestamp_core import (
    HASH_ALGORITHMS,
    MAX_REQUEST_SIZE,
    MAX_TOKEN_SIZE,
    MEDIA_TYPE_QUERY,
    MEDIA_TYPE_REPLY,
    Timestamper,
    check_policy_oid,
)
from holdca.notation.timestamp_request import TimestampRequest, build_request, parse_request
from holdca.notation.timestamp_token import (
    TimestampInfo,
    check_response,
    check_tsa_roots,
    verify_token,
)

__all__ = [
    "HASH_ALGORITHMS",
    "MAX_REQUEST_SIZE",
    "MAX_TOKEN_SIZE",
    "MEDIA_TYPE_QUERY",
    "MEDIA_TYPE_REPLY",
    "TimestampInfo",
    "TimestampRequest",
    "Timestamper",
    "build_request",
    "check_policy_oid",
    "check_response",
    "check_tsa_roots",
    "parse_request",
    "verify_token",
]
