"""Notation trust stores: the in-memory form the verifier reads, and the on-disk layout.

notation v1.3.2 reads trust anchors from
``{config}/truststore/x509/{ca|signingAuthority|tsa}/{name}/<files>`` (what
``notation cert add --type ca --store name cert.pem`` produces) and the policy from
``{config}/trustpolicy.json`` (notation-go v1.3.2 ``dir.PathTrustPolicy``; the
``trustpolicy.oci.json`` of notation-go's unreleased main branch is not read by v1.3.2),
where ``{config}`` is ``$NOTATION_CONFIG`` or, when that is unset,
``os.UserConfigDir()/notation`` (``$XDG_CONFIG_HOME/notation``, ``~/.config/notation``):
:func:`default_config_dir` and :func:`trust_policy_path`.

:class:`TrustStore` is the sans-I/O form (certificates by store type and name).
:func:`write_trust_store`, :func:`write_trust_policy` and :class:`DirectoryTrustStore`
are the file adapters; they apply notation's loader rules (regular files only, every
file PEM or DER certificates, non-CA certificates only when self-signed, ``tsa`` stores
only self-signed roots) and write atomically (temporary file + rename outside the store
directory, so a concurrently running notation never sees a partial file).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.errors import ConfigError, TrustStoreError
from holdca.notation._codec import go_name_string
from holdca.notation.trustpolicy import TrustPolicy, validate_trust_policy

__all__ = [
    "STORE_TYPES",
    "DirectoryTrustStore",
    "TrustStore",
    "TrustStoreReader",
    "check_store_certificates",
    "default_config_dir",
    "read_certificate_file",
    "read_trust_policy",
    "remove_trust_policy",
    "remove_trust_store",
    "trust_policy_path",
    "trust_store_dir",
    "write_trust_policy",
    "write_trust_store",
]

STORE_TYPES = ("ca", "signingAuthority", "tsa")
"""The trust store types notation knows."""

_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_MAX_CERT_FILE = 1 << 20


class TrustStoreReader(Protocol):
    """Anything the verifier can ask for the certificates of a named trust store."""

    def certificates(self, store_type: str, name: str) -> Sequence[x509.Certificate]:
        """The certificates of store ``store_type:name``.

        Raises:
            TrustStoreError: the store does not exist or cannot be loaded.
        """
        ...


def _check_type_and_name(store_type: str, name: str) -> None:
    if store_type not in STORE_TYPES:
        raise ValueError(f"unsupported trust store type {store_type!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"trust store name {name!r} must match [a-zA-Z0-9_.-]+")


def _self_signed(cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def check_store_certificates(
    certs: Sequence[x509.Certificate], store_type: str, label: str = "certificate"
) -> None:
    """Apply notation's rules for certificates in a trust store.

    Every certificate must be a CA or self-signed; ``tsa`` stores take only self-signed
    roots.

    Raises:
        TrustStoreError: naming the offending certificate.
    """
    if not certs:
        raise TrustStoreError(f"{label}: input certs cannot be empty")
    for cert in certs:
        subject = go_name_string(cert.subject)
        if not _is_ca(cert) and not _self_signed(cert):
            raise TrustStoreError(
                f'{label}: certificate with subject "{subject}" is not a CA certificate or '
                "self-signed signing certificate"
            )
        if store_type == "tsa" and not _self_signed(cert):
            raise TrustStoreError(
                f'{label}: certificate with subject "{subject}" is not a root CA certificate'
            )


class TrustStore:
    """Trust anchors in memory, by ``(store_type, name)``.

    Example::

        store = TrustStore({("ca", "hold"): [root]})
    """

    def __init__(
        self, stores: Mapping[tuple[str, str], Iterable[x509.Certificate]] | None = None
    ) -> None:
        """Build from ``{(type, name): certificates}``.

        Raises:
            ValueError: unknown type or invalid name.
            TrustStoreError: a certificate notation would refuse in that store.
        """
        checked: dict[tuple[str, str], tuple[x509.Certificate, ...]] = {}
        for (store_type, name), certs in (stores or {}).items():
            _check_type_and_name(store_type, name)
            cert_tuple = tuple(certs)
            check_store_certificates(cert_tuple, store_type, f"trust store {store_type}:{name}")
            checked[(store_type, name)] = cert_tuple
        self._stores = MappingProxyType(checked)

    @property
    def stores(self) -> Mapping[tuple[str, str], tuple[x509.Certificate, ...]]:
        """The stores, read-only."""
        return self._stores

    def certificates(self, store_type: str, name: str) -> Sequence[x509.Certificate]:
        """The certificates of ``store_type:name``.

        Raises:
            TrustStoreError: no such store (notation's wording).
        """
        try:
            return self._stores[(store_type, name)]
        except KeyError:
            raise TrustStoreError(
                f'the trust store "{name}" of type "{store_type}" does not exist'
            ) from None

    def __repr__(self) -> str:
        names = ", ".join(f"{t}:{n}({len(c)})" for (t, n), c in self._stores.items())
        return f"<TrustStore {names}>"


def read_certificate_file(data: bytes, label: str = "certificate file") -> list[x509.Certificate]:
    """Parse a trust store file as notation does: PEM blocks (all CERTIFICATE) or DER.

    Raises:
        TrustStoreError: empty, not certificates, or a non-certificate PEM block.
    """
    if not data.strip():
        raise TrustStoreError(f"{label}: no certificates found")
    if b"-----BEGIN" in data:
        blocks = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)
        if any(b != b"CERTIFICATE" for b in blocks):
            raise TrustStoreError(f"{label}: contains a PEM block that is not a CERTIFICATE")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion):
            raise TrustStoreError(f"{label}: malformed PEM certificate") from None
    else:
        certs = []
        rest = data
        while rest:
            length = _der_length(rest)
            if length is None:
                raise TrustStoreError(f"{label}: not a DER certificate")
            try:
                certs.append(x509.load_der_x509_certificate(rest[:length]))
            except (ValueError, x509.InvalidVersion):
                raise TrustStoreError(f"{label}: malformed DER certificate") from None
            rest = rest[length:]
    if not certs:
        raise TrustStoreError(f"{label}: no certificates found")
    return certs


def _der_length(data: bytes) -> int | None:
    """Total length of the DER SEQUENCE at the start of ``data`` or None."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        total = 2 + first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return None
        total = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    return total if total <= len(data) else None


def trust_store_dir(config_dir: str | os.PathLike[str], store_type: str, name: str) -> Path:
    """``{config}/truststore/x509/{type}/{name}``.

    Raises:
        ValueError: unknown type or invalid name.
    """
    _check_type_and_name(store_type, name)
    return Path(config_dir) / "truststore" / "x509" / store_type / name


class DirectoryTrustStore:
    """The trust stores under a notation configuration directory, loaded on demand."""

    def __init__(self, config_dir: str | os.PathLike[str]) -> None:
        """Read stores under ``config_dir`` (nothing is read until asked)."""
        self._config_dir = Path(config_dir)

    def certificates(self, store_type: str, name: str) -> Sequence[x509.Certificate]:
        """Load ``store_type:name`` with notation's loader rules.

        Raises:
            TrustStoreError: missing store, symlinked or non-regular entries, files that
                are not certificates, certificates notation refuses (notation's wording).
        """
        path = trust_store_dir(self._config_dir, store_type, name)
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise TrustStoreError(
                f'the trust store "{name}" of type "{store_type}" does not exist'
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            raise TrustStoreError(
                f"the trust store {name} of type {store_type} with path {path} is not a "
                "regular directory (symlinks are not supported)"
            )
        certs: list[x509.Certificate] = []
        for entry in sorted(path.iterdir()):
            mode = entry.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise TrustStoreError(
                    f"trusted certificate {entry.name} in trust store {name} of type "
                    f"{store_type} is not a regular file (directories or symlinks are not "
                    "supported)"
                )
            label = f"trusted certificate {entry.name} in trust store {name} of type {store_type}"
            if entry.stat().st_size > _MAX_CERT_FILE:
                raise TrustStoreError(f"{label}: file too large")
            found = read_certificate_file(entry.read_bytes(), label)
            check_store_certificates(found, store_type, label)
            certs.extend(found)
        if not certs:
            raise TrustStoreError(
                f'no x509 certificates were found in trust store "{name}" of type "{store_type}"'
            )
        return certs

    def __repr__(self) -> str:
        return f"<DirectoryTrustStore {str(self._config_dir)!r}>"


def _file_name(cert: x509.Certificate) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cns[-1].value) if cns else "cert"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cn).strip("-.")[:48] or "cert"
    return f"{slug}-{hashlib.sha256(der).hexdigest()[:16]}.crt"


def write_trust_store(
    config_dir: str | os.PathLike[str],
    store_name: str,
    certs: Iterable[x509.Certificate],
    type: str = "ca",
    *,
    exact: bool = False,
) -> list[Path]:
    """Write ``certs`` as notation's trust store ``type:store_name`` under ``config_dir``.

    Each certificate becomes one PEM file named ``<CN slug>-<thumbprint prefix>.crt``, as
    ``notation cert add`` would store it. Writing the same certificate again is a no-op;
    existing other files are kept (so rotation adds the new root beside the old one), or,
    with ``exact``, deleted once the new files are in place (the store then holds exactly
    ``certs``).

    Returns:
        The paths of the files for ``certs``.

    Raises:
        ValueError: unknown type or invalid store name.
        TrustStoreError: a certificate notation would refuse in this store, or no certs;
            with ``exact``, an entry of the store that is not a regular file.
    """
    cert_list = list(certs)
    check_store_certificates(cert_list, type, f"trust store {type}:{store_name}")
    directory = trust_store_dir(config_dir, type, store_name)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for cert in cert_list:
        path = directory / _file_name(cert)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        if not (path.is_file() and path.read_bytes() == pem):
            atomic_write(path, pem, tmp_dir=directory.parent)
        paths.append(path)
    if exact:
        stale = [entry for entry in directory.iterdir() if entry not in paths]
        for entry in stale:
            if not stat.S_ISREG(entry.lstat().st_mode):
                raise TrustStoreError(f"{entry} is not a regular file: not removed")
        for entry in stale:
            entry.unlink()
    return paths


def read_trust_policy(config_dir: str | os.PathLike[str]) -> TrustPolicy | None:
    """``{config_dir}/trustpolicy.json`` validated with notation's rules; None when there
    is no policy file.

    Raises:
        TrustPolicyError: the file is one notation would refuse (the message is notation's).
        TrustStoreError: the path is a symlink or not a regular file (notation refuses it).
    """
    path = trust_policy_path(config_dir)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise TrustStoreError(
            f"{path}: trust policy is not a regular file (symlinks are not supported)"
        )
    if info.st_size > _MAX_CERT_FILE:
        raise TrustStoreError(f"{path}: trust policy file too large")
    return validate_trust_policy(path.read_bytes())


def default_config_dir(
    environ: Mapping[str, str] | None = None, platform: str = sys.platform
) -> Path:
    """The directory ``notation`` itself uses when run with ``environ``.

    ``$NOTATION_CONFIG`` when set (notation v1.3.2 ``cmd/notation/main.go``); otherwise Go's
    ``os.UserConfigDir()`` joined with ``notation`` (notation-go ``dir/path.go``):
    ``$XDG_CONFIG_HOME`` (must be absolute) or ``$HOME/.config`` on Unix,
    ``$HOME/Library/Application Support`` on macOS, ``%AppData%`` on Windows.

    Raises:
        ConfigError: the variables Go needs are unset (or ``$XDG_CONFIG_HOME`` is
            relative), so notation itself would have no configuration directory.
    """
    env = os.environ if environ is None else environ
    if env.get("NOTATION_CONFIG"):
        return Path(env["NOTATION_CONFIG"])
    if platform.startswith("win"):
        base = env.get("APPDATA") or env.get("AppData", "")
        if not base:
            raise ConfigError("%AppData% is not set: give the notation configuration directory")
        return Path(base) / "notation"
    home = env.get("HOME", "")
    if platform == "darwin":
        if not home:
            raise ConfigError("$HOME is not set: give the notation configuration directory")
        return Path(home) / "Library" / "Application Support" / "notation"
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg:
        if not os.path.isabs(xdg):
            raise ConfigError("$XDG_CONFIG_HOME is relative (Go ignores it): give the directory")
        return Path(xdg) / "notation"
    if not home:
        raise ConfigError("neither $XDG_CONFIG_HOME nor $HOME is set: give the directory")
    return Path(home) / ".config" / "notation"


_POLICY = "trustpolicy.json"


def trust_policy_path(config_dir: str | os.PathLike[str]) -> Path:
    """The trust policy file notation v1.3.2 reads in ``config_dir``:
    ``trustpolicy.json``."""
    return Path(config_dir) / _POLICY


def write_trust_policy(config_dir: str | os.PathLike[str], policy: TrustPolicy) -> Path:
    """Write ``{config_dir}/trustpolicy.json`` atomically (a regular file, never a link).

    Raises:
        TrustPolicyError: the policy is one notation would reject.
    """
    data = policy.to_json()
    directory = Path(config_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = trust_policy_path(directory)
    atomic_write(path, data, tmp_dir=directory)
    return path


def remove_trust_policy(config_dir: str | os.PathLike[str]) -> Path | None:
    """Delete ``{config_dir}/trustpolicy.json`` (for a policy left with no statement, which
    notation would refuse to load); returns its path, or None if there was none.

    Raises:
        TrustStoreError: the path is a directory (notation refuses it; not removed).
    """
    path = trust_policy_path(config_dir)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise TrustStoreError(f"{path} is a directory, not a trust policy file")
    path.unlink()
    return path


def remove_trust_store(config_dir: str | os.PathLike[str], store_type: str, name: str) -> int:
    """Delete trust store ``store_type:name`` (its files, then its directory).

    Returns:
        The number of files removed (0: the store did not exist).

    Raises:
        ValueError: unknown type or invalid name.
        TrustStoreError: the store is a symlink or holds a subdirectory or a link (notation
            refuses such a store; holdca never writes one, so it removes nothing).
    """
    directory = trust_store_dir(config_dir, store_type, name)
    try:
        info = directory.lstat()
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        raise TrustStoreError(f"{directory} is not a regular directory: not removed")
    entries = sorted(directory.iterdir())
    for entry in entries:
        if not stat.S_ISREG(entry.lstat().st_mode):
            raise TrustStoreError(f"{entry} is not a regular file: {directory} not removed")
    for entry in entries:
        entry.unlink()
    directory.rmdir()
    return len(entries)
