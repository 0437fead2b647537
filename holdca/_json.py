"""Strict JSON decoding shared by every parser of untrusted JSON (envelopes, PLC logs, JWTs).

Python's :func:`json.loads` keeps the last of duplicate keys, accepts ``NaN`` and
``Infinity``, and raises a bare RecursionError on deep nesting; two parsers can therefore
read the same bytes differently. :func:`strict_json` refuses all of that with the caller's
typed error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from holdca.errors import HoldCAError

__all__ = ["strict_json"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise ValueError(f"duplicate JSON key {key[:40]!r}")
        out[key] = value
    return out


def strict_json(data: bytes | str, what: str, error: Callable[[str], HoldCAError]) -> Any:
    """Decode JSON, rejecting duplicate keys, NaN/Infinity, invalid UTF-8 and deep nesting.

    Raises:
        HoldCAError: built by ``error`` with a message naming ``what``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(text, object_pairs_hook=_unique, parse_constant=_reject_constant)
    except RecursionError:
        raise error(f"{what} JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what} is not valid JSON: {str(exc)[:120]}") from None
