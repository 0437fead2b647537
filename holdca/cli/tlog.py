"""``holdca log vkey``: print the verifier key of the hold's transparency log.

The key string (``<origin>+<hex key ID>+<base64 key>``, C2SP signed-note) is what operators
publish and ``holdca monitor --vkey`` takes. It is read from the hold's key store (key
``HOLD_LOG_KEY_LABEL`` for origin ``HOLD_LOG_ORIGIN``) without opening the CA or the ledger;
nothing is created (``holdca init --log`` does that).
"""

from __future__ import annotations

# Commands import what they need when they run: `holdca --help` stays fast.
# ruff: noqa: PLC0415
import argparse

from holdca.cli import common as c
from holdca.errors import ConfigError

__all__ = ["register"]


def _cmd_vkey(args: argparse.Namespace) -> int:
    from holdca.hold.logsetup import log_signer_from_config
    from holdca.hold.setup import key_store_from_config

    config = c.config(args)
    if config.log_dir is None:
        raise ConfigError(
            "HOLD_LOG_DIR: unset, the hold has no transparency log (holdca init --log)"
        )
    store, _ = key_store_from_config(config)
    signer = log_signer_from_config(config, store)
    c.emit(
        args,
        {"vkey": signer.vkey, "origin": signer.name, "logDir": str(config.log_dir)},
        signer.vkey,
    )
    return 0


def register(
    add: c.Adder, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser
) -> None:
    """Add ``log vkey`` to the parser (``add`` makes one subcommand)."""
    p = add("log", _cmd_vkey, "the hold's transparency log (HOLD_LOG_DIR)")
    sub = p.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    sub.add_parser(
        "vkey",
        help="print the log's verifier key (what monitors pass to --vkey)",
        description="print the log's verifier key (what monitors pass to --vkey)",
        parents=[common, as_json],
    )
