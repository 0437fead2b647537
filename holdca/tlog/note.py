"""C2SP signed notes (signed-note v1.0.0) with Ed25519 keys; room for witness cosignatures.

A note is UTF-8 text ending in a newline, a blank line, then one line per signature:
``— <name> base64(keyID[4] || signature)``. For an Ed25519 key (signature type 0x01)
``keyID = SHA-256(name || 0x0A || 0x01 || pub32)[:4]`` and the verifier key string is
``<name>+<hex keyID>+base64(0x01 || pub32)``. :func:`open_note` keeps the signature
lines of keys it does not know (a witness's type-0x04 cosignatures, another operator's
key), so they survive re-serialisation and can be checked later with more verifiers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from holdca.errors import SignatureInvalidError, TlogError
from holdca.keys.ed25519 import Ed25519Signer, ed25519_public_bytes

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "SignedNote",
    "check_key_name",
    "format_note",
    "open_note",
    "parse_note",
    "sign_note",
]

ALG_ED25519 = 0x01
"""The signed-note signature type of Ed25519."""

MAX_SIGNATURES = 100
"""Signature lines a note may carry (as golang.org/x/mod/sumdb/note allows)."""

_DASH = "\u2014 "


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name: non-empty, no whitespace, no ``+``.

    Raises:
        TlogError: it is not.
    """
    if not name or "+" in name or any(c.isspace() for c in name):
        raise TlogError(f"invalid note key name {name!r}: non-empty, no spaces, no '+'")
    return name


_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
"""A control character other than a newline."""


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise TlogError("note text must end with a newline")
    if _CONTROL.search(text):
        raise TlogError("note text holds a control character")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key name, its 4-byte key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The line as it appears in the note, newline included."""
        blob = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_DASH}{self.name} {blob}\n"


@dataclass(frozen=True)
class SignedNote:
    """A note's text and every signature line it carries, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        """The note as bytes (text, blank line, signature lines)."""
        return format_note(self.text, self.signatures)

    def with_signatures(self, extra: Iterable[NoteSignature]) -> SignedNote:
        """This note with ``extra`` signature lines appended (e.g. witness cosignatures)."""
        return SignedNote(self.text, self.signatures + tuple(extra))


class NoteSigner(Protocol):
    """Signs note text under a key name."""

    @property
    def name(self) -> str:
        """The key name (for a checkpoint: the log's origin)."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def sign(self, text: bytes) -> bytes:
        """The signature of the note text (without the key ID)."""
        ...


class NoteVerifier(Protocol):
    """Checks signature lines of one key (an Ed25519 log key, later a witness key)."""

    @property
    def name(self) -> str:
        """The key name."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key ID) signs ``text``."""
        ...


def _ed25519_key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


class Ed25519NoteSigner:
    """A :class:`NoteSigner` over an :class:`~holdca.keys.Ed25519Signer` (any backend)."""

    def __init__(self, name: str, signer: Ed25519Signer) -> None:
        """Sign as ``name`` with ``signer``.

        Raises:
            TlogError: ``name`` is not a valid key name.
        """
        self._name = check_key_name(name)
        self._signer = signer
        self._public = ed25519_public_bytes(signer.public_key)
        self._key_id = _ed25519_key_id(name, self._public)

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """``SHA-256(name || 0x0A || 0x01 || pub32)[:4]``."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key string: ``name+hex(keyID)+base64(0x01 || pub32)``."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self._public).decode()
        return f"{self._name}+{self._key_id.hex()}+{blob}"

    def verifier(self) -> Ed25519NoteVerifier:
        """The matching verifier."""
        return Ed25519NoteVerifier.from_vkey(self.vkey)

    def sign(self, text: bytes) -> bytes:
        """The Ed25519 signature of ``text`` (SignerError from the backend)."""
        return self._signer.sign(text)


class Ed25519NoteVerifier:
    """A :class:`NoteVerifier` for an Ed25519 key, from its verifier key string."""

    def __init__(self, name: str, public: bytes) -> None:
        """Verify signatures of ``name`` made with the raw 32-byte key ``public``.

        Raises:
            TlogError: a bad name or key length.
        """
        self._name = check_key_name(name)
        if len(public) != 32:
            raise TlogError(f"an Ed25519 key has 32 bytes, not {len(public)}")
        self._key = ed25519.Ed25519PublicKey.from_public_bytes(public)
        self._public = public
        self._key_id = _ed25519_key_id(name, public)

    @classmethod
    def from_vkey(cls, vkey: str) -> Ed25519NoteVerifier:
        """Parse ``name+hex(keyID)+base64(0x01 || pub32)``.

        Raises:
            TlogError: the string is malformed, not Ed25519, or its key ID does not match.
        """
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise TlogError("a verifier key is name+keyid+key")
        name, hex_id, b64 = parts
        try:
            key_id = bytes.fromhex(hex_id)
            blob = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise TlogError("verifier key has a bad key ID or base64 key") from None
        if not blob or blob[0] != ALG_ED25519:
            raise TlogError("verifier key is not an Ed25519 (type 0x01) key")
        verifier = cls(name, blob[1:])
        if verifier.key_id != key_id:
            raise TlogError(f"verifier key for {name!r}: key ID does not match the key")
        return verifier

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self._public).decode()
        return f"{self._name}+{self._key_id.hex()}+{blob}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``text``."""
        try:
            self._key.verify(signature, text)
        except InvalidSignature:
            return False
        return True


def format_note(text: str, signatures: Sequence[NoteSignature]) -> bytes:
    """Text, a blank line and the signature lines.

    Raises:
        TlogError: the text does not end in a newline or has control characters, there
            are no signatures or more than 100, or a name or key ID is invalid.
    """
    _check_text(text)
    if not 0 < len(signatures) <= MAX_SIGNATURES:
        raise TlogError(f"a note carries 1..{MAX_SIGNATURES} signatures")
    for s in signatures:
        check_key_name(s.name)
        if len(s.key_id) != 4:
            raise TlogError("a key ID has 4 bytes")
    return (text + "\n" + "".join(s.line() for s in signatures)).encode()


def sign_note(text: str, signers: Sequence[NoteSigner]) -> SignedNote:
    """Sign ``text`` with each signer.

    Raises:
        TlogError: the text is not valid note text, or no signer is given.
        SignerError: a backend failed.
    """
    _check_text(text)
    if not signers:
        raise TlogError("a note needs at least one signer")
    data = text.encode()
    sigs = tuple(NoteSignature(s.name, s.key_id, s.sign(data)) for s in signers)
    note = SignedNote(text, sigs)
    note.encode()  # validates names and the count
    return note


def parse_note(data: bytes) -> SignedNote:
    """Split a signed note into text and signature lines, checking only the syntax.

    Raises:
        TlogError: not UTF-8, a control character, no blank line before the signatures,
            a malformed signature line, or more than 100 signatures.
    """
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TlogError("note is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in message):
        raise TlogError("note holds a control character")
    split = message.rfind("\n\n")
    if split < 0:
        raise TlogError("note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not block.endswith("\n"):
        raise TlogError("note signatures must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise TlogError(f"note has more than {MAX_SIGNATURES} signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_DASH):
            raise TlogError("a note signature line must start with an em dash and a space")
        name, _, b64 = line[len(_DASH) :].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise TlogError(f"signature of {name!r} is not base64") from None
        if len(blob) < 5 or not b64:
            raise TlogError(f"signature of {name!r} is too short")
        sigs.append(NoteSignature(check_key_name(name), blob[:4], blob[4:]))
    return SignedNote(text, tuple(sigs))


def open_note(data: bytes, verifiers: Iterable[NoteVerifier]) -> tuple[SignedNote, list[str]]:
    """Parse a note and verify every signature from a known key.

    Signature lines whose (name, key ID) is not among ``verifiers`` are kept unverified.

    Returns:
        The note and the names of the keys whose signatures verified.

    Raises:
        TlogError: the note is malformed (see :func:`parse_note`).
        SignatureInvalidError: a known key's signature does not verify, or no known key
            signed the note.
    """
    note = parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    text = note.text.encode()
    verified: list[str] = []
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None:
            continue
        if not v.verify(text, sig.signature):
            raise SignatureInvalidError(f"note signature of {sig.name!r} does not verify")
        if sig.name not in verified:
            verified.append(sig.name)
    if not verified:
        raise SignatureInvalidError("the note carries no signature from a known key")
    return note, verified
