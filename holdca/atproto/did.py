"""DID syntax: the generic atproto DID grammar, did:plc and did:web.

Rules (atproto spec did "DID Identifier Syntax"; PLC spec "Identifier Syntax"):

* generic: ``^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$``, at most 2048 characters;
* did:plc: ``did:plc:`` and exactly 24 characters of lowercase base32 (``[a-z2-7]``);
* did:web: a hostname only (no path segments, no IP address), each label 1-63 characters of
  ``[a-zA-Z0-9-]`` not starting or ending with ``-``, at least two labels, TLD not numeric and not a
  reserved TLD; a ``%3A``-encoded port only for ``localhost`` and only when ``allow_localhost``.

Example::

    >>> validate_account_did("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
    'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
"""

from __future__ import annotations

import re

from holdca.errors import DIDSyntaxError

__all__ = [
    "DID_PATTERN",
    "DISALLOWED_TLDS",
    "MAX_DID_LENGTH",
    "did_method",
    "validate_account_did",
    "validate_did",
    "web_did_host",
]

MAX_DID_LENGTH = 2048
"""Longest DID atproto accepts."""

DISALLOWED_TLDS = frozenset(
    {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}
)
"""TLDs atproto never accepts in a handle or did:web hostname."""

DID_PATTERN = r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"
"""The generic atproto DID grammar as a regular expression (match it in full)."""

_GENERIC = re.compile(DID_PATTERN)
_PLC = re.compile(r"did:plc:[a-z2-7]{24}")
_LABEL = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_LOCALHOST_PORT = re.compile(r"localhost(?:%3A[0-9]{1,5})?")


def _shown(did: object) -> str:
    text = repr(did)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_did(did: str) -> str:
    """Check the generic atproto DID syntax (any method) and return ``did`` unchanged.

    Raises:
        DIDSyntaxError: not a string, too long, or not matching the grammar.
    """
    if not isinstance(did, str):
        raise DIDSyntaxError(f"DID must be a string, not {type(did).__name__}")
    if len(did) > MAX_DID_LENGTH:
        raise DIDSyntaxError(f"DID longer than {MAX_DID_LENGTH} characters")
    if not _GENERIC.fullmatch(did):
        raise DIDSyntaxError(f"invalid DID syntax: {_shown(did)}")
    return did


def did_method(did: str) -> str:
    """The method name of a syntactically valid DID (``"plc"`` for ``did:plc:...``).

    Raises:
        DIDSyntaxError: ``did`` is not a valid DID.
    """
    return validate_did(did).split(":", 2)[1]


def web_did_host(did: str, *, allow_localhost: bool = False) -> str:
    """The hostname (``%3A`` decoded to ``:``) of an atproto did:web.

    Raises:
        DIDSyntaxError: not a did:web, has a path, or the hostname is not acceptable.
    """
    validate_did(did)
    if not did.startswith("did:web:"):
        raise DIDSyntaxError(f"not a did:web: {_shown(did)}")
    ident = did[len("did:web:") :]
    if allow_localhost and _LOCALHOST_PORT.fullmatch(ident):
        return ident.replace("%3A", ":")
    if ":" in ident:
        raise DIDSyntaxError(f"did:web with a path is not supported in atproto: {_shown(did)}")
    if "%" in ident:
        raise DIDSyntaxError(f"did:web hostname has a percent-escape: {_shown(did)}")
    if len(ident) > 253:
        raise DIDSyntaxError("did:web hostname longer than 253 characters")
    labels = ident.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise DIDSyntaxError(f"did:web hostname is not a valid domain name: {_shown(did)}")
    tld = labels[-1].lower()
    if tld[0].isdigit():
        raise DIDSyntaxError(f"did:web hostname must not be an IP address: {_shown(did)}")
    if tld in DISALLOWED_TLDS:
        raise DIDSyntaxError(f"did:web TLD .{tld} is not allowed: {_shown(did)}")
    return ident


def validate_account_did(did: str, *, allow_localhost: bool = False) -> str:
    """Check that ``did`` is an atproto account DID (did:plc or did:web) and return it.

    This is the check every DID passes before it reaches a certificate.

    Raises:
        DIDSyntaxError: invalid syntax, or a method other than plc / web.
    """
    if type(did) is str and _PLC.fullmatch(did):  # the common case; implies the generic syntax
        return did
    method = did_method(did)
    if method == "plc":
        if not _PLC.fullmatch(did):
            raise DIDSyntaxError(
                f"did:plc must be 'did:plc:' and 24 base32 characters [a-z2-7]: {_shown(did)}"
            )
        return did
    if method == "web":
        web_did_host(did, allow_localhost=allow_localhost)
        return did
    raise DIDSyntaxError(f"unsupported DID method {method!r} (only did:plc and did:web)")
