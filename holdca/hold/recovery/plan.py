"""Planning a recovery: whether it may start or resume, what it compromises, the dry run.

* :func:`preflight`: the checks :func:`~holdca.hold.recovery.recover` makes before it
  changes anything (:class:`RecoveryError` when the ledger's state forbids the run);
* :func:`doomed` and :func:`compromised_of`: the CAs a recovery compromises, and those it
  retires with them, before or after the compromise was recorded;
* :func:`plan`: the dry run, which changes nothing and checks each record as the
  re-signature would, to predict refusals.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cryptography import x509

from holdca.errors import ConfigError, HoldCAError
from holdca.hold.gate import check_binding
from holdca.hold.ledger import CARecord, Recovery, RecoveryItem
from holdca.hold.recovery.images import Image, group_images, map_images, outcome
from holdca.hold.recovery.records import descriptor_of, is_refusal, read_record, why
from holdca.hold.recovery.report import CAInfo, RecoveryReport
from holdca.hold.recovery.sources import DescriptorSource
from holdca.hold.service import HoldCA

__all__ = ["RecoveryError", "compromised_of", "doomed", "plan", "preflight"]


class RecoveryError(HoldCAError):
    """A recovery cannot start or continue in the ledger's current state (nothing changed)."""


def preflight(
    ca: HoldCA,
    *,
    out_dir: Path | None,
    new_label: str | None,
    resume: bool,
    concurrency: int,
    dry_run: bool,
) -> tuple[Recovery | None, bool]:
    """Check that :func:`~holdca.hold.recovery.recover` may run with these arguments.

    Returns:
        The open recovery (the latest; ``None`` if there is none), and whether a
        compromise was recorded whose recovery never started (an interrupted run).

    Raises:
        ValueError: ``concurrency`` below 1.
        ConfigError: no resolver or key store; no ``out_dir`` (unless ``dry_run``); no
            ``new_label`` (unless ``resume``).
        RecoveryError: a recovery is open or interrupted (without ``resume``), there is
            none to resume, co-signing is disabled (unless ``dry_run``).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if ca.gate is None:
        raise ConfigError("recovery re-verifies every record: the hold needs a resolver")
    if ca.key_store is None:
        raise ConfigError("recovery creates a new CA: the hold needs its key store")
    if out_dir is None and not dry_run:
        raise ConfigError("recovery writes signatures and a notice: give out_dir")
    ledger = ca.ledger
    open_recoveries = ledger.recoveries(open_only=True)
    known_new = {r.new_ca for r in ledger.recoveries()}
    interrupted = ca.interrupted_compromise() and ca.state().active.ca_id not in known_new
    if not resume and (open_recoveries or interrupted):
        which = (
            f"recovery #{open_recoveries[-1].id} is open"
            if open_recoveries
            else ("a compromise was recorded but its recovery never started")
        )
        raise RecoveryError(f"{which}: continue it with resume (holdca recover --resume)")
    if resume and not (open_recoveries or interrupted):
        raise RecoveryError("there is no open recovery to resume")
    if not resume and new_label is None:
        raise ConfigError("the new CA needs a key label (new_label)")
    if not dry_run and not ca.cosign_enabled:
        raise RecoveryError(
            "co-signing is disabled (HOLD_COSIGN_ENABLED=false), so nothing could be "
            "re-signed: run the recovery with HOLD_COSIGN_ENABLED=true (the server may "
            "stay disabled)"
        )
    return (open_recoveries[-1] if open_recoveries else None), interrupted


def doomed(ca: HoldCA, *, root: bool, interrupted: bool) -> tuple[list[str], list[str]]:
    """The CAs a recovery compromises (issuing one first) and those it retires with them.

    Before the compromise: the active CA (and with ``root`` the root above an
    intermediate), and the CAs a rotation still publishes. After an interrupted one: the
    compromised and retired CAs whose ``retire_at`` is the active CA's ``created_at``.
    """
    if not interrupted:
        state = ca.state()
        old = [state.active.ca_id]
        if state.active.parent_id is None:
            return old, [c.ca_id for c in state.published]
        return old + ([c.ca_id for c in state.roots] if root else []), []
    records = ca.ledger.cas()
    active = next(r for r in records if r.state == "active")
    found = [r for r in records if r.state == "compromised" and r.retire_at == active.created_at]
    parents = {r.parent_id for r in found}
    found.sort(key=lambda r: r.ca_id in parents)  # the issuing CA is nobody's parent
    retired = [r for r in records if r.state == "retired" and r.retire_at == active.created_at]
    return [r.ca_id for r in found], [r.ca_id for r in retired]


def compromised_of(records: Sequence[CARecord], old_ca: str) -> list[CARecord]:
    """The recovery's compromised CA and a root compromised with it, issuing one first."""
    by_id = {r.ca_id: r for r in records}
    first = by_id.get(old_ca)
    if first is None:
        return []
    out = [first]
    parent = by_id.get(first.parent_id or "")
    if parent is not None and parent.state == "compromised" and parent.retire_at == first.retire_at:
        out.append(parent)
    return out


def plan(
    ca: HoldCA,
    recovery: Recovery | None,
    *,
    now: datetime,
    out_dir: Path | None,
    interrupted: bool,
    new_label: str | None,
    root: bool,
    descriptors: DescriptorSource | None,
    concurrency: int,
    started: float,
) -> RecoveryReport:
    """What :func:`~holdca.hold.recovery.recover` would do; reads only.

    ``recovery`` is the open recovery a resume would continue (``None``: a new one, or
    one whose compromise was ``interrupted``); ``started`` is the run's
    :func:`time.monotonic` at its start.
    """
    ledger = ca.ledger
    state = ca.state()
    records = ledger.cas()
    also: list[str] = []
    done: dict[int, RecoveryItem]
    if recovery is not None:
        old = [r.ca_id for r in compromised_of(records, recovery.old_ca)]
        items = ledger.recovery_items(recovery.id)
        olds = [rec for i in items if (rec := ledger.get(i.serial)) is not None]
        pending = {i.serial for i in items if i.status == "pending"}
        done = {i.serial: i for i in items if i.status != "pending"}
    else:
        old, also = doomed(ca, root=root, interrupted=interrupted)
        olds = [rec for ca_id in old + also for rec in ledger.live(now, issuer_id=ca_id)]
        pending = {r.serial for r in olds}
        done = {}
    by_id = {r.ca_id: r for r in records}

    def info(ca_id: str) -> CAInfo:
        rec = by_id[ca_id]
        return CAInfo.of(x509.load_der_x509_certificate(rec.certificate_der), rec.key_label)

    images = group_images(olds, {})
    todo = [im for im in images if any(r.serial in pending for r in im.records)]
    verdicts = dict(map_images(todo, lambda im: _predict(ca, descriptors, im), concurrency))
    outcomes = []
    for im in images:
        if im.key in verdicts:
            status, detail = verdicts[im.key]
            outcomes.append(outcome(im, status, None, detail))
        else:
            item = done.get(im.primary.serial)
            outcomes.append(
                outcome(
                    im,
                    item.status if item else "pending",
                    item.new_serial if item else None,
                    item.detail if item else None,
                )
            )
    new_ca = None
    if recovery is not None or interrupted:
        new_ca = CAInfo.of(state.active.certificate, state.active.key_label)
    return RecoveryReport(
        hold_did=ca.hold_did,
        recovery_id=None if recovery is None else recovery.id,
        dry_run=True,
        finished=False,
        at=now,
        started_at=None if recovery is None else recovery.started_at,
        compromised=tuple(info(i) for i in old),
        retired=tuple(info(i) for i in also),
        new_ca=new_ca,
        trust_bundle=(),
        certificates=len(olds),
        revoked=0,
        images=tuple(outcomes),
        out_dir=out_dir,
        elapsed=time.monotonic() - started,
        new_label=new_label,
    )


def _predict(
    ca: HoldCA, descriptors: DescriptorSource | None, image: Image
) -> tuple[str, tuple[str, str | None]]:
    """The dry run's verdict on ``image``: the checks of a re-signature, without signing."""
    try:
        descriptor, verified = descriptor_of(ca, image.primary, descriptors)
        if verified is None:
            verified = read_record(ca, image.primary)
        check_binding(verified, descriptor, ca.hold_did)
        denial = ca.ledger.denial(image.primary.did)
        if denial is not None:
            return image.key, ("would-refuse", f"DeniedDIDError: denied since {denial.since}")
    except HoldCAError as exc:
        if is_refusal(exc):
            return image.key, ("would-refuse", why(exc))
        return image.key, ("pending", f"transient: {why(exc)}")
    return image.key, ("would-resign", None)
