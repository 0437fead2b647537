"""The log monitor: check a hold's transparency log, then every new certificate against ATProto.

One run of :func:`run_monitor` (``holdca monitor``, see docs/transparency.md "Monitoring"):

1. read the published checkpoint and verify its signature with the log's verifier key
   (the origin is the key's name);
2. check every hash tile against the signed root (:func:`~holdca.tlog.verify_log` without
   the bundles: about size/256 tile reads);
3. load the last checkpoint this state directory saw (verified with the same key) and check
   the new one extends it: a smaller size is a *rollback*, the same size with another root
   a *fork*, a failed consistency proof an *inconsistent* log;
4. read the new entries (bundles checked against the authenticated level-0 tiles), parse
   each (a malformed entry is an alarm), and check each certificate entry's ATProto facts
   with a :class:`~holdca.tlog.facts.FactChecker` (all of them, or only those of ``did``);
5. save the new checkpoint to the state directory (atomically) when there was no alarm and
   every certificate could be checked. An alarm never advances the state; nor does a
   fetch that failed (``unchecked``: the next run checks those entries again). Unexpected
   certificates are reported once: the state then advances past them.

Alarms are findings about the log itself; network failures reading the *log* raise
(ResolutionError, AddressRefusedError) and change nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from holdca._fs import atomic_write
from holdca.errors import ConfigError, SignatureInvalidError, TlogError
from holdca.tlog.checkpoint import Checkpoint, open_checkpoint
from holdca.tlog.entry import CertificateEntry, RevocationEntry, parse_entry
from holdca.tlog.facts import FactCheck, FactChecker, entry_json
from holdca.tlog.note import NoteVerifier
from holdca.tlog.store import CHECKPOINT_PATH
from holdca.tlog.tiles import TileReader
from holdca.tlog.verify import check_consistency, iter_entries, verify_log

__all__ = [
    "Alarm",
    "AlarmKind",
    "Finding",
    "MonitorReport",
    "MonitorState",
    "run_monitor",
]

AlarmKind = Literal[
    "checkpoint", "signature", "tiles", "state", "rollback", "fork", "inconsistent", "entry"
]
"""What an alarm is about (see :func:`run_monitor`)."""


@dataclass(frozen=True)
class Alarm:
    """Evidence that the log misbehaves (or that the key or state is not this log's)."""

    kind: AlarmKind
    message: str

    def to_json(self) -> dict[str, str]:
        """``{"kind": ..., "message": ...}``."""
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Finding:
    """One log entry and, for a checked certificate, the verdict on its ATProto facts."""

    index: int
    entry: CertificateEntry | RevocationEntry
    check: FactCheck | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry's facts, its index and the verdict."""
        if isinstance(self.entry, RevocationEntry):
            return {
                "index": self.index,
                "kind": "revocation",
                "serial": format(self.entry.serial, "x"),
                "did": self.entry.did,
                "reason": self.entry.reason,
                "revokedAt": self.entry.revoked_at,
            }
        data: dict[str, Any] = {"index": self.index, "kind": "certificate"}
        data.update(entry_json(self.entry))
        if self.check is not None:
            data["status"] = self.check.status
            data["reason"] = self.check.reason
            if self.check.commit_cid is not None:
                data["currentCommit"] = {
                    "cid": self.check.commit_cid,
                    "rev": self.check.commit_rev,
                    "signingKey": self.check.signing_key,
                }
        return data

    def line(self) -> str:
        """One line for the text summary."""
        if isinstance(self.entry, RevocationEntry):
            e = self.entry
            return f"  #{self.index} revocation serial {e.serial:x} ({e.reason})"
        status = self.check.status if self.check is not None else "not checked"
        cert = entry_json(self.entry)
        why = f": {self.check.reason}" if self.check is not None and self.check.reason else ""
        return (
            f"  #{self.index} {status} serial {cert['serial']} {cert['repository']}@"
            f"{cert['manifestDigest']} ({cert['recordUri']}){why}"
        )


@dataclass
class MonitorReport:
    """What one run found. ``ok`` only with no alarm, no unexpected and no unchecked entry."""

    origin: str
    size: int | None = None
    previous_size: int | None = None
    did: str | None = None
    new_entries: int = 0
    certificates: int = 0
    revocations: int = 0
    checked: int = 0
    verified: int = 0
    alarms: list[Alarm] = field(default_factory=list)
    unexpected: list[Finding] = field(default_factory=list)
    unchecked: list[Finding] = field(default_factory=list)
    listed: list[Finding] = field(default_factory=list)
    advanced: bool = False

    @property
    def ok(self) -> bool:
        """No alarm, no unexpected certificate, nothing left unchecked."""
        return not (self.alarms or self.unexpected or self.unchecked)

    def to_json(self) -> dict[str, Any]:
        """The report for ``--json``."""
        data: dict[str, Any] = {
            "ok": self.ok,
            "origin": self.origin,
            "size": self.size,
            "previousSize": self.previous_size,
            "newEntries": self.new_entries,
            "certificates": self.certificates,
            "revocations": self.revocations,
            "checked": self.checked,
            "verified": self.verified,
            "alarms": [a.to_json() for a in self.alarms],
            "unexpected": [f.to_json() for f in self.unexpected],
            "unchecked": [f.to_json() for f in self.unchecked],
            "advanced": self.advanced,
        }
        if self.did is not None:
            data["did"] = self.did
            data["entries"] = [f.to_json() for f in self.listed]
        return data

    def summary(self) -> str:
        """The text summary."""
        previous = "none" if self.previous_size is None else str(self.previous_size)
        size = "unverified" if self.size is None else str(self.size)
        lines = [
            f"log {self.origin}: checkpoint size {size} (previously {previous})",
            f"new entries: {self.new_entries} ({self.certificates} certificates, "
            f"{self.revocations} revocations)",
            f"certificates checked: {self.checked}"
            + (f" (of {self.did})" if self.did else "")
            + f", verified: {self.verified}, unexpected: {len(self.unexpected)}, "
            f"unchecked: {len(self.unchecked)}",
            f"alarms: {len(self.alarms)}",
        ]
        lines += [f"  ALARM {a.kind}: {a.message}" for a in self.alarms]
        if self.unexpected:
            lines.append("unexpected certificates:")
            lines += [f.line() for f in self.unexpected]
        if self.unchecked:
            lines.append("not checked (try again):")
            lines += [f.line() for f in self.unchecked]
        if self.did is not None:
            lines.append(f"entries of {self.did}: {len(self.listed)}")
            lines += [f.line() for f in self.listed]
        lines.append(
            "state advanced to the new checkpoint"
            if self.advanced
            else "state NOT advanced (the next run checks these entries again)"
        )
        return "\n".join(lines)


class MonitorState:
    """The state directory: the last checkpoint seen (``DIR/checkpoint``, signed note bytes)."""

    def __init__(self, directory: Path | str) -> None:
        """Keep the state in ``directory`` (created on the first save)."""
        self.directory = Path(directory)

    @property
    def path(self) -> Path:
        """The saved checkpoint's file."""
        return self.directory / CHECKPOINT_PATH

    def load(self) -> bytes | None:
        """The saved checkpoint's bytes, or None before the first save.

        Raises:
            ConfigError: the directory or file cannot be read.
        """
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"--state {self.directory} is not a directory")
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"state file {self.path} cannot be read: {exc.strerror}") from None

    def save(self, checkpoint: bytes) -> None:
        """Replace the saved checkpoint atomically (temporary file, fsync, rename).

        Raises:
            ConfigError: the directory cannot be created or written.
        """
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            atomic_write(self.path, checkpoint)
        except OSError as exc:
            raise ConfigError(
                f"state directory {self.directory} cannot be written: {exc}"
            ) from None


def _open(data: bytes, verifier: NoteVerifier, report: MonitorReport, what: str) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(data, [verifier], origin=verifier.name)
    except SignatureInvalidError as exc:
        kind: AlarmKind = "signature" if what == "checkpoint" else "state"
        report.alarms.append(Alarm(kind, f"the {what} is not signed by the log key: {exc}"))
        raise
    except TlogError as exc:
        kind = "checkpoint" if what == "checkpoint" else "state"
        report.alarms.append(Alarm(kind, f"the {what} is not valid: {exc}"))
        raise
    return checkpoint


def _consistent(reader: TileReader, old: Checkpoint, new: Checkpoint) -> Alarm | None:
    if new.size < old.size:
        return Alarm("rollback", f"the log went back from size {old.size} to {new.size}")
    if new.size == old.size and new.root != old.root:
        return Alarm("fork", f"two different roots for size {new.size}: the log forked")
    try:
        check_consistency(reader, old, new)
    except TlogError as exc:
        return Alarm(
            "inconsistent", f"size {new.size} does not extend the size {old.size} seen: {exc}"
        )
    return None


def run_monitor(
    reader: TileReader,
    verifier: NoteVerifier,
    state: MonitorState,
    checker: FactChecker,
    *,
    did: str | None = None,
) -> MonitorReport:
    """One monitor run (see the module docstring); returns the report.

    Args:
        reader: the log (a :class:`~holdca.tlog.DirectoryLog` or :class:`~holdca.tlog.HTTPLog`).
        verifier: the log's key; its name is the log's origin.
        state: where the last checkpoint seen is kept.
        checker: checks certificate entries against ATProto.
        did: check (and list) only this DID's entries; the log itself is still checked whole.

    Raises:
        ResolutionError, AddressRefusedError: the log could not be fetched (nothing changes).
        ConfigError: the state directory cannot be read or written.
    """
    report = MonitorReport(origin=verifier.name, did=did)
    try:
        raw = reader.read(CHECKPOINT_PATH)
    except TlogError as exc:
        report.alarms.append(Alarm("checkpoint", f"the checkpoint cannot be read: {exc}"))
        return report
    try:
        new = _open(raw, verifier, report, "checkpoint")
    except (SignatureInvalidError, TlogError):
        return report
    report.size = new.size
    try:
        verify_log(reader, new, entries=False)
    except TlogError as exc:
        report.alarms.append(Alarm("tiles", f"the tiles do not match the checkpoint: {exc}"))
        return report
    saved = state.load()
    start = 0
    if saved is not None:
        try:
            old = _open(saved, verifier, report, "saved checkpoint")
        except (SignatureInvalidError, TlogError):
            return report
        report.previous_size = old.size
        alarm = _consistent(reader, old, new)
        if alarm is not None:
            report.alarms.append(alarm)
            return report
        start = old.size
    index = start
    try:
        for data in iter_entries(reader, new, start):
            _entry(report, checker, index, data, did)
            index += 1
    except TlogError as exc:
        report.alarms.append(Alarm("entry", f"entry {index}: {exc}"))
        return report
    if not report.alarms and not report.unchecked:
        state.save(raw)
        report.advanced = True
    return report


def _entry(
    report: MonitorReport, checker: FactChecker, index: int, data: bytes, did: str | None
) -> None:
    """Parse and check one entry (TlogError when it is malformed)."""
    entry = parse_entry(data)
    report.new_entries += 1
    if isinstance(entry, RevocationEntry):
        report.revocations += 1
        if did is not None and entry.did == did:
            report.listed.append(Finding(index, entry))
        return
    report.certificates += 1
    if did is not None and entry.did != did:
        return
    check = checker.check(entry)
    finding = Finding(index, entry, check)
    report.checked += 1
    if check.status == "verified":
        report.verified += 1
    elif check.status == "unexpected":
        report.unexpected.append(finding)
    else:
        report.unchecked.append(finding)
    if did is not None:
        report.listed.append(finding)
