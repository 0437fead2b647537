"""atproto identifier syntax: NSID, record key, TID, MST keys and record ``at://`` URIs.

Rules (atproto-website specs nsid / record-key / tid / at-uri-scheme / repository; checked against
the interop-tests ``syntax/*.txt`` lists):

* NSID: at least three ``.``-separated segments, at most 317 characters; domain segments 1-63
  characters of ``[a-zA-Z0-9-]`` not starting or ending with ``-``, the first starting with a
  letter; the name segment 1-63 characters of ``[a-zA-Z0-9]`` starting with a letter.
* Record key: 1-512 characters of ``[a-zA-Z0-9_~.:-]``, not ``.`` or ``..``.
* TID: 13 characters of base32-sortable ``[2-7a-z]``, the first in ``[2-7a-j]``.
* Record URI (what holdca verifies): exactly ``at://<did>/<nsid>/<rkey>``.

Example::

    >>> parse_record_uri("at://did:plc:6boi5tm4syehwjst6cei357y/io.atcr.manifest/3mbflm3ks6o2r")
    ('did:plc:6boi5tm4syehwjst6cei357y', 'io.atcr.manifest', '3mbflm3ks6o2r')
"""

from __future__ import annotations

import re
from typing import Final

from holdca.atproto.did import DID_PATTERN, MAX_DID_LENGTH, validate_did
from holdca.errors import ATURIError, DIDSyntaxError

__all__ = [
    "MAX_MST_KEY_LENGTH",
    "mst_key",
    "parse_record_uri",
    "tid_timestamp_us",
    "validate_nsid",
    "validate_record_key",
    "validate_tid",
]

MAX_MST_KEY_LENGTH: Final = 1024
"""Longest ``<collection>/<rkey>`` repository path accepted."""

_NSID: Final = re.compile(
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)
_RKEY: Final = re.compile(r"[a-zA-Z0-9_~.:-]{1,512}")
_RECORD_URI: Final = re.compile(f"at://({DID_PATTERN})/({_NSID.pattern})/({_RKEY.pattern})")
_TID: Final = re.compile(r"[2-7a-j][2-7a-z]{12}")
_B32_SORTABLE: Final = "234567abcdefghijklmnopqrstuvwxyz"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_nsid(nsid: object) -> str:
    """Check NSID syntax and return ``nsid`` unchanged.

    Raises:
        ATURIError: not a string or not a valid NSID.
    """
    if not isinstance(nsid, str) or len(nsid) > 317 or not _NSID.fullmatch(nsid):
        raise ATURIError(f"invalid NSID: {_shown(nsid)}")
    return nsid


def validate_record_key(rkey: object) -> str:
    """Check record-key syntax and return ``rkey`` unchanged.

    Raises:
        ATURIError: not a string or not a valid record key.
    """
    if not isinstance(rkey, str) or not _RKEY.fullmatch(rkey) or rkey in (".", ".."):
        raise ATURIError(f"invalid record key: {_shown(rkey)}")
    return rkey


def validate_tid(tid: object) -> str:
    """Check TID syntax and return ``tid`` unchanged.

    Raises:
        ATURIError: not a string or not a valid TID.
    """
    if not isinstance(tid, str) or not _TID.fullmatch(tid):
        raise ATURIError(f"invalid TID: {_shown(tid)}")
    return tid


def tid_timestamp_us(tid: object) -> int:
    """Microseconds since the Unix epoch encoded in a TID (its top 53 bits after the zero bit).

    Raises:
        ATURIError: not a valid TID.
    """
    value = 0
    for char in validate_tid(tid):
        value = value * 32 + _B32_SORTABLE.index(char)
    return value >> 10


def mst_key(collection: str, rkey: str) -> bytes:
    """The MST key (UTF-8 ``<collection>/<rkey>``) of a record, after checking both parts.

    Raises:
        ATURIError: invalid NSID or record key, or the key is longer than 1024 bytes.
    """
    key = f"{validate_nsid(collection)}/{validate_record_key(rkey)}".encode()
    if len(key) > MAX_MST_KEY_LENGTH:
        raise ATURIError(f"repository path longer than {MAX_MST_KEY_LENGTH} bytes")
    return key


def parse_record_uri(uri: object) -> tuple[str, str, str]:
    """Split ``at://<did>/<collection>/<rkey>`` into (did, collection, rkey), validating each.

    The authority must be a DID (generic syntax; method rules are checked where the DID is
    used); handles, query strings and fragments are rejected.

    Raises:
        ATURIError: not exactly a record URI with a valid NSID and record key.
        DIDSyntaxError: the authority is not a valid DID.
    """
    if not isinstance(uri, str) or len(uri) > 8192:
        raise ATURIError("record URI must be a string of at most 8192 characters")
    # fast path: one regex for the three parts (none of them can hold a "/"); anything it
    # does not accept is diagnosed part by part below
    match = _RECORD_URI.fullmatch(uri)
    if match is not None:
        did, collection, rkey = match.groups()
        if len(did) <= MAX_DID_LENGTH and len(collection) <= 317 and rkey not in (".", ".."):
            return did, collection, rkey
    if not uri.startswith("at://"):
        raise ATURIError(f"record URI must start with 'at://': {_shown(uri)}")
    parts = uri[5:].split("/")
    if len(parts) != 3:
        raise ATURIError(f"record URI must be at://<did>/<collection>/<rkey>: {_shown(uri)}")
    did, collection, rkey = parts
    try:
        validate_did(did)
    except DIDSyntaxError as exc:
        raise DIDSyntaxError(f"record URI authority is not a DID: {exc}") from None
    validate_nsid(collection)
    validate_record_key(rkey)
    return did, collection, rkey
