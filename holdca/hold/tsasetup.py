"""The hold's timestamper from its configuration: an external TSA or its own.

* ``HOLD_TSA_URL`` + ``HOLD_TSA_ROOT_CERT_PATH``: an
  :class:`~holdca.notation.timestamp_http.HTTPTimestamper` through the hold's address
  policy (``HOLD_NETWORK_ALLOW``).
* ``HOLD_TSA=local``: a :class:`~holdca.notation.timestamp_tsa.LocalTSA` whose root and
  key are separate from the issuing CA: keys ``hold-tsa-root`` and ``hold-tsa`` in the
  hold's key store (PEM or PKCS#11), certificates ``tsa-root.crt`` and ``tsa.crt`` beside
  the CA certificate. Only ``create`` (``holdca init``) makes them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.errors import ConfigError, TimestampError
from holdca.hold.config import HoldConfig
from holdca.keys import KeyStore
from holdca.notation.timestamp import Timestamper
from holdca.notation.timestamp_tsa import LocalTSA
from holdca.pki import (
    TSA_KEY_LABEL,
    TSA_ROOT_KEY_LABEL,
    SubjectInfo,
    issue_tsa_certificate,
    issue_tsa_root,
)

__all__ = ["TSA_CERT_FILE", "TSA_ROOT_FILE", "local_tsa", "timestamper_from_config"]

TSA_ROOT_FILE = "tsa-root.crt"
"""The built-in TSA's root certificate (PEM), beside ``ca.crt``: what verifiers put in a
notation ``tsa:`` store."""

TSA_CERT_FILE = "tsa.crt"
"""The built-in TSA's signing certificate (PEM), beside ``ca.crt``."""


def _read_pem(path: Path, variable: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"{variable}: {path} is not a readable PEM certificate ({type(exc).__name__})"
        ) from None
    if not certs:
        raise ConfigError(f"{variable}: {path} holds no certificate")
    return certs


def local_tsa(
    config: HoldConfig, store: KeyStore, *, now: datetime, create: bool = False
) -> LocalTSA:
    """The hold's own TSA; with ``create``, make its keys and certificates when missing.

    Raises:
        ConfigError: no HOLD_CA_CERT_PATH; without ``create``, a missing key or
            certificate file; unreadable files; a certificate that does not match its key.
        KeyStoreError: the key store failed.
    """
    directory = config.tsa_directory
    if directory is None:
        raise ConfigError("HOLD_TSA: needs HOLD_CA_CERT_PATH (tsa-root.crt is kept beside it)")
    root_path, cert_path = directory / TSA_ROOT_FILE, directory / TSA_CERT_FILE
    subject = SubjectInfo(
        country=config.subject_country,
        state=config.subject_state,
        organization=config.subject_organization,
    )
    labels = set(store.labels())
    if create and not (root_path.exists() and cert_path.exists() and TSA_KEY_LABEL in labels):
        root_key = (
            store.load(TSA_ROOT_KEY_LABEL)
            if TSA_ROOT_KEY_LABEL in labels
            else store.generate(TSA_ROOT_KEY_LABEL)
        )
        key = (
            store.load(TSA_KEY_LABEL) if TSA_KEY_LABEL in labels else store.generate(TSA_KEY_LABEL)
        )
        root = issue_tsa_root(root_key, hold_did=config.hold_did, subject=subject, now=now)
        cert = issue_tsa_certificate(root_key, root, key.public_key, subject=subject, now=now)
        pem = serialization.Encoding.PEM
        atomic_write(root_path, root.public_bytes(pem))
        atomic_write(cert_path, cert.public_bytes(pem))
    elif TSA_KEY_LABEL not in labels:
        raise ConfigError(
            f"HOLD_TSA=local: no key {TSA_KEY_LABEL!r} in the key store (run holdca init --tsa)"
        )
    key = store.load(TSA_KEY_LABEL)
    for path in (root_path, cert_path):
        if not path.exists():
            raise ConfigError(f"HOLD_TSA=local: {path} does not exist (run holdca init --tsa)")
    root = _read_pem(root_path, "HOLD_TSA")[0]
    chain = [*_read_pem(cert_path, "HOLD_TSA"), root]
    try:
        return LocalTSA(key, chain)
    except TimestampError as exc:
        raise ConfigError(f"HOLD_TSA=local: {cert_path}: {exc}") from None


def timestamper_from_config(
    config: HoldConfig, store: KeyStore, *, now: datetime, create: bool = False
) -> Timestamper | None:
    """The timestamper the config names, or ``None`` (no TSA configured).

    Raises:
        ConfigError: unreadable or unsuitable TSA roots, a URL the address policy refuses,
            missing built-in TSA files (see :func:`local_tsa`), or the http extra missing.
    """
    if config.tsa == "local":
        return local_tsa(config, store, now=now, create=create)
    if config.tsa_url is None:
        return None
    assert config.tsa_root_cert_path is not None
    roots = _read_pem(config.tsa_root_cert_path, "HOLD_TSA_ROOT_CERT_PATH")
    try:
        from holdca.errors import AddressRefusedError  # noqa: PLC0415
        from holdca.net import AddressPolicy  # noqa: PLC0415 - optional extra
        from holdca.notation.timestamp_http import HTTPTimestamper  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError("HOLD_TSA_URL needs the http extra: pip install -e '.[http]'") from exc
    policy = AddressPolicy.parse(config.network_allow, variable="HOLD_NETWORK_ALLOW")
    try:
        return HTTPTimestamper(config.tsa_url, roots, policy=policy)
    except TimestampError as exc:
        raise ConfigError(f"HOLD_TSA_ROOT_CERT_PATH: {exc}") from None
    except AddressRefusedError as exc:
        raise ConfigError(f"HOLD_TSA_URL: {exc}") from None
