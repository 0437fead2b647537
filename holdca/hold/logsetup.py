"""The hold's transparency log from its configuration (``HOLD_LOG_*``).

``HOLD_LOG_DIR`` names the published log directory, ``HOLD_LOG_KEY_LABEL`` (default
``hold-log``) the Ed25519 log key in the hold's key store, ``HOLD_LOG_ORIGIN`` the origin
line (default ``<did:web host>/log``). Only ``create`` (``holdca init --log``) makes the key
and the directory and publishes the first signed checkpoint; without it a missing
directory, checkpoint or key is a :class:`~holdca.errors.ConfigError` naming the variable,
and the published checkpoint must verify with the key for the origin, so a mistyped path
or a changed origin stops the hold at start-up instead of forking the log.

Example::

    signer = log_signer_from_config(config, store)
    print(signer.vkey)                              # what operators publish
    log = issuance_log_from_config(config, store, ledger)
"""

from __future__ import annotations

from pathlib import Path

from holdca.errors import ConfigError, HoldCAError, UnsupportedAlgorithmError
from holdca.hold.config import HoldConfig
from holdca.hold.ledger import IssuanceLedger
from holdca.hold.translog import IssuanceLog
from holdca.keys import KeyStore
from holdca.keys.ed25519 import Ed25519Signer
from holdca.tlog.checkpoint import open_checkpoint
from holdca.tlog.note import Ed25519NoteSigner
from holdca.tlog.store import CHECKPOINT_PATH

__all__ = ["issuance_log_from_config", "log_signer_from_config"]


def _no_ed25519(store: KeyStore) -> ConfigError:
    return ConfigError(
        f"HOLD_LOG_DIR: the {type(store).__name__} key store cannot hold Ed25519 keys, which "
        "the log key must be: use HOLD_KEY_BACKEND=pem or pkcs11 for a hold with a "
        "transparency log, or unset HOLD_LOG_DIR"
    )


def log_signer_from_config(
    config: HoldConfig, store: KeyStore, *, create: bool = False
) -> Ed25519NoteSigner:
    """The log's note signer: key ``HOLD_LOG_KEY_LABEL`` of ``store``, named after the origin.

    With ``create`` a missing key is generated (Ed25519).

    Raises:
        ConfigError: the store cannot hold Ed25519 keys (no ``generate_ed25519``);
            without ``create`` no key under the label; the key under the label is not an
            Ed25519 key; no origin.
        KeyStoreError: the key store failed.
    """
    origin = config.effective_log_origin
    if origin is None:
        raise ConfigError("HOLD_LOG_ORIGIN: required when HOLD_DID is not a did:web")
    generate = getattr(store, "generate_ed25519", None)
    load = getattr(store, "load_ed25519", None)
    if not callable(generate) or not callable(load):
        raise _no_ed25519(store)
    label = config.log_key_label
    key: Ed25519Signer
    try:
        if label in store.labels():
            key = load(label)
        elif create:
            key = generate(label)
        else:
            raise ConfigError(
                f"HOLD_LOG_KEY_LABEL: no key {label!r} in the key store "
                "(only holdca init --log creates it)"
            )
    except UnsupportedAlgorithmError as exc:
        raise ConfigError(
            f"HOLD_LOG_KEY_LABEL: the key {label!r} is not an Ed25519 key ({exc})"
        ) from None
    return Ed25519NoteSigner(origin, key)


def issuance_log_from_config(
    config: HoldConfig, store: KeyStore, ledger: IssuanceLedger, *, create: bool = False
) -> IssuanceLog | None:
    """The :class:`IssuanceLog` of ``HOLD_LOG_DIR``, or ``None`` when it is unset.

    With ``create``: the key (see :func:`log_signer_from_config`) and the directory are
    made when missing, and every entry ``ledger`` has sequenced is published (an empty
    signed checkpoint, size 0, for a new hold). Without it, the directory and its
    checkpoint must exist. Either way the published checkpoint must be signed by the key
    for the origin.

    Raises:
        ConfigError: see :func:`log_signer_from_config`; without ``create`` a missing
            directory or checkpoint; a checkpoint the key or origin does not match.
        KeyStoreError: the key store failed.
        LedgerError: with ``create``, the log could not be published.
    """
    root = config.log_dir
    if root is None:
        return None
    if not create:
        if not root.is_dir():
            raise ConfigError(
                f"HOLD_LOG_DIR: {root} does not exist (only holdca init --log creates it)"
            )
        if not (root / CHECKPOINT_PATH).is_file():
            raise ConfigError(
                f"HOLD_LOG_DIR: {root} has no checkpoint (only holdca init --log creates it)"
            )
    signer = log_signer_from_config(config, store, create=create)
    log = IssuanceLog(root, signer)
    if create:
        log.integrate(ledger)
    _check_published(root, signer)
    return log


def _check_published(root: Path, signer: Ed25519NoteSigner) -> None:
    """The published checkpoint verifies with ``signer``'s key for its origin."""
    try:
        data = (root / CHECKPOINT_PATH).read_bytes()
        open_checkpoint(data, [signer.verifier()], origin=signer.name)
    except OSError as exc:
        raise ConfigError(
            f"HOLD_LOG_DIR: {root / CHECKPOINT_PATH} cannot be read ({exc.strerror})"
        ) from None
    except HoldCAError as exc:
        raise ConfigError(
            f"HOLD_LOG_DIR: the checkpoint in {root} does not verify with the log key "
            f"{signer.name!r} (HOLD_LOG_KEY_LABEL, HOLD_LOG_ORIGIN): {exc}"
        ) from None
