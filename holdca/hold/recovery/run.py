"""The procedure: :func:`recover`, which replaces the CA, opens the recovery in the ledger,
revokes, re-signs, and writes the results (the steps are in :mod:`holdca.hold.recovery`).

A run that changes things is a :class:`!_Run`: it revokes what is not revoked yet,
re-signs the pending images (or adopts a signature a crashed run wrote), records each
item in the ledger as it completes, finishes the recovery when nothing is pending, and
writes to ``out_dir`` (:class:`~holdca.hold.recovery.output.OutDir`). A dry run is
:func:`~holdca.hold.recovery.plan.plan`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509

from holdca.errors import HoldCAError, MalformedInputError
from holdca.hold.compromise import CA_COMPROMISE
from holdca.hold.ledger import CARecord, Recovery, RecoveryItem
from holdca.hold.recovery.images import Image, group_images, map_images, outcome
from holdca.hold.recovery.output import OutDir
from holdca.hold.recovery.plan import RecoveryError, compromised_of, doomed, plan, preflight
from holdca.hold.recovery.records import descriptor_of, is_refusal, why
from holdca.hold.recovery.report import CAInfo, RecoveryReport
from holdca.hold.recovery.sources import (
    NO_REGISTRY_CLIENT,
    DescriptorSource,
    RecoveredSignature,
    SignaturePublisher,
)
from holdca.hold.service import CosignRequest, HoldCA

__all__ = ["SUPERSEDED", "recover"]

SUPERSEDED: Final = x509.ReasonFlags.superseded.value
"""The revocation reason of the live leaves of a CA retired with a compromised one."""


def recover(
    ca: HoldCA,
    *,
    now: datetime,
    out_dir: Path | None,
    new_label: str | None = None,
    root: bool = False,
    new_root_label: str | None = None,
    resume: bool = False,
    concurrency: int = 4,
    dry_run: bool = False,
    descriptors: DescriptorSource | None = None,
    publisher: SignaturePublisher | None = None,
    give_up: bool = False,
) -> RecoveryReport:
    """Recover from a compromise of the hold's issuing CA (see :mod:`holdca.hold.recovery`).

    Args:
        ca: the hold, with its key store and a resolver; re-signatures go through its
            policy (a rate limit that refuses is a transient failure: open the hold
            without one for the recovery, as ``holdca recover`` does).
        now: the time of the compromise (and of the new signatures).
        out_dir: where signatures, trust bundle, CRLs and notice go (required unless
            ``dry_run``); a resumed recovery needs the same directory.
        new_label: key label of the new CA (required unless ``resume``; a dry run reports
            it).
        root: on an intermediate hold, the root key is compromised too (a new root under
            ``new_root_label`` and a new intermediate under ``new_label``).
        new_root_label: see ``root``.
        resume: continue the open (or interrupted) recovery instead of starting one.
        concurrency: images re-signed at once (at least 1).
        dry_run: change nothing; report what would happen.
        descriptors: where image descriptors come from (default: the user's record).
        publisher: pushes each new signature (default: none, see :data:`NO_REGISTRY_CLIENT`).
        give_up: after this run, mark still-pending images refused and finish.

    Returns:
        The report; ``finished`` is false while images are pending.

    Raises:
        ValueError: ``concurrency`` below 1.
        RecoveryError: a recovery is open (without ``resume``), there is none to resume,
            the active CA is not the recovery's new CA, ``out_dir`` belongs to another
            recovery, co-signing is disabled.
        ConfigError: no resolver or key store; missing labels or ``out_dir``.
        KeyExistsError: a new label is taken.
        LedgerError, KeyStoreError, SignerError, ProfileError, OSError: replacing the CA or
            writing failed (a later ``resume`` continues).
    """
    started = time.monotonic()
    open_recovery, interrupted = preflight(
        ca,
        out_dir=out_dir,
        new_label=new_label,
        resume=resume,
        concurrency=concurrency,
        dry_run=dry_run,
    )
    if dry_run:
        return plan(
            ca,
            open_recovery,
            now=now,
            out_dir=out_dir,
            interrupted=interrupted,
            new_label=new_label,
            root=root,
            descriptors=descriptors,
            concurrency=concurrency,
            started=started,
        )
    assert out_dir is not None
    ledger = ca.ledger
    run = _Run(
        ca,
        now=now,
        out=OutDir(out_dir),
        concurrency=concurrency,
        descriptors=descriptors,
        publisher=publisher,
    )
    recovery: Recovery
    if open_recovery is not None:
        recovery = open_recovery
        if ca.state().active.ca_id != recovery.new_ca:
            raise RecoveryError(
                f"the active CA {ca.state().active.ca_id[:16]} is not the new CA "
                f"{recovery.new_ca[:16]} of recovery #{recovery.id}"
            )
        run.out.claim(ledger, recovery)
    else:
        if not interrupted:
            ca.state(now)  # retire what a rotation's grace period ended
            run.out.claim(ledger, None)
        old, also = doomed(ca, root=root, interrupted=interrupted)
        live = [rec for ca_id in old + also for rec in ledger.live(now, issuer_id=ca_id)]
        if not interrupted:
            assert new_label is not None
            ca.compromise(new_label=new_label, now=now, root=root, new_root_label=new_root_label)
        ca.revoke_compromised_intermediates(now)
        recovery = ledger.start_recovery(
            old[0], ca.state().active.ca_id, sorted({r.serial for r in live}), now=now
        )
        ca.audit.emit(
            "recovery_started",
            now,
            {
                "recovery": recovery.id,
                "old_ca": recovery.old_ca,
                "new_ca": recovery.new_ca,
                "certificates": len(live),
            },
            level=logging.WARNING,
        )
        run.out.claim(ledger, recovery, fresh=True)
    return run.execute(recovery, give_up=give_up, started=started)


@dataclass
class _Done:
    """What re-signing one image did in this run, for the report."""

    pushed: int = 0
    error: str | None = None
    push_failure: str | None = None


class _Run:
    """One run of :func:`recover` that changes things (a start or a resume)."""

    def __init__(
        self,
        ca: HoldCA,
        *,
        now: datetime,
        out: OutDir,
        concurrency: int,
        descriptors: DescriptorSource | None,
        publisher: SignaturePublisher | None,
    ) -> None:
        self.ca = ca
        self.ledger = ca.ledger
        self.now = now
        self.out = out
        self.concurrency = concurrency
        self.descriptors = descriptors
        self.publisher = publisher
        self.new_ca = ""  # the recovery's new CA, once known (execute)

    def execute(self, recovery: Recovery, *, give_up: bool, started: float) -> RecoveryReport:
        """Revoke, re-sign what is pending, write the bundle, CRLs and notice."""
        ca, ledger, now = self.ca, self.ledger, self.now
        self.new_ca = recovery.new_ca
        records = ledger.cas()
        old = compromised_of(records, recovery.old_ca)
        items = {i.serial: i for i in ledger.recovery_items(recovery.id)}
        olds = [rec for serial in items if (rec := ledger.get(serial)) is not None]
        bad = {r.ca_id for r in old}
        revoked = 0
        for rec in olds:  # a retired CA's key is not compromised: its leaves are superseded
            if ledger.revocation(rec.serial) is None:
                reason = CA_COMPROMISE if rec.issuer_id in bad else SUPERSEDED
                revoked += len(ca.revoke(serial=rec.serial, reason=reason, now=now))
        late: list[int] = []
        for former in old:
            for leftover in ledger.live(now, issuer_id=former.ca_id):
                if leftover.serial not in items:
                    ca.revoke(serial=leftover.serial, reason=CA_COMPROMISE, now=now)
                    late.append(leftover.serial)
        images = group_images(olds, items)
        todo = [im for im in images if any(i.status == "pending" for i in im.items.values())]
        ran: dict[str, _Done] = dict(map_images(todo, self._resign, self.concurrency))
        results = list(ran.values())
        if give_up:
            current = {i.serial: i for i in ledger.recovery_items(recovery.id)}
            for im in group_images(olds, current):
                if any(i.status == "pending" for i in im.items.values()):
                    error = ran[im.key].error if im.key in ran else None
                    self._mark(im, "refused", None, f"given up ({error or 'not re-signed'})"[:300])
        final = {i.serial: i for i in ledger.recovery_items(recovery.id)}
        finished = all(i.status != "pending" for i in final.values())
        if finished:
            ledger.finish_recovery(recovery.id, now=now)
            ca.audit.emit(
                "recovery_finished",
                now,
                {"recovery": recovery.id, "old_ca": recovery.old_ca, "new_ca": recovery.new_ca},
                level=logging.WARNING,
            )
        outcomes = tuple(
            outcome(
                im,
                final[im.primary.serial].status,
                final[im.primary.serial].new_serial,
                final[im.primary.serial].detail,
            )
            for im in group_images(olds, final)
        )
        state = ca.state(now)
        bundle = ca.trust_bundle(now)
        new_rec = next(r for r in records if r.ca_id == recovery.new_ca)
        retired = [r for r in records if r.state == "retired" and r.retire_at == new_rec.created_at]

        def info(rec: CARecord) -> CAInfo:
            return CAInfo.of(x509.load_der_x509_certificate(rec.certificate_der), rec.key_label)

        report = RecoveryReport(
            hold_did=ca.hold_did,
            recovery_id=recovery.id,
            dry_run=False,
            finished=finished,
            at=now,
            started_at=recovery.started_at,
            compromised=tuple(info(r) for r in old),
            retired=tuple(info(r) for r in retired),
            new_ca=CAInfo.of(state.active.certificate, state.active.key_label),
            trust_bundle=tuple(CAInfo.of(c) for c in bundle),
            certificates=len(items),
            revoked=revoked,
            images=outcomes,
            late=tuple(late),
            errors=tuple(d.error for d in results if d.error is not None),
            out_dir=self.out.path,
            push=NO_REGISTRY_CLIENT if self.publisher is None else "pushed by the publisher",
            pushed=sum(d.pushed for d in results),
            push_failures=tuple(d.push_failure for d in results if d.push_failure is not None),
            elapsed=time.monotonic() - started,
            new_label=state.active.key_label,
        )
        crl_ids = [r.ca_id for r in old] + [r.ca_id for r in state.roots]
        self.out.write_results(report, ca, now, crl_ids)
        return report

    def _resign(self, image: Image) -> tuple[str, _Done]:
        """Re-sign one image (or adopt the signature a crashed run wrote) and record it."""
        done = _Done()
        adopted = self._adopt(image)
        if adopted is not None:
            if self.publisher is not None and not self.out.pushed(image):
                self._publish(image, self.out.written(image, adopted), done)
            self._mark(image, "resigned", adopted, None)
            return image.key, done
        primary = image.primary
        try:
            descriptor, _ = descriptor_of(self.ca, primary, self.descriptors)
            assert primary.record_uri is not None
            resp = self.ca.resign(
                CosignRequest(
                    did=primary.did,
                    descriptor=descriptor,
                    record_uri=primary.record_uri,
                    caller=primary.did,  # the hold acts for the user; the proof is checked
                ),
                now=self.now,
            )
        except HoldCAError as exc:
            if is_refusal(exc):
                self._mark(image, "refused", None, why(exc))
            else:  # stays pending for a resume
                done.error = f"{primary.did} {image.key}: {why(exc)}"
            return image.key, done
        self.out.write_signature(image, resp, descriptor)
        if self.publisher is not None:
            signature = RecoveredSignature(
                did=primary.did,
                repository=resp.record.repository,
                record_uri=primary.record_uri,
                image=descriptor,
                envelope=resp.envelope,
                signature_manifest=resp.signature_manifest,
                serial=resp.serial,
                old_serials=tuple(r.serial for r in image.records),
            )
            self._publish(image, signature, done)
        self._mark(image, "resigned", resp.serial, None)
        return image.key, done

    def _publish(self, image: Image, signature: RecoveredSignature | None, done: _Done) -> None:
        """Push ``signature`` (``None``: its files are unreadable) and note where it went."""
        assert self.publisher is not None
        try:
            if signature is None:
                raise MalformedInputError("the signature files in out_dir are unreadable")
            where = self.publisher.publish(signature)
            self.out.mark_pushed(image, where)
            done.pushed = 1
        except (HoldCAError, OSError) as exc:
            done.push_failure = f"{image.key}: {why(exc)}"

    def _adopt(self, image: Image) -> int | None:
        """The new serial a previous run wrote to ``out_dir`` for ``image``, if any (and
        if the ledger has it as a certificate of the recovery's new CA)."""
        serial = self.out.written_serial(image)
        if serial is None:
            return None
        found = self.ledger.get(serial)
        if found is None or found.issuer_id != self.new_ca:
            return None
        return serial

    def _mark(self, image: Image, status: str, new_serial: int | None, detail: str | None) -> None:
        """Set the pending items of ``image`` to ``status`` in the ledger."""
        for serial, item in image.items.items():
            if item.status == "pending":
                self.ledger.set_recovery_item(
                    RecoveryItem(item.recovery_id, serial, status, new_serial, detail)
                )
