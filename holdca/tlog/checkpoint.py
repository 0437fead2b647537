"""C2SP tlog-checkpoint v1.0.0: the signed tree head of the log.

Body: ``<origin>\\n<size>\\n<base64 root>\\n`` then optional extension lines; signed as a
C2SP signed note (:mod:`holdca.tlog.note`) whose key name is the origin.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from holdca.errors import TlogError
from holdca.tlog.hashing import HASH_SIZE
from holdca.tlog.note import NoteSigner, NoteVerifier, SignedNote, open_note, sign_note
from holdca.tlog.tiles import LogState

__all__ = ["Checkpoint", "open_checkpoint", "sign_checkpoint"]

_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin line, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise TlogError("a checkpoint origin is one non-empty line")
        if not 0 <= self.size < 1 << 64:
            raise TlogError(f"checkpoint size {self.size} is out of range")
        if len(self.root) != HASH_SIZE:
            raise TlogError("a checkpoint root hash has 32 bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise TlogError("checkpoint extension lines are non-empty single lines")

    def text(self) -> str:
        """The note text that gets signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text (the part before the signatures).

        Raises:
            TlogError: fewer than three lines, a bad size or a bad root hash.
        """
        if not text.endswith("\n"):
            raise TlogError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise TlogError("a checkpoint has an origin, a size and a root hash")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise TlogError(f"checkpoint size {size!r} is not a decimal number")
        try:
            raw = base64.b64decode(root, validate=True)
        except binascii.Error:
            raise TlogError("checkpoint root hash is not base64") from None
        return cls(origin, int(size), raw, tuple(extensions))


def sign_checkpoint(
    state: LogState,
    signer: NoteSigner,
    origin: str | None = None,
    *,
    extensions: Sequence[str] = (),
    cosigners: Sequence[NoteSigner] = (),
) -> bytes:
    """The signed checkpoint of ``state``: the bytes to publish at ``<prefix>/checkpoint``.

    ``origin`` defaults to the signer's key name (C2SP: the key name should be the origin).

    Raises:
        TlogError: a bad origin or extension line.
        SignerError: a key backend failed.
    """
    checkpoint = Checkpoint(origin or signer.name, state.size, state.root, tuple(extensions))
    return sign_note(checkpoint.text(), [signer, *cosigners]).encode()


def open_checkpoint(
    data: bytes, verifiers: Iterable[NoteVerifier], *, origin: str | None = None
) -> tuple[Checkpoint, SignedNote]:
    """Verify and parse a signed checkpoint.

    Checked: the note syntax, every signature of a known key (at least one), the body
    syntax, and the origin when ``origin`` is given.

    Raises:
        TlogError: malformed note or body, or an unexpected origin.
        SignatureInvalidError: no known key signed it, or a known key's signature fails.
    """
    note, _ = open_note(data, verifiers)
    checkpoint = Checkpoint.parse(note.text)
    if origin is not None and checkpoint.origin != origin:
        raise TlogError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint, note
