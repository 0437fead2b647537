"""Keys as PEM files in a directory: one PKCS#8 file per label, optionally encrypted.

Example::

    from holdca.keys.pem import PEMKeyStore

    store = PEMKeyStore("/var/lib/hold/keys", passphrase=b"from a secret manager")
    root = store.generate("hold-root")           # writes hold-root.pem (mode 0600)
    same = store.load("hold-root")

Files are written atomically: a temporary file in the same directory is created with
mode 0600 (``os.open(..., O_CREAT | O_EXCL, 0o600)``), written, flushed and fsynced, then
hard-linked to ``<label>.pem``, which fails if that name exists, so ``generate`` never
replaces a key, not even when two processes race. On file systems without hard links
it falls back to an existence check and ``os.replace``. The directory is fsynced
afterwards. A reader therefore sees either no file or a complete one.

``load`` refuses a key file that group or others may read or write, like ``ssh`` does.

.. note:: PKCS#8 encryption has no MAC: a file whose *ciphertext* was altered cannot
   be told from a wrong passphrase, and raises :class:`~holdca.errors.WrongPassphraseError`.
   Damage to the PEM armour or the ASN.1 structure raises
   :class:`~holdca.errors.KeyFileCorruptError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from holdca.errors import (
    InsecureKeyFileError,
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotFoundError,
    KeyStoreError,
    UnsupportedAlgorithmError,
    WrongPassphraseError,
)
from holdca.keys._base import SignatureAlgorithm, check_label
from holdca.keys._secret import Secret
from holdca.keys.ed25519 import MemoryEd25519Signer
from holdca.keys.memory import MemorySigner, generate_private_key

__all__ = ["PEMKeyStore"]

_SUFFIX = ".pem"
_PLAIN = "PRIVATE KEY"
_ENCRYPTED = "ENCRYPTED PRIVATE KEY"
# errnos with which link() says "this file system has no hard links".
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


class PEMKeyStore:
    """A :class:`~holdca.keys.KeyStore` of PKCS#8 PEM files, one ``<label>.pem`` per key.

    Signers are :class:`~holdca.keys.memory.MemorySigner` objects: the key is decrypted
    into memory by :meth:`load` and stays there while the signer lives.
    """

    def __init__(self, directory: str | os.PathLike[str], passphrase: bytes | None = None) -> None:
        """Open (and create, mode 0700, if absent) the key directory.

        Args:
            directory: where the key files live.
            passphrase: when given, new keys are encrypted with it
                (``BestAvailableEncryption``) and every key must decrypt with it.

        Raises:
            TypeError: ``passphrase`` is not bytes.
            ValueError: ``passphrase`` is empty.
            KeyStoreError: the directory cannot be created or is not a directory.
        """
        if passphrase is not None and not isinstance(passphrase, bytes):
            raise TypeError("passphrase must be bytes or None")
        if passphrase is not None and not passphrase:
            raise ValueError("passphrase must not be empty (use None for unencrypted keys)")
        self._dir = Path(directory)
        self._passphrase = None if passphrase is None else Secret(passphrase)
        try:
            if not self._dir.exists():
                self._dir.mkdir(mode=0o700, parents=True)
                self._dir.chmod(0o700)  # in case the umask removed owner bits
            if not self._dir.is_dir():
                raise KeyStoreError(f"key directory {str(self._dir)!r} is not a directory")
        except OSError as exc:
            raise KeyStoreError(f"cannot create key directory {str(self._dir)!r}") from exc

    @property
    def directory(self) -> Path:
        """The key directory."""
        return self._dir

    @property
    def encrypted(self) -> bool:
        """Whether this store encrypts its keys with a passphrase."""
        return self._passphrase is not None

    def path_of(self, label: str) -> Path:
        """The file that holds (or would hold) the key ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
        """
        return self._dir / f"{check_label(label)}{_SUFFIX}"

    # --- KeyStore ------------------------------------------------------------------

    def generate(
        self, label: str, algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256
    ) -> MemorySigner:
        """Generate a key, write it to ``<label>.pem`` (0600) and return its signer.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyExistsError: ``<label>.pem`` exists; it is left untouched.
            KeyStoreError: the file could not be written (raised from the OSError).
        """
        path = self.path_of(label)
        if path.exists():
            raise KeyExistsError(f"key {label!r} already exists in {str(self._dir)!r}")
        key = generate_private_key(algorithm)
        self._write_key(label, path, key)
        return MemorySigner(key, algorithm)

    def generate_ed25519(self, label: str) -> MemoryEd25519Signer:
        """Generate an Ed25519 key, write it to ``<label>.pem`` (0600) and return its signer.

        The file is PKCS#8 like every other key of the store (encrypted when the store has
        a passphrase); :meth:`load` refuses it, :meth:`load_ed25519` reads it.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyExistsError: ``<label>.pem`` exists; it is left untouched.
            KeyStoreError: the file could not be written (raised from the OSError).
        """
        path = self.path_of(label)
        if path.exists():
            raise KeyExistsError(f"key {label!r} already exists in {str(self._dir)!r}")
        key = ed25519.Ed25519PrivateKey.generate()
        self._write_key(label, path, key)
        return MemoryEd25519Signer(key)

    def load_ed25519(self, label: str) -> MemoryEd25519Signer:
        """Read, check and decrypt the Ed25519 key ``<label>.pem``.

        Raises:
            UnsupportedAlgorithmError: the file holds a key that is not Ed25519.
            (and every error of :meth:`load` for the file itself)
        """
        path = self.path_of(label)
        key = self._parse_any(label, self._read_private(label, path))
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise UnsupportedAlgorithmError(
                f"key file for {label!r} holds a {type(key).__name__}, not Ed25519"
            )
        return MemoryEd25519Signer(key)

    def _write_key(self, label: str, path: Path, key: PrivateKeyTypes) -> None:
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if self._passphrase is None
            else serialization.BestAvailableEncryption(self._passphrase.reveal())
        )
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        self._write_new(label, path, data)

    def load(self, label: str) -> MemorySigner:
        """Read, check and decrypt ``<label>.pem``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyNotFoundError: no such file.
            InsecureKeyFileError: the file is readable or writable by group or others,
                is not a regular file (a symlink, a FIFO), or is unencrypted although
                this store has a passphrase.
            KeyFileCorruptError: the file is truncated or not a PKCS#8 private key.
            WrongPassphraseError: the passphrase is missing or does not decrypt the key.
            UnsupportedAlgorithmError: the key is not P-256/P-384/P-521 or RSA 2048/3072/4096.
            KeyStoreError: the file could not be read (raised from the OSError).
        """
        path = self.path_of(label)
        data = self._read_private(label, path)
        key = self._parse(label, data)
        return MemorySigner(key)

    def labels(self) -> list[str]:
        """Sorted labels of the ``<label>.pem`` files in the directory.

        Raises:
            KeyStoreError: the directory cannot be listed.
        """
        found: list[str] = []
        try:
            with os.scandir(self._dir) as entries:
                for entry in entries:
                    stem = entry.name[: -len(_SUFFIX)]
                    if (
                        entry.name.endswith(_SUFFIX)
                        and not entry.name.startswith(".")
                        and _valid_label(stem)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        found.append(stem)
        except OSError as exc:
            raise KeyStoreError(f"cannot list key directory {str(self._dir)!r}") from exc
        return sorted(found)

    def delete(self, label: str) -> None:
        """Remove ``<label>.pem``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyNotFoundError: no such file.
            KeyStoreError: the file could not be removed (raised from the OSError).
        """
        path = self.path_of(label)
        try:
            path.unlink()
        except FileNotFoundError:
            raise KeyNotFoundError(f"no key {label!r} in {str(self._dir)!r}") from None
        except OSError as exc:
            raise KeyStoreError(f"cannot delete key {label!r}") from exc
        self._sync_directory()

    def __repr__(self) -> str:
        state = "encrypted" if self._passphrase is not None else "unencrypted"
        return f"<PEMKeyStore {str(self._dir)!r} {state}>"

    # --- files -----------------------------------------------------------------------

    def _write_new(self, label: str, path: Path, data: bytes) -> None:
        tmp = self._dir / f".{label}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise KeyStoreError(f"cannot create a key file in {str(self._dir)!r}") from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._publish(label, tmp, path)
        except OSError as exc:
            raise KeyStoreError(f"cannot write key {label!r} to {str(self._dir)!r}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._sync_directory()

    def _publish(self, label: str, tmp: Path, path: Path) -> None:
        """Give the complete temporary file its final name, never replacing a key."""
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyExistsError(f"key {label!r} already exists in {str(self._dir)!r}") from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if path.exists():
                raise KeyExistsError(
                    f"key {label!r} already exists in {str(self._dir)!r}"
                ) from None
            os.replace(tmp, path)

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise KeyStoreError(f"cannot open key directory {str(self._dir)!r}") from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            raise KeyStoreError(f"cannot sync key directory {str(self._dir)!r}") from exc
        finally:
            os.close(fd)

    def _read_private(self, label: str, path: Path) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise KeyNotFoundError(f"no key {label!r} in {str(self._dir)!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InsecureKeyFileError(f"key file {str(path)!r} is a symlink") from None
            raise KeyStoreError(f"cannot open key file {str(path)!r}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InsecureKeyFileError(f"key file {str(path)!r} is not a regular file")
            if info.st_mode & 0o077:
                raise InsecureKeyFileError(
                    f"key file {str(path)!r} has mode {stat.S_IMODE(info.st_mode):04o}: "
                    "group or others may access it (chmod 600 it)"
                )
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {str(path)!r}") from exc
        finally:
            os.close(fd)

    def _parse(self, label: str, data: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        where = f"key file for {label!r}"
        key = self._parse_any(label, data)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise UnsupportedAlgorithmError(f"{where} holds a {type(key).__name__}: not EC or RSA")
        SignatureAlgorithm.for_public_key(key.public_key())  # UnsupportedAlgorithmError
        return key

    def _parse_any(self, label: str, data: bytes) -> PrivateKeyTypes:
        where = f"key file for {label!r}"
        try:
            kind, _headers, der = asn1_pem.unarmor(data)
        except (ValueError, TypeError) as exc:
            raise KeyFileCorruptError(f"{where} is not a PEM file (truncated?)") from exc
        # asn1crypto tolerates a damaged END line; a truncated file must not load.
        if not data.rstrip().endswith(f"-----END {kind}-----".encode()):
            raise KeyFileCorruptError(f"{where} is truncated (no END line)")
        if kind not in (_ENCRYPTED, _PLAIN):
            raise KeyFileCorruptError(f"{where} holds a {kind!r} block, not a PKCS#8 key")
        encrypted = kind == _ENCRYPTED
        _check_der(
            asn1_keys.EncryptedPrivateKeyInfo if encrypted else asn1_keys.PrivateKeyInfo,
            der,
            where,
        )
        if encrypted and self._passphrase is None:
            raise WrongPassphraseError(f"{where} is encrypted: a passphrase is needed")
        if not encrypted and self._passphrase is not None:
            raise InsecureKeyFileError(
                f"{where} is not encrypted, but this store encrypts its keys"
            )
        password = self._passphrase.reveal() if encrypted and self._passphrase else None
        try:
            key = serialization.load_der_private_key(der, password=password)
        except (ValueError, TypeError) as exc:
            if password is not None:
                raise WrongPassphraseError(f"the passphrase does not decrypt the {where}") from exc
            raise KeyFileCorruptError(f"{where} is not a valid private key") from exc
        return key


def _valid_label(label: str) -> bool:
    try:
        check_label(label)
    except ValueError:
        return False
    return True


def _check_der(spec: type[object], der: bytes, where: str) -> None:
    """Parse ``der`` fully and strictly; any damage is a KeyFileCorruptError."""
    try:
        spec.load(der, strict=True).native  # type: ignore[attr-defined]  # noqa: B018
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError, ...
        raise KeyFileCorruptError(f"{where} is corrupt (bad ASN.1)") from exc
