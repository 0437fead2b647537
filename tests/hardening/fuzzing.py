"""Helpers for the parser fuzz tests: mutation strategies and the parse-or-refuse oracle.

The oracle of every fuzz test: a parser given hostile bytes either returns or raises a
:class:`~holdca.errors.HoldCAError`. Any other exception fails the test, and so does a
single input that keeps the parser busy for :data:`HANG_SECONDS` (a liveness guard, not a
speed assertion: a correct parser needs microseconds).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import strategies as st

from holdca.errors import HoldCAError
from tests.hardening.tally import count

__all__ = ["HANG_SECONDS", "Hang", "fuzz_bytes", "fuzz_text", "hang_guard", "parse_or_refuse"]

HANG_SECONDS = 20.0
T = TypeVar("T")


class Hang(BaseException):
    """Raised by :func:`hang_guard` when one input keeps a parser busy too long."""


@contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_or_refuse(name: str, parse: Callable[[T], Any], data: T) -> Any:
    """Run ``parse(data)``; a HoldCAError is a refusal, anything else propagates.

    Counts ``fuzz.<name>`` (and ``fuzz.<name>.accepted`` / ``.refused``).

    Returns:
        The parser's result, or None if it refused.
    """
    count(f"fuzz.{name}")
    with hang_guard():
        try:
            result = parse(data)
        except HoldCAError as exc:
            message = str(exc)
            count(f"fuzz.{name}.refused")
            if not message:
                raise AssertionError(f"{type(exc).__name__} without a message") from exc
            return None
    count(f"fuzz.{name}.accepted")
    return result


def _mutate(seed: bytes, ops: Sequence[tuple[int, int, int]]) -> bytes:
    data = bytearray(seed)
    for kind, pos, value in ops:
        if not data:
            data.append(value & 0xFF)
            continue
        i = pos % len(data)
        if kind == 0:  # flip bits
            data[i] ^= (value % 255) + 1
        elif kind == 1:  # set byte to an interesting value
            data[i] = (0x00, 0xFF, 0x7F, 0x80, 0x1B, 0x5B, 0x9F, 0xBF, 0xD8, 0x2A)[value % 10]
        elif kind == 2:  # insert
            data[i:i] = bytes([value & 0xFF]) * (1 + value % 4)
        elif kind == 3:  # delete a run
            del data[i : i + 1 + value % 8]
        elif kind == 4:  # truncate
            del data[i:]
        else:  # duplicate a slice
            j = min(len(data), i + 1 + value % 32)
            data[i:i] = data[i:j]
    return bytes(data)


def fuzz_bytes(seeds: Sequence[bytes], *, max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """Random bytes, or one of ``seeds`` with 1-8 random mutations (flip, set, insert,
    delete, truncate, duplicate)."""
    op = st.tuples(st.integers(0, 5), st.integers(0, 1 << 30), st.integers(0, 1 << 16))
    mutated = st.builds(_mutate, st.sampled_from(list(seeds)), st.lists(op, min_size=1, max_size=8))
    return st.one_of(st.binary(max_size=max_size), mutated, mutated)


def fuzz_text(seeds: Sequence[str], *, max_size: int = 512) -> st.SearchStrategy[str]:
    """Random text, or a seed with byte mutations decoded leniently (surrogates escaped)."""
    as_bytes = fuzz_bytes([s.encode() for s in seeds], max_size=max_size)
    return st.one_of(
        st.text(max_size=max_size),
        as_bytes.map(lambda b: b.decode("utf-8", "surrogateescape")),
    )
