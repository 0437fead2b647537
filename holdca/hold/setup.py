"""From a :class:`~holdca.hold.config.HoldConfig` to a running :class:`~holdca.hold.HoldCA`.

This is the I/O edge of the hold package: it opens the key store (PEM directory or
PKCS#11 token), the SQLite ledger, and reads or writes the CA certificate file.

Example::

    config = HoldConfig.from_env()
    ca = open_hold(config, now=datetime.now(UTC), create=False)
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write
from holdca.atproto.identity import Resolver
from holdca.errors import ConfigError
from holdca.hold.audit import AuditLog
from holdca.hold.config import HoldConfig
from holdca.hold.ledger import IssuanceLedger, SQLiteLedger
from holdca.hold.policy import Authorizer, IssuancePolicy, RateLimiter
from holdca.hold.service import HoldCA
from holdca.keys import KeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import SigningScheme
from holdca.pki import SubjectInfo

__all__ = [
    "audit_from_config",
    "key_store_from_config",
    "open_hold",
    "policy_from_config",
    "resolver_from_config",
    "write_pem_certificate",
]


def key_store_from_config(config: HoldConfig) -> tuple[KeyStore, str]:
    """The key store and the CA key label the config names.

    PEM: ``HOLD_CA_KEY_PATH`` is either the key store directory (label
    ``HOLD_CA_KEY_LABEL``) or a ``<label>.pem`` file in it. Without it, the directory
    ``keys/`` beside the CA certificate is used.

    Raises:
        ConfigError: no place for the keys; PKCS#11 support not installed.
        KeyStoreError: the backend refused (token not found, wrong PIN).
    """
    label = config.ca_key_label
    if config.key_backend == "pkcs11":
        try:
            from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise ConfigError(
                "HOLD_KEY_BACKEND=pkcs11 needs python-pkcs11: pip install 'holdca[pkcs11]'"
            ) from exc
        assert config.pkcs11_module is not None
        assert config.pkcs11_token_label is not None
        assert config.pkcs11_pin is not None
        store: KeyStore = PKCS11KeyStore(
            str(config.pkcs11_module), config.pkcs11_token_label, config.pkcs11_pin.reveal()
        )
        return store, label
    if config.ca_key_path is not None:
        path = config.ca_key_path
        if path.suffix == ".pem" and not path.is_dir():
            directory, label = path.parent, path.stem
        else:
            directory = path
    elif config.ca_cert_path is not None:
        directory = config.ca_cert_path.parent / "keys"
    else:
        raise ConfigError("HOLD_CA_KEY_PATH: required with HOLD_KEY_BACKEND=pem")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passphrase = (
        None
        if config.ca_key_passphrase is None
        else config.ca_key_passphrase.reveal().encode("utf-8")
    )
    return PEMKeyStore(directory, passphrase=passphrase), label


def policy_from_config(config: HoldConfig) -> IssuancePolicy:
    """The issuance policy the config describes (methods, max validity, rate limit)."""
    limiter = (
        RateLimiter(config.rate_limit_per_hour, timedelta(hours=1))
        if config.rate_limit_per_hour
        else None
    )
    return IssuancePolicy(
        allowed_methods=config.allowed_did_methods,
        max_validity=timedelta(hours=config.cert_validity_hours),
        rate_limit=limiter,
    )


def resolver_from_config(config: HoldConfig) -> Resolver:
    """The hold's own HTTP resolver: ``HOLD_PLC_URL`` and the ``HOLD_NETWORK_ALLOW`` policy.

    Raises:
        ConfigError: the http extra is not installed, or the allow list is bad.
    """
    try:
        from holdca.atproto.resolve import HTTPResolver  # noqa: PLC0415 - optional extra
        from holdca.net import AddressPolicy  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            "resolving DIDs needs the http extra: pip install 'holdca[http]'"
        ) from exc
    policy = AddressPolicy.parse(config.network_allow, variable="HOLD_NETWORK_ALLOW")
    return HTTPResolver(plc_url=config.plc_url, policy=policy, cache_ttl=config.identity_ttl)


def audit_from_config(config: HoldConfig, *, tags: dict[str, bool] | None = None) -> AuditLog:
    """The audit log ``HOLD_AUDIT_LOG`` names: JSON lines to a file (mode 0600), ``-`` for
    stdout, or stderr when unset; every event at INFO and above is written.

    Raises:
        ConfigError: the file cannot be opened for appending.
    """
    logger = logging.getLogger(f"holdca.audit.{id(config):x}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    target = config.audit_log
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler(sys.stdout)
    elif target is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        path = Path(target)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"HOLD_AUDIT_LOG: cannot append to {target!r} ({exc.strerror or exc})"
            ) from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return AuditLog(logger, tags=dict(tags or {}))


def write_pem_certificate(path: Path, certs: list[x509.Certificate]) -> None:
    """Write certificates as PEM to ``path`` atomically (temporary file + rename)."""
    atomic_write(path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def open_hold(
    config: HoldConfig,
    *,
    now: datetime,
    create: bool = False,
    audit: AuditLog | None = None,
    authorizer: Authorizer | None = None,
    ledger: IssuanceLedger | None = None,
    **options: Any,
) -> HoldCA:
    """Open the hold ``config`` describes; with ``create``, make its CA if it has none.

    Reads ``HOLD_CA_CERT_PATH`` when it exists; when the CA is created (or was rotated)
    the root new leaves chain to is written there (the certificate relying parties trust).
    The hold watches DIDs as ``HOLD_ON_DID_CHANGE`` says (``on_did_change=`` overrides it;
    see :mod:`holdca.hold.watch`).

    Raises:
        ConfigError: missing certificate path, unreadable certificate, key mismatch, ...
        KeyStoreError, LedgerError: the backends failed.
    """
    if config.ca_cert_path is None:
        raise ConfigError("HOLD_CA_CERT_PATH: required")
    store, label = key_store_from_config(config)
    if ledger is None:
        ledger_path = config.effective_ledger_path
        assert ledger_path is not None
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
        ledger = SQLiteLedger(ledger_path)
    certificate = None
    if config.ca_cert_path.exists():
        try:
            certificate = x509.load_pem_x509_certificates(config.ca_cert_path.read_bytes())[0]
        except (ValueError, x509.InvalidVersion, IndexError, OSError) as exc:
            raise ConfigError(
                f"HOLD_CA_CERT_PATH: {config.ca_cert_path} is not a readable PEM certificate"
            ) from exc
    options.setdefault("on_did_change", config.on_did_change)
    subject = SubjectInfo(
        country=config.subject_country,
        state=config.subject_state,
        organization=config.subject_organization,
    )
    ca = HoldCA.open(
        store,
        ledger,
        hold_did=config.hold_did,
        subject=subject,
        now=now,
        key_label=label,
        certificate=certificate,
        create=create,
        intermediate_label=config.ca_intermediate_label,
        audit=audit,
        authorizer=authorizer,
        policy=policy_from_config(config),
        leaf_validity=timedelta(hours=config.cert_validity_hours),
        scheme=SigningScheme(config.signing_scheme),
        crl_url=config.effective_crl_url,
        ocsp_url=config.effective_ocsp_url,
        cosign_enabled=config.cosign_enabled,
        grace=timedelta(days=config.rotation_grace_days),
        proof_max_age=timedelta(seconds=config.proof_max_age),
        reuse_identities=config.reuse_identities,
        **options,
    )
    if certificate is None or certificate != ca.root_certificate:
        write_pem_certificate(config.ca_cert_path, [ca.root_certificate])
    return ca
