"""Serve a transparency log directory read-only: ``GET /log/checkpoint``, ``/log/tile/...``.

Only the paths C2SP tlog-tiles defines are answered, each in the one canonical form
:func:`holdca.tlog.tile_path` and :func:`holdca.tlog.bundle_path` write
(``tile/<L>/<N>[.p/<W>]``, ``tile/entries/<N>[.p/<W>]``, ``N`` in ``x001/x234/067``
groups) and ``checkpoint``. Anything else is 404: ``..`` and ``%2e%2e`` (the server
decodes before routing), absolute or doubled slashes, non-ASCII digits, leading zeros,
``.p/256``, overlong paths; so is a file that resolves outside the directory (a symlink),
that is not a regular file (a FIFO is never opened for blocking reads) or is too large.

Caching: the checkpoint ``no-cache`` (it changes with every issuance); full tiles and
bundles ``public, max-age=31536000, immutable``; partial ones a minute (they are replaced
by wider ones and may be removed later). Any static web server or bucket serving the
same directory works as well (docs/transparency.md).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from holdca.errors import TlogError
from holdca.tlog.store import CHECKPOINT_PATH
from holdca.tlog.tiles import MAX_ENTRY_SIZE, TILE_WIDTH, bundle_path, tile_path

__all__ = [
    "CACHE_CHECKPOINT",
    "CACHE_FULL",
    "CACHE_PARTIAL",
    "MAX_PATH",
    "canonical_log_path",
    "log_routes",
]

CACHE_CHECKPOINT: Final = "no-cache"
CACHE_FULL: Final = "public, max-age=31536000, immutable"
CACHE_PARTIAL: Final = "public, max-age=60"
MAX_PATH: Final = 128
"""Longest path answered (a log of 2**64 entries needs under 60 characters)."""

_MAX_FILE: Final = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)  # the largest entry bundle
_PART: Final = re.compile(r"(x?)([0-9]{3})")
_LEVEL: Final = re.compile(r"[0-9]{1,3}")
_WIDTH: Final = re.compile(r"[0-9]{1,3}")


def canonical_log_path(path: str) -> tuple[str, bool] | None:
    """``(path, full)`` when ``path`` is a log file path in canonical form, else ``None``.

    ``full`` is whether the file is immutable (a full tile or bundle; false for the
    checkpoint and partial tiles). Never raises.
    """
    if path == CHECKPOINT_PATH:
        return path, False
    if len(path) > MAX_PATH or not path.isascii() or not path.startswith("tile/"):
        return None
    rest, dot, width_text = path[len("tile/") :].partition(".p/")
    parts = rest.split("/")
    if len(parts) < 2 or (dot and not _WIDTH.fullmatch(width_text)):
        return None
    kind, groups = parts[0], parts[1:]
    matches = [_PART.fullmatch(g) for g in groups]
    if not all(matches) or (kind != "entries" and not _LEVEL.fullmatch(kind)):
        return None
    index = int("".join(m.group(2) for m in matches if m is not None))
    width = int(width_text) if dot else TILE_WIDTH
    try:
        canonical = (
            bundle_path(index, width) if kind == "entries" else tile_path(int(kind), index, width)
        )
    except TlogError:
        return None
    return (path, width == TILE_WIDTH) if canonical == path else None


def _read(root: Path, relative: str) -> bytes | None:
    """The regular file ``root/relative`` if it resolves inside ``root``, else ``None``."""
    try:
        base = root.resolve(strict=True)
        file = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not file.is_relative_to(base) or file == base:
        return None
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_FILE:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_FILE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data if len(data) <= _MAX_FILE else None


def _not_found() -> Response:
    return Response(
        b"not a file of this log\n",
        status_code=404,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


def log_routes(root: Path | str, prefix: str = "/log") -> list[Route]:
    """Starlette routes serving the log directory ``root`` under ``prefix`` (GET and HEAD).

    The directory is read at each request (another process publishes to it); a missing
    directory or file is 404. Never raises at request time.
    """
    directory = Path(root)

    async def serve_file(request: Request) -> Response:
        found = canonical_log_path(request.path_params["path"])
        if found is None:
            return _not_found()
        path, full = found
        data = await run_in_threadpool(_read, directory, path)
        if data is None:
            return _not_found()
        if path == CHECKPOINT_PATH:
            media, cache = "text/plain; charset=utf-8", CACHE_CHECKPOINT
        else:
            media, cache = "application/octet-stream", CACHE_FULL if full else CACHE_PARTIAL
        return Response(
            data,
            media_type=media,
            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
        )

    return [Route(f"{prefix}/{{path:path}}", serve_file, methods=["GET", "HEAD"])]
