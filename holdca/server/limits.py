"""What the reference server refuses before it does any work: bodies, JSON, clients.

* :func:`read_body`: a request body of at most ``limit`` bytes, received within a
  deadline (a client that stalls mid-upload is dropped with 408, not kept open);
* :func:`parse_json`: JSON of bounded size and nesting depth, checked *before* the
  parser runs (a 200k-deep array is refused in linear time, never a RecursionError);
* :class:`ClientBudget`: a per-client token bucket for work that costs a signature
  (uncached OCSP answers), bounded in memory.

Every refusal is an :class:`XRPCError`, which the app turns into an XRPC JSON error.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from holdca._json import strict_json
from holdca.errors import MalformedInputError

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "MAX_JSON_DEPTH",
    "ClientBudget",
    "XRPCError",
    "json_depth",
    "parse_json",
    "read_body",
]

MAX_JSON_DEPTH: Final = 16
"""Deepest JSON nesting a request may have (a coSignManifest body has 2 levels)."""

DEFAULT_BODY_TIMEOUT: Final = 10.0
"""Seconds a client has to send a whole request body."""

# a string, or an unclosed one up to the end: never a failed match that backtracks, so
# linear even on a body of escaped quotes that never closes (json.loads refuses it later)
_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class XRPCError(Exception):
    """An XRPC error response: HTTP status, error name and message."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Describe the error."""
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response ``{"error": ..., "message": ...}``."""
        return JSONResponse(
            {"error": self.error, "message": self.message}, self.status, headers=self.headers
        )


async def read_body(request: Request, limit: int, timeout: float = DEFAULT_BODY_TIMEOUT) -> bytes:
    """The request body, at most ``limit`` bytes, received within ``timeout`` seconds.

    Raises:
        XRPCError: 413 over the limit (declared or sent), 400 bad Content-Length,
            408 the client did not finish sending in time (with ``Connection: close``:
            the server closes the connection with the answer, RFC 9110 15.5.9).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise XRPCError(400, "InvalidRequest", "bad Content-Length")
        if int(declared) > limit:
            raise XRPCError(413, "PayloadTooLarge", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise XRPCError(413, "PayloadTooLarge", f"request body over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise XRPCError(
            408,
            "RequestTimeout",
            f"the request body was not received within {timeout} s",
            {"Connection": "close"},
        ) from None
    return b"".join(chunks)


def json_depth(data: bytes) -> int:
    """The deepest bracket nesting of ``data`` (JSON text), ignoring string contents.

    Linear and C-speed for ordinary input: strings are removed by a regular expression,
    every byte but brackets is deleted, and the depth is a running sum.
    """
    brackets = _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(map(_STEP.__getitem__, brackets)))


def parse_json(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body as strict JSON (:func:`holdca._json.strict_json`: no duplicate
    keys, no NaN or Infinity) after checking its nesting depth.

    Raises:
        XRPCError: 400 not UTF-8 JSON, a duplicate key, or nested deeper than ``max_depth``.
    """
    if json_depth(data) > max_depth:
        raise XRPCError(400, "InvalidRequest", f"JSON nested deeper than {max_depth} levels")
    try:
        return strict_json(data, "the body", MalformedInputError)
    except MalformedInputError as exc:
        raise XRPCError(400, "InvalidRequest", str(exc)) from None


class ClientBudget:
    """A token bucket per client: ``rate`` units a second, bursts of ``burst``.

    Memory is bounded: at most ``max_clients`` buckets are kept (least recently used are
    forgotten, which only ever gives a client a full bucket again). O(1) per call.
    Thread-safe.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Allow ``rate`` units per second per client, at most ``burst`` at once.

        Raises:
            ValueError: a non-positive rate, burst or client count.
        """
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate, burst and max_clients must be positive")
        self.rate = rate
        self.burst = burst
        self._max = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, cost: float = 1.0) -> bool:
        """Spend ``cost`` from ``client``'s bucket; ``False`` when it does not hold enough."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        return allowed

    def __repr__(self) -> str:
        return f"<ClientBudget {self.rate}/s burst {self.burst}>"
