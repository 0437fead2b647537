"""What every command shares: configuration from ``--home`` and ``HOLD_*``, opening the
hold, reading files, parsing times and serials, printing text or JSON."""

from __future__ import annotations

# ruff: noqa: PLC0415
import argparse
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import ConfigError

__all__ = [
    "Adder",
    "UsageError",
    "config",
    "emit",
    "environment",
    "fingerprint",
    "home",
    "now",
    "open_ca",
    "parse_serial",
    "parse_time",
    "pem",
    "read",
    "stored_settings",
]


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


class Adder(Protocol):
    """Adds one subcommand: ``add(name, func, help, *parents) -> its parser``."""

    def __call__(
        self,
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        *parents: argparse.ArgumentParser,
    ) -> argparse.ArgumentParser:
        """The new subcommand's parser."""
        ...


def now() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)


def home(args: argparse.Namespace) -> Path | None:
    """The hold directory: ``--home`` or ``$HOLDCA_HOME``, or ``None``."""
    directory = args.home or os.environ.get("HOLDCA_HOME")
    return Path(directory) if directory else None


def stored_settings(directory: Path) -> dict[str, str]:
    """The settings saved in ``directory/hold.json`` by ``holdca init`` (none: empty).

    Raises:
        ConfigError: the file is not readable JSON, or not a JSON object.
    """
    settings = directory / "hold.json"
    if not settings.is_file():
        return {}
    try:
        stored = json.loads(settings.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{settings}: not a readable JSON file ({exc})") from None
    if not isinstance(stored, dict):
        raise ConfigError(f"{settings}: must be a JSON object")
    return {str(k): str(v) for k, v in stored.items()}


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The ``HOLD_*`` settings: the hold directory's paths and ``hold.json``, then the
    environment (which wins)."""
    env: dict[str, str] = {}
    directory = home(args)
    if directory is not None:
        env["HOLD_CA_CERT_PATH"] = str(directory / "ca.crt")
        env["HOLD_CA_KEY_PATH"] = str(directory / "keys")
        env["HOLD_LEDGER_PATH"] = str(directory / "ledger.sqlite3")
        env.update(stored_settings(directory))
    env.update({k: v for k, v in os.environ.items() if k.startswith("HOLD_")})
    return env


def config(args: argparse.Namespace) -> Any:
    """The :class:`~holdca.hold.HoldConfig` of the command line (ConfigError if invalid)."""
    from holdca.hold.config import HoldConfig

    return HoldConfig.from_env(environment(args))


def open_ca(args: argparse.Namespace, **options: Any) -> Any:
    """Open the hold (the operator is the caller: AllowAllAuthorizer unless given)."""
    from holdca.hold.policy import AllowAllAuthorizer
    from holdca.hold.setup import open_hold

    # The operator runs the CLI: the ATProto proof is the gate, there is no remote caller.
    options.setdefault("authorizer", AllowAllAuthorizer())
    return open_hold(config(args), now=now(), **options)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of a certificate as colon-separated upper-case hex."""
    from holdca.hold.castate import fingerprint as of

    return of(cert)


def pem(certs: Sequence[x509.Certificate]) -> str:
    """Certificates as concatenated PEM."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def read(path: str, what: str) -> bytes:
    """The bytes of ``path`` (UsageError naming ``what`` if it cannot be read)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time (UTC if no zone); UsageError naming ``what``."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def parse_serial(text: str) -> int:
    """A serial in hex (``0x`` and colons allowed); UsageError otherwise."""
    try:
        return int(text.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise UsageError(f"--serial: not a hexadecimal serial number: {text!r}") from None


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)
