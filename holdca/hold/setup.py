"""From a :class:`~holdca.hold.config.HoldConfig` to a running :class:`~holdca.hold.HoldCA`.

This is the I/O edge of the hold package: it opens the key store (PEM directory or
PKCS#11 token), the ledger (a SQLite file, or PostgreSQL at ``HOLD_LEDGER_URL``), and reads
(or, when creating the hold, writes) the CA certificate file. Only ``create=True``
(``holdca init``) creates any of them.

Example::

    config = HoldConfig.from_env()
    ca = open_hold(config, now=datetime.now(UTC), create=False)
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca._fs import atomic_write, undo_on_failure
from holdca.atproto.identity import Resolver
from holdca.errors import ConfigError
from holdca.hold.audit import AuditLog
from holdca.hold.config import HoldConfig
from holdca.hold.ledger import IssuanceLedger, PostgresLedger, SQLiteLedger
from holdca.hold.policy import Authorizer, IssuancePolicy, RateLimiter
from holdca.hold.service import HoldCA
from holdca.keys import KeyStore
from holdca.keys.pem import PEMKeyStore
from holdca.notation import SigningScheme
from holdca.notation.formats import SignatureFormat
from holdca.pki import SubjectInfo

__all__ = [
    "audit_from_config",
    "key_store_from_config",
    "ledger_from_config",
    "open_hold",
    "policy_from_config",
    "resolver_from_config",
    "write_pem_certificate",
]


def _only_init(variable: str, path: Path, *, default: bool = False) -> ConfigError:
    where = f"unset, and the default {path}" if default else str(path)
    return ConfigError(f"{variable}: {where} does not exist (only holdca init creates a hold)")


def _pem_location(config: HoldConfig) -> tuple[Path, str, bool]:
    """The PEM key directory, the CA key label and whether ``HOLD_CA_KEY_PATH`` names a
    ``<label>.pem`` file (not a directory).

    Raises:
        ConfigError: neither ``HOLD_CA_KEY_PATH`` nor ``HOLD_CA_CERT_PATH`` is set.
    """
    path = config.ca_key_path
    if path is not None:
        if path.suffix == ".pem" and not path.is_dir():
            return path.parent, path.stem, True
        return path, config.ca_key_label, False
    if config.ca_cert_path is not None:
        return config.ca_cert_path.parent / "keys", config.ca_key_label, False
    raise ConfigError("HOLD_CA_KEY_PATH: required with HOLD_KEY_BACKEND=pem")


def key_store_from_config(config: HoldConfig, *, create: bool = False) -> tuple[KeyStore, str]:
    """The key store and the CA key label the config names.

    PEM: ``HOLD_CA_KEY_PATH`` is either the key store directory (label
    ``HOLD_CA_KEY_LABEL``) or a ``<label>.pem`` file in it. Without it, the directory
    ``keys/`` beside the CA certificate is used. Only with ``create`` is a missing
    directory made (mode 0700); otherwise the directory, or the ``<label>.pem`` file
    ``HOLD_CA_KEY_PATH`` names, must exist.

    Raises:
        ConfigError: no place for the keys; without ``create``, the key directory or key
            file does not exist; PKCS#11 support not installed.
        KeyStoreError: the backend refused (token not found, wrong PIN).
    """
    label = config.ca_key_label
    if config.key_backend == "pkcs11":
        try:
            from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise ConfigError(
                "HOLD_KEY_BACKEND=pkcs11 needs python-pkcs11: "
                "pip install -e '.[pkcs11]' in a holdca checkout"
            ) from exc
        assert config.pkcs11_module is not None
        assert config.pkcs11_token_label is not None
        assert config.pkcs11_pin is not None
        store: KeyStore = PKCS11KeyStore(
            str(config.pkcs11_module), config.pkcs11_token_label, config.pkcs11_pin.reveal()
        )
        return store, label
    directory, label, is_file = _pem_location(config)
    if create:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif not directory.exists():
        raise _only_init("HOLD_CA_KEY_PATH", directory, default=config.ca_key_path is None)
    elif is_file and not (directory / f"{label}.pem").exists():
        raise _only_init("HOLD_CA_KEY_PATH", directory / f"{label}.pem")
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
            "resolving DIDs needs the http extra: pip install -e '.[http]' in a holdca checkout"
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


def _read_certificate(path: Path, *, create: bool) -> x509.Certificate | None:
    """The first certificate in the PEM file ``path``; ``None`` if it is missing and
    ``create`` is true.

    Raises:
        ConfigError: the file is missing (without ``create``) or not a PEM certificate.
    """
    if not path.exists():
        if create:
            return None
        raise _only_init("HOLD_CA_CERT_PATH", path)
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (ValueError, x509.InvalidVersion, IndexError, OSError) as exc:
        raise ConfigError(f"HOLD_CA_CERT_PATH: {path} is not a readable PEM certificate") from exc


def _created_by_init(config: HoldConfig, ledger_path: Path | None) -> list[Path]:
    """What a failed ``open_hold(create=True)`` removes again if it was not there before:
    the CA certificate and, with a ledger file this run creates, that ledger and the PEM
    key directory and key files (never keys that a ledger kept from before may name)."""
    assert config.ca_cert_path is not None
    paths = [config.ca_cert_path]
    if config.log_dir is not None:  # removed only if missing now: init --log made them
        paths.append(config.log_dir)
        if config.key_backend == "pem":
            paths.append(_pem_location(config)[0] / f"{config.log_key_label}.pem")
    if ledger_path is None or ledger_path.exists():
        return paths
    paths += [
        ledger_path,
        *(ledger_path.with_name(ledger_path.name + s) for s in ("-wal", "-shm", "-journal")),
    ]
    if config.key_backend == "pem":
        directory, label, _ = _pem_location(config)
        labels = [label, *([config.ca_intermediate_label] if config.ca_intermediate_label else [])]
        paths += [directory, *(directory / f"{name}.pem" for name in labels)]
    return paths


def ledger_from_config(config: HoldConfig, *, create: bool = False) -> IssuanceLedger:
    """The ledger the config names: PostgreSQL at ``HOLD_LEDGER_URL``, else the SQLite file
    ``HOLD_LEDGER_PATH`` (default beside the CA certificate).

    Only with ``create`` (``holdca init``) is a missing SQLite file, or a database without
    the holdca schema, made.

    Raises:
        ConfigError: no ledger path; without ``create``, a missing file or a database
            without the holdca schema; the postgres extra is not installed.
        LedgerError: the ledger cannot be opened (unreachable database, newer schema).
    """
    if config.ledger_url is not None:
        return PostgresLedger(config.ledger_url.reveal(), create=create)
    ledger_path = config.effective_ledger_path
    if ledger_path is None:
        raise ConfigError("HOLD_CA_CERT_PATH: required")
    if create:
        ledger_path.parent.mkdir(parents=True, exist_ok=True)
    elif not ledger_path.exists():
        raise _only_init("HOLD_LEDGER_PATH", ledger_path, default=config.ledger_path is None)
    return SQLiteLedger(ledger_path)


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

    Only ``create`` (``holdca init``) makes state. Without it, the CA certificate
    ``HOLD_CA_CERT_PATH``, the ledger ``HOLD_LEDGER_PATH`` or the holdca schema in
    ``HOLD_LEDGER_URL`` (unless ``ledger`` is given) and, for PEM keys, the key directory
    or key file must exist: a mistyped path is an error, not a new empty hold.
    ``HOLD_CA_CERT_PATH`` is written only by ``create``, when
    it is missing (the CA was just made, or its certificate file was deleted); after a
    rotation or recovery the command that did it rewrites it. With ``create``, a failure
    removes what this call created (certificate, new ledger, new key files). The hold
    watches DIDs as ``HOLD_ON_DID_CHANGE`` says (``on_did_change=`` overrides it; see
    :mod:`holdca.hold.watch`).
    With ``HOLD_LOG_DIR`` every issuance and revocation is published to the transparency
    log there (:mod:`holdca.hold.logsetup`: only ``create`` makes its key and directory,
    and publishes the first checkpoint; ``transparency=`` overrides it).

    Raises:
        ConfigError: missing certificate path; without ``create``, a missing certificate,
            ledger or key file; unreadable certificate, key mismatch, ...
        KeyStoreError, LedgerError: the backends failed.
        OSError: with ``create``, the certificate file could not be written.
    """
    if config.ca_cert_path is None:
        raise ConfigError("HOLD_CA_CERT_PATH: required")
    ledger_path = None if ledger is not None else config.effective_ledger_path
    certificate = _read_certificate(config.ca_cert_path, create=create)
    undo: AbstractContextManager[None] = (
        undo_on_failure(*_created_by_init(config, ledger_path)) if create else nullcontext()
    )
    with undo:
        store, label = key_store_from_config(config, create=create)
        own = ledger is None
        if ledger is None:
            ledger = ledger_from_config(config, create=create)
        try:
            ca = _open_ca(
                config,
                store,
                label,
                ledger,
                certificate,
                now=now,
                create=create,
                audit=audit,
                authorizer=authorizer,
                **options,
            )
            if certificate is None:  # only with create
                write_pem_certificate(config.ca_cert_path, [ca.root_certificate])
        except BaseException:
            if own:
                ledger.close()
            raise
    return ca


def _open_ca(
    config: HoldConfig,
    store: KeyStore,
    label: str,
    ledger: IssuanceLedger,
    certificate: x509.Certificate | None,
    **options: Any,
) -> HoldCA:
    """``HoldCA.open`` with everything the config says."""
    options.setdefault("on_did_change", config.on_did_change)
    if "transparency" not in options and config.log_dir is not None:
        from holdca.hold.logsetup import issuance_log_from_config  # noqa: PLC0415

        options["transparency"] = issuance_log_from_config(
            config, store, ledger, create=bool(options.get("create"))
        )
    if "timestamper" not in options and config.timestamps:
        from holdca.hold.tsasetup import timestamper_from_config  # noqa: PLC0415

        options["timestamper"] = timestamper_from_config(
            config, store, now=options["now"], create=bool(options.get("create"))
        )
    subject = SubjectInfo(
        country=config.subject_country,
        state=config.subject_state,
        organization=config.subject_organization,
    )
    return HoldCA.open(
        store,
        ledger,
        hold_did=config.hold_did,
        subject=subject,
        key_label=label,
        certificate=certificate,
        intermediate_label=config.ca_intermediate_label,
        policy=policy_from_config(config),
        leaf_validity=timedelta(hours=config.cert_validity_hours),
        scheme=SigningScheme(config.signing_scheme),
        signature_format=SignatureFormat.parse(config.signature_format),
        crl_partition=None if config.crl_partition == "off" else config.crl_partition,
        crl_url=config.effective_crl_url,
        ocsp_url=config.effective_ocsp_url,
        cosign_enabled=config.cosign_enabled,
        grace=timedelta(days=config.rotation_grace_days),
        proof_max_age=timedelta(seconds=config.proof_max_age),
        reuse_identities=config.reuse_identities,
        **options,
    )
