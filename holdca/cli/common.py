"""What every command shares: configuration from ``--home`` and ``HOLD_*``, opening the
hold and its audit trail, reading files, parsing times and serials, printing text or JSON.

Serials are read as hexadecimal (``0x`` and colons allowed, any case) and always printed
in one form, :func:`serial_text` (lower-case hex, no ``0x``, no leading zeros), in text and
JSON alike.
"""

from __future__ import annotations

# ruff: noqa: PLC0415
import argparse
import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import ConfigError

__all__ = [
    "AUDIT_FILE",
    "MAX_SERIAL_BITS",
    "Adder",
    "UsageError",
    "audit_log",
    "close_audit",
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
    "serial_text",
    "stored_settings",
    "write_binary",
]

AUDIT_FILE = "audit.log"
"""The audit trail of CLI commands when ``HOLD_AUDIT_LOG`` is unset: beside the ledger."""

MAX_SERIAL_BITS = 160
"""RFC 5280 serials are at most 20 octets: a longer number is refused as a typo."""

_HEX_SERIAL = re.compile(r"[0-9a-f]+")
_audit_loggers: list[logging.Logger] = []


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
    environment (which wins). An unknown ``HOLD_*`` name (a typo) gets one warning line
    on stderr per command run."""
    from holdca.hold.config import unknown_settings

    env: dict[str, str] = {}
    stored: dict[str, str] = {}
    directory = home(args)
    if directory is not None:
        env["HOLD_CA_CERT_PATH"] = str(directory / "ca.crt")
        env["HOLD_CA_KEY_PATH"] = str(directory / "keys")
        env["HOLD_LEDGER_PATH"] = str(directory / "ledger.sqlite3")
        stored = stored_settings(directory)
        env.update(stored)
    env.update({k: v for k, v in os.environ.items() if k.startswith("HOLD_")})
    if "HOLD_LEDGER_URL" in env and "HOLD_LEDGER_PATH" not in {**stored, **os.environ}:
        env.pop("HOLD_LEDGER_PATH", None)  # a PostgreSQL ledger: no default ledger file
    warned: set[str] = vars(args).setdefault("settings_warned", set())
    for warning in unknown_settings(env):
        if warning not in warned:
            warned.add(warning)
            print(f"holdca: warning: {warning}", file=sys.stderr)
    return env


def config(args: argparse.Namespace) -> Any:
    """The :class:`~holdca.hold.HoldConfig` of the command line (ConfigError if invalid)."""
    from holdca.hold.config import HoldConfig

    return HoldConfig.from_env(environment(args))


def open_ca(args: argparse.Namespace, **options: Any) -> Any:
    """Open the hold (the operator is the caller: AllowAllAuthorizer unless given).

    Its audit trail is :func:`audit_log` unless ``audit=`` is given: never stderr.

    Raises:
        ConfigError: the configuration is invalid or the audit log cannot be appended to.
    """
    from holdca.hold.policy import AllowAllAuthorizer
    from holdca.hold.setup import open_hold

    settings = config(args)
    # The operator runs the CLI: the ATProto proof is the gate, there is no remote caller.
    options.setdefault("authorizer", AllowAllAuthorizer())
    if "audit" not in options:
        options["audit"] = audit_log(settings, create=bool(options.get("create")))
    return open_hold(settings, now=now(), **options)


def audit_log(settings: Any, *, create: bool = False) -> Any:
    """The audit trail of a CLI command (an :class:`~holdca.hold.audit.AuditLog`).

    ``HOLD_AUDIT_LOG`` when set (a file, or ``-`` for stdout, as for ``holdca serve``);
    otherwise :data:`AUDIT_FILE` in the ledger's directory. A file is created 0600 and
    appended to. Unlike ``holdca serve`` a command never writes the trail to stderr,
    where its errors go. :func:`close_audit` closes it. Only with ``create`` (``init``)
    may the ledger be missing (and its directory is created).

    Raises:
        ConfigError: no ledger path (``HOLD_CA_CERT_PATH`` unset), no ledger (without
            ``create``), or the file cannot be created or appended to.
    """
    from holdca.hold.setup import audit_from_config

    if settings.audit_log is None:
        ledger = settings.effective_ledger_path
        if ledger is None and settings.ledger_url is not None and settings.ca_cert_path:
            ledger = settings.ca_cert_path  # a PostgreSQL ledger: the trail is beside the cert
        if ledger is None:
            raise ConfigError("HOLD_CA_CERT_PATH: required")
        if not create and not ledger.exists():  # a mistyped path creates nothing
            raise ConfigError(
                f"HOLD_LEDGER_PATH: {ledger} does not exist (only holdca init creates a hold)"
            )
        try:
            ledger.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the hold directory {str(ledger.parent)!r} ({exc.strerror or exc})"
            ) from None
        settings = dataclasses.replace(settings, audit_log=str(ledger.parent / AUDIT_FILE))
    audit = audit_from_config(settings)
    _audit_loggers.append(audit.logger)
    return audit


def close_audit() -> None:
    """Flush and close every audit log :func:`audit_log` opened (idempotent)."""
    while _audit_loggers:
        logger = _audit_loggers.pop()
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()


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


def parse_serial(text: str, what: str = "--serial") -> int:
    """A certificate serial in hexadecimal: any case, an optional ``0x`` and colons between
    digits (``4C:D5:8A``, as openssl prints them) allowed.

    Raises:
        UsageError: naming ``what``: anything else (signs, spaces, underscores, no digits),
            or a number over :data:`MAX_SERIAL_BITS` bits.
    """
    digits = text.strip().lower().removeprefix("0x")
    if digits.startswith(":") or digits.endswith(":") or "::" in digits:
        digits = ""  # colons go between digits
    digits = digits.replace(":", "")
    if not _HEX_SERIAL.fullmatch(digits):
        raise UsageError(f"{what}: not a hexadecimal serial number: {text!r}")
    serial = int(digits, 16)
    if serial.bit_length() > MAX_SERIAL_BITS:
        raise UsageError(f"{what}: longer than a certificate serial (20 bytes): {text!r}")
    return serial


def serial_text(serial: int) -> str:
    """The one printed form of a serial: lower-case hex, no ``0x``, no leading zeros."""
    return format(serial, "x")


def write_binary(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, or to stdout when ``path`` is ``-``."""
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from holdca._fs import atomic_write

    atomic_write(Path(path), data)


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)
