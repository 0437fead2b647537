"""Recovering from a CA key compromise: revoke, replace, re-sign, tell everyone.

:func:`recover` is ``holdca recover --compromised`` as a library call. In order:

1. **Snapshot** the certificates of the compromised CA that are still live in the ledger
   (:meth:`~holdca.hold.ledger.IssuanceLedger.live`), before anything changes.
2. **Replace the CA** (:meth:`~holdca.hold.castate.RotationMixin.compromise`): the issuing
   CA (a root, or an intermediate; with ``root=True`` also the root above it) goes to state
   ``compromised`` at once, with no grace period: it never issues again and leaves the
   trust bundle, but keeps answering OCSP and CRL for its certificates. A new CA takes its
   place under a new key label, and the compromised key signs nothing for it (no
   cross-certificate). A compromised intermediate is revoked on its root's CRL.
3. **Open a recovery in the ledger** with one ``pending`` item per live certificate
   (:meth:`~holdca.hold.ledger.IssuanceLedger.start_recovery`).
4. **Revoke** every one of them, reason ``cACompromise``: OCSP and the compromised CA's
   CRL answer ``revoked`` from then on.
5. **Re-sign** every image (certificates for the same DID, record and digest are one
   image, signed once) through :meth:`HoldCA.resign <holdca.hold.HoldCA.resign>`: the
   hold resolves the DID anew and fetches the record from the user's PDS itself, exactly
   as for any re-signature, and the new certificate chains to the new CA. A record that no
   longer verifies (deleted, signed by a key the DID no longer has, moved to another hold,
   the DID tombstoned or denied) is **refused**, not re-signed. Each item is set
   ``resigned`` or ``refused`` in the ledger as it completes, ``concurrency`` at a time.
6. **Write** to ``out_dir``: each new signature (``signatures/<old serial>/``: the JWS
   envelope, the OCI signature manifest and ``item.json``), the new trust bundle
   (``trust-bundle.pem``), the CRLs of the compromised CAs (and of a kept root), and a
   notice for users and relying parties (``notice.json``, ``notice.txt``).

The descriptor a re-signature needs (mediaType, digest, size): the digest is the
ledger's; mediaType and size come from a :data:`DescriptorSource` when the caller gives
one (a JSON file of descriptors today, the registry client of issue 14 later), otherwise
from the user's record itself, fetched from their PDS and verified (``mediaType`` and the
``manifestBlob`` size; a record that states no size is refused with a message naming the
way out). The trust gate then checks that descriptor against the live record as usual.

Pushing the new signatures to the registry needs a registry client (issue 14), which
holdca does not have yet: a :class:`SignaturePublisher` plugs in here; without one the
signatures are only written to ``out_dir``, and the report says so.

**Resumable.** Progress is in the ledger. ``recover(..., resume=True)`` continues an open
recovery: it never creates a second new CA, re-checks the revocations, skips finished
items, and adopts an item whose signature was written to ``out_dir`` (``item.json``) but
not yet marked in the ledger, so a crash re-signs nothing twice. (A crash inside the few
microseconds between the ledger commit of a new certificate and the write of its files
leaves that certificate unused, its key discarded; the item is then re-signed.) A run
stopped between replacing the CA and opening the recovery is recognised too. Transient
failures (the PDS or PLC unreachable, the ledger busy, a rate limit) leave items
``pending`` for the next ``resume``; ``give_up=True`` marks what is still pending
``refused`` and finishes the recovery.

``dry_run=True`` changes nothing (no key, no ledger write, no file): it reports what would
be compromised, and checks each record as the re-signature would, to predict refusals.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from holdca._fs import atomic_write
from holdca.atproto.syntax import parse_record_uri
from holdca.atproto.verify import VerifiedRecord, verify_record_proof
from holdca.errors import (
    AddressRefusedError,
    ConfigError,
    HoldCAError,
    IssuancePolicyError,
    MalformedInputError,
    RateLimitError,
    RecordMismatchError,
    ResolutionError,
    SignatureInvalidError,
    VerificationError,
)
from holdca.hold.castate import CA_COMPROMISE
from holdca.hold.gate import check_binding
from holdca.hold.ledger import CARecord, IssuanceRecord, Recovery, RecoveryItem, serial_hex
from holdca.hold.service import CosignRequest, CosignResponse, HoldCA, ca_id_of
from holdca.notation import Descriptor

__all__ = [
    "NO_REGISTRY_CLIENT",
    "SUPERSEDED",
    "CAInfo",
    "DescriptorSource",
    "ImageOutcome",
    "RecoveredSignature",
    "RecoveryError",
    "RecoveryReport",
    "SignaturePublisher",
    "descriptors_from_json",
    "notice_text",
    "recover",
]

NO_REGISTRY_CLIENT: Final = (
    "not pushed: holdca has no registry client yet (issue 14); each new signature is in "
    "signatures/<old serial>/ (envelope.jws, signature-manifest.json) for the image named "
    "in item.json: push the signature manifest and its blobs to the image's repository"
)
"""What the report says about pushing when no :class:`SignaturePublisher` was given."""


SUPERSEDED: Final = x509.ReasonFlags.superseded.value
"""The revocation reason of the live leaves of a CA retired with a compromised one."""


class RecoveryError(HoldCAError):
    """A recovery cannot start or continue in the ledger's current state (nothing changed)."""


@dataclass(frozen=True)
class RecoveredSignature:
    """A new signature made by a recovery, as a :class:`SignaturePublisher` receives it.

    Attributes:
        did: the user DID.
        repository: the image repository the user's record names.
        record_uri: the ``at://`` URI of the record.
        image: the image manifest's descriptor (the signature manifest's subject).
        envelope: the Notation JWS envelope.
        signature_manifest: the OCI signature manifest (subject: ``image``).
        serial: the new certificate's serial.
        old_serials: the revoked certificates it replaces.
    """

    did: str
    repository: str | None
    record_uri: str
    image: Descriptor
    envelope: bytes = field(repr=False)
    signature_manifest: bytes = field(repr=False)
    serial: int
    old_serials: tuple[int, ...]


@runtime_checkable
class SignaturePublisher(Protocol):
    """Pushes a recovered signature to where verifiers find it (the registry, issue 14)."""

    def publish(self, signature: RecoveredSignature) -> str:
        """Push ``signature``; returns where it went (e.g. ``registry/repo@sha256:...``).

        Raises:
            HoldCAError or OSError: the push failed (the signature stays in ``out_dir``).
        """
        ...


DescriptorSource = Callable[[IssuanceRecord], Descriptor | None]
"""Where a recovery learns an image's descriptor: the old issuance in, the image
manifest's descriptor (or ``None``: not known, read the record) out."""


def descriptors_from_json(data: bytes | str) -> DescriptorSource:
    """A :data:`DescriptorSource` from JSON: a list of OCI descriptors, an object mapping
    digests to descriptors, or JSON lines of descriptors (e.g. from the registry).

    Raises:
        MalformedInputError: not JSON of that shape, or an invalid descriptor.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        loaded: Any = json.loads(text)
    except ValueError:
        try:
            loaded = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as exc:
            raise MalformedInputError(f"descriptors: not JSON or JSON lines ({exc})") from None
    entries = list(loaded.values()) if isinstance(loaded, dict) else loaded
    if not isinstance(entries, list):
        raise MalformedInputError("descriptors: expected a list or an object of descriptors")
    table = {}
    for i, entry in enumerate(entries):
        descriptor = Descriptor.from_json(entry, f"descriptor {i}")
        table[descriptor.digest] = descriptor

    def lookup(record: IssuanceRecord) -> Descriptor | None:
        return table.get(record.manifest_digest)

    return lookup


@dataclass(frozen=True)
class CAInfo:
    """A CA as a notice names it.

    Attributes:
        ca_id: SHA-256 of the certificate, lowercase hex (the ledger's id).
        sha256: the same, colon-separated upper case (what ``openssl`` prints).
        subject: the certificate's subject (RFC 4514).
        role: ``root`` or ``intermediate``.
        key_label: its key's label in the key store.
        not_after: the certificate's notAfter.
        certificate: the certificate.
    """

    ca_id: str
    sha256: str
    subject: str
    role: str
    key_label: str | None
    not_after: datetime
    certificate: x509.Certificate = field(repr=False)

    @classmethod
    def of(cls, cert: x509.Certificate, key_label: str | None = None) -> CAInfo:
        """The info of ``cert`` (role from whether it is self-issued)."""
        hexa = ca_id_of(cert)
        return cls(
            ca_id=hexa,
            sha256=":".join(hexa[i : i + 2] for i in range(0, 64, 2)).upper(),
            subject=cert.subject.rfc4514_string(),
            role="root" if cert.issuer == cert.subject else "intermediate",
            key_label=key_label,
            not_after=cert.not_valid_after_utc,
            certificate=cert,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "caId": self.ca_id,
            "sha256": self.sha256,
            "subject": self.subject,
            "role": self.role,
            "keyLabel": self.key_label,
            "notAfter": self.not_after.isoformat(),
            "trustStoreFile": f"*-{self.ca_id[:16]}.crt",
        }


@dataclass(frozen=True)
class ImageOutcome:
    """What a recovery did (or, in a dry run, would do) for one image.

    Attributes:
        did: the user DID.
        repository: the repository the record names (``None`` for operator issuance).
        record_uri: the record URI (``None`` for operator issuance).
        manifest_digest: the image manifest digest.
        old_serials: the compromised CA's certificates for it (all revoked).
        status: ``resigned``, ``refused`` or ``pending``; in a dry run ``would-resign``
            or ``would-refuse``.
        new_serial: the new certificate's serial, once re-signed.
        detail: why it was refused or is still pending.
    """

    did: str
    repository: str | None
    record_uri: str | None
    manifest_digest: str
    old_serials: tuple[int, ...]
    status: str
    new_serial: int | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "did": self.did,
            "repository": self.repository,
            "recordUri": self.record_uri,
            "manifestDigest": self.manifest_digest,
            "oldSerials": [serial_hex(s) for s in self.old_serials],
            "status": self.status,
            "newSerial": None if self.new_serial is None else serial_hex(self.new_serial),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RecoveryReport:
    """The outcome of :func:`recover` (also the notice users and relying parties get).

    Attributes:
        hold_did: the hold.
        recovery_id: the ledger's recovery number (``None`` in a dry run that would start
            one).
        dry_run: nothing was changed.
        finished: every item is resigned or refused and the recovery is closed.
        at: the time of this run.
        started_at: when the recovery started (the compromise).
        compromised: the compromised CAs (remove them from trust stores).
        retired: published CAs retired with them.
        new_ca: the new issuing CA (``None`` in a dry run).
        trust_bundle: the roots relying parties must trust now.
        certificates: live certificates of the compromised CAs at the compromise.
        revoked: of those, how many this run revoked (the others were revoked before).
        images: per image, what happened.
        late: live certificates of the compromised CAs issued after the snapshot (a
            server still running on the old CA state): revoked, not re-signed.
        errors: transient failures of this run (their items stay pending).
        out_dir: where the signatures and the notice are.
        push: how the signatures were published (:data:`NO_REGISTRY_CLIENT` without a
            publisher).
        pushed: how many signatures the publisher pushed in this run.
        push_failures: publisher errors in this run.
        elapsed: seconds this run took.
        new_label: the key label the new CA gets (a dry run) or got.
    """

    hold_did: str
    recovery_id: int | None
    dry_run: bool
    finished: bool
    at: datetime
    started_at: datetime | None
    compromised: tuple[CAInfo, ...]
    retired: tuple[CAInfo, ...]
    new_ca: CAInfo | None
    trust_bundle: tuple[CAInfo, ...]
    certificates: int
    revoked: int
    images: tuple[ImageOutcome, ...]
    late: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    out_dir: Path | None = None
    push: str = NO_REGISTRY_CLIENT
    pushed: int = 0
    push_failures: tuple[str, ...] = ()
    elapsed: float = 0.0
    new_label: str | None = None

    def count(self, status: str) -> int:
        """How many images have ``status``."""
        return sum(1 for image in self.images if image.status == status)

    @property
    def resigned(self) -> int:
        """Images re-signed (``would-resign`` in a dry run)."""
        return self.count("would-resign" if self.dry_run else "resigned")

    @property
    def refused(self) -> int:
        """Images refused (``would-refuse`` in a dry run)."""
        return self.count("would-refuse" if self.dry_run else "refused")

    @property
    def pending(self) -> int:
        """Images still to do (a transient failure, or a run that stopped)."""
        return self.count("pending")

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (``notice.json``, ``holdca recover --json``)."""
        users: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for image in self.images:
            entry = users.setdefault(image.did, {})
            entry.setdefault(image.status, []).append(image.to_json())
        return {
            "notice": "holdca CA key compromise recovery",
            "holdDid": self.hold_did,
            "recovery": self.recovery_id,
            "dryRun": self.dry_run,
            "finished": self.finished,
            "at": self.at.isoformat(),
            "startedAt": None if self.started_at is None else self.started_at.isoformat(),
            "revocationReason": CA_COMPROMISE,
            "compromised": [ca.to_json() for ca in self.compromised],
            "retired": [ca.to_json() for ca in self.retired],
            "newCa": None if self.new_ca is None else self.new_ca.to_json(),
            "newKeyLabel": self.new_label,
            "trustBundle": [ca.to_json() for ca in self.trust_bundle],
            "counts": {
                "certificates": self.certificates,
                "revoked": self.revoked,
                "images": len(self.images),
                "resigned": self.resigned,
                "refused": self.refused,
                "pending": self.pending,
                "late": len(self.late),
            },
            "late": [serial_hex(s) for s in self.late],
            "errors": list(self.errors),
            "outDir": None if self.out_dir is None else str(self.out_dir),
            "push": self.push,
            "pushed": self.pushed,
            "pushFailures": list(self.push_failures),
            "elapsedSeconds": round(self.elapsed, 3),
            "relyingParties": _relying_party_steps(self),
            "users": users,
        }


def _relying_party_steps(report: RecoveryReport) -> list[str]:
    steps = [
        f"remove the compromised {ca.role} SHA-256 {ca.sha256} from every trust store "
        f"(notation: the file truststore/x509/ca/<store>/{ca.to_json()['trustStoreFile']}, "
        "or `notation cert delete --type ca --store <store> <file> -y`)"
        for ca in report.compromised
        if ca.role == "root"
    ]
    steps += [
        f"remove the retired root SHA-256 {ca.sha256} too (it cross-certified the "
        f"compromised root; file *-{ca.ca_id[:16]}.crt)"
        for ca in report.retired
    ]
    steps += [
        f"trust the root SHA-256 {ca.sha256} only after comparing this fingerprint out of "
        "band: `holdca trust install --ca-file trust-bundle.pem --notation-config DIR`"
        for ca in report.trust_bundle
        if ca.ca_id not in {c.ca_id for c in report.compromised}
    ]
    if any(ca.role == "intermediate" for ca in report.compromised) and not any(
        ca.role == "root" for ca in report.compromised
    ):
        steps.append(
            "the root stays trusted; the compromised intermediate is revoked on the root's "
            "CRL (crl/), which notation does not consult for intermediates: if the "
            "intermediate key may have been used, the root must be replaced too"
        )
    steps.append(
        "old signatures now fail as revoked (OCSP and CRL, reason cACompromise); pull the "
        "new signatures (re-signed images) or ask the image's publisher"
    )
    return steps


def notice_text(report: RecoveryReport) -> str:
    """The notice as text, for users and relying parties (``notice.txt``)."""
    lines = [
        ("DRY RUN: nothing was changed. " if report.dry_run else "")
        + f"CA key compromise at hold {report.hold_did}",
        f"  {'checked' if report.dry_run else 'recovery'}: "
        + (f"#{report.recovery_id}, " if report.recovery_id is not None else "")
        + (
            f"started {report.started_at:%Y-%m-%d %H:%M:%S}Z, "
            if report.started_at is not None
            else ""
        )
        + ("finished" if report.finished else "not finished")
        + f" (this run {report.elapsed:.1f} s)",
        "",
        "Compromised, no longer trusted (everything they issued is revoked, cACompromise):",
    ]
    lines += [
        f"  {ca.role:<12} {ca.subject}\n               SHA-256 {ca.sha256}"
        for ca in report.compromised
    ]
    if report.retired:
        lines.append("Retired with them (a cross-certificate vouched for the compromised key):")
        lines += [f"  {ca.role:<12} {ca.subject}  SHA-256 {ca.sha256}" for ca in report.retired]
    if report.new_ca is not None:
        lines.append("New issuing CA (no certificate from the compromised key vouches for it):")
        lines.append(f"  {report.new_ca.role:<12} {report.new_ca.subject}")
        lines.append(f"               SHA-256 {report.new_ca.sha256}")
    elif report.new_label is not None:
        lines.append(f"A new CA would be created under key label {report.new_label!r}.")
    if report.trust_bundle:
        lines.append("Trust now (trust-bundle.pem):")
        lines += [
            f"  {ca.role:<12} {ca.subject}  SHA-256 {ca.sha256}" for ca in report.trust_bundle
        ]
    lines += ["", "Relying parties:"]
    lines += [f"  {i}. {step}" for i, step in enumerate(_relying_party_steps(report), 1)]
    verb = "would be " if report.dry_run else ""
    lines += [
        "",
        f"Signatures: {report.certificates} live certificates of the compromised CA "
        f"({len(report.images)} images); {report.resigned} images {verb}re-signed, "
        f"{report.refused} {verb}refused (their record no longer verifies), "
        f"{report.pending} pending.",
    ]
    if report.late:
        lines.append(
            f"  {len(report.late)} certificates were issued by the compromised CA after the "
            "recovery started (a server still on the old CA state: restart every holdca "
            "serve): revoked, not re-signed."
        )
    if not report.dry_run:
        lines.append(f"  {report.push}" if report.pushed == 0 else f"  pushed {report.pushed}")
    for error in report.errors[:20]:
        lines.append(f"  transient: {error}")
    by_did: dict[str, list[ImageOutcome]] = {}
    for image in report.images:
        by_did.setdefault(image.did, []).append(image)
    lines += ["", "Per user:"]
    for did in sorted(by_did):
        images = by_did[did]
        counts = ", ".join(
            f"{sum(1 for i in images if i.status == s)} {s}"
            for s in dict.fromkeys(i.status for i in images)
        )
        lines.append(f"  {did}: {counts}")
        for image in sorted(images, key=lambda i: (i.repository or "", i.manifest_digest)):
            name = f"{image.repository or '?'}@{image.manifest_digest}"
            if image.new_serial is not None:
                lines.append(f"    {image.status}  {name}  new serial {image.new_serial:x}")
            else:
                lines.append(f"    {image.status}  {name}  {image.detail or ''}".rstrip())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the procedure


@dataclass
class _Image:
    """The certificates of one image (same DID, record and digest) in a recovery."""

    records: list[IssuanceRecord]
    items: dict[int, RecoveryItem]

    @property
    def primary(self) -> IssuanceRecord:
        return self.records[0]

    @property
    def key(self) -> str:
        return serial_hex(self.primary.serial)


@dataclass
class _Done:
    pushed: int = 0
    error: str | None = None
    push_failure: str | None = None


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
    """Recover from a compromise of the hold's issuing CA (see the module docstring).

    Args:
        ca: the hold, with its key store and a resolver; re-signatures go through its
            policy (a rate limit that refuses is a transient failure: open the hold
            without one for the recovery, as ``holdca recover`` does).
        now: the time of the compromise (and of the new signatures).
        out_dir: where signatures, trust bundle, CRLs and notice go (required unless
            ``dry_run``); a resumed recovery needs the same directory.
        new_label: key label of the new CA (required unless ``resume`` or ``dry_run``).
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
        RecoveryError: a recovery is open (without ``resume``), there is none to resume,
            the active CA is not the recovery's new CA, ``out_dir`` belongs to another
            recovery, co-signing is disabled.
        ConfigError: no resolver or key store; missing labels or ``out_dir``.
        KeyExistsError: a new label is taken.
        LedgerError, KeyStoreError, SignerError, ProfileError, OSError: replacing the CA or
            writing failed (a later ``resume`` continues).
    """
    started = time.monotonic()
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
    run = _Run(
        ca,
        now=now,
        out_dir=out_dir,
        concurrency=concurrency,
        descriptors=descriptors,
        publisher=publisher,
    )
    if dry_run:
        return run.plan(
            open_recoveries[-1] if open_recoveries else None,
            interrupted=interrupted,
            new_label=new_label,
            root=root,
            started=started,
        )
    recovery: Recovery
    if open_recoveries:
        recovery = open_recoveries[-1]
        if ca.state().active.ca_id != recovery.new_ca:
            raise RecoveryError(
                f"the active CA {ca.state().active.ca_id[:16]} is not the new CA "
                f"{recovery.new_ca[:16]} of recovery #{recovery.id}"
            )
        run.check_out_dir(recovery)
    else:
        if not interrupted:
            ca.state(now)  # retire what a rotation's grace period ended
            run.check_out_dir(None)
        old, also = _doomed(ca, root=root, interrupted=interrupted)
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
        run.check_out_dir(recovery, fresh=True)
    return run.execute(recovery, give_up=give_up, started=started)


def _doomed(ca: HoldCA, *, root: bool, interrupted: bool) -> tuple[list[str], list[str]]:
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


def _compromised_of(records: Sequence[CARecord], old_ca: str) -> list[CARecord]:
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


class _Run:
    """One run of :func:`recover` (a start or a resume)."""

    def __init__(
        self,
        ca: HoldCA,
        *,
        now: datetime,
        out_dir: Path | None,
        concurrency: int,
        descriptors: DescriptorSource | None,
        publisher: SignaturePublisher | None,
    ) -> None:
        self.ca = ca
        self.ledger = ca.ledger
        self.now = now
        self.out = out_dir
        self.concurrency = concurrency
        self.descriptors = descriptors
        self.publisher = publisher
        self.new_ca = ""  # the recovery's new CA, once known (execute)

    # ------------------------------------------------------------------ files

    def check_out_dir(self, recovery: Recovery | None, *, fresh: bool = False) -> None:
        """``out_dir/recovery.json`` names the recovery whose files it holds."""
        assert self.out is not None
        marker = self.out / "recovery.json"
        if recovery is None:  # about to start: the directory must not hold another one's
            if marker.exists():
                raise RecoveryError(
                    f"{self.out} holds the files of another recovery: use a new directory"
                )
            return
        mine = {"recovery": recovery.id, "oldCa": recovery.old_ca, "newCa": recovery.new_ca}
        if marker.exists():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RecoveryError(f"{marker} is unreadable ({exc})") from None
            if found != mine:
                raise RecoveryError(
                    f"{self.out} holds the files of another recovery ({found.get('recovery')}); "
                    f"resume recovery #{recovery.id} with its own directory"
                )
            return
        if not fresh and any(
            item.status != "pending" for item in self.ledger.recovery_items(recovery.id)
        ):
            raise RecoveryError(
                f"{self.out} is not the directory of recovery #{recovery.id} (it has no "
                "recovery.json): resume with the directory the recovery started with"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, _dumps(mine))

    def _sig_dir(self, image: _Image) -> Path:
        assert self.out is not None
        return self.out / "signatures" / image.key

    def _write_signature(self, image: _Image, resp: CosignResponse, descriptor: Descriptor) -> None:
        directory = self._sig_dir(image)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "envelope.jws", resp.envelope)
        atomic_write(directory / "signature-manifest.json", resp.signature_manifest)
        atomic_write(  # last: its presence means the signature is complete
            directory / "item.json",
            _dumps(
                {
                    "did": resp.record.did,
                    "repository": resp.record.repository,
                    "recordUri": resp.record.record_uri,
                    "image": descriptor.to_json(),
                    "oldSerials": [serial_hex(r.serial) for r in image.records],
                    "newSerial": serial_hex(resp.serial),
                    "notAfter": resp.record.not_after.isoformat(),
                    "envelopeMediaType": "application/jose+json",
                }
            ),
        )

    # ------------------------------------------------------------------ records

    def _inspect(self, record: IssuanceRecord) -> tuple[Descriptor, VerifiedRecord | None]:
        """The image's descriptor, and the verified record if it had to be read for it."""
        if record.record_uri is None:
            raise RecordMismatchError(
                "an operator issuance without an ATProto record: re-issue it by hand"
            )
        if self.descriptors is not None:
            found = self.descriptors(record)
            if found is not None:
                if found.digest != record.manifest_digest:
                    raise RecordMismatchError("the descriptor source gave another digest")
                return found, None
        verified = self._read_record(record)
        blob = verified.record.get("manifestBlob")
        size = blob.get("size") if isinstance(blob, dict) else None
        if isinstance(size, bool) or not isinstance(size, int):
            raise RecordMismatchError(
                "the record states no manifest size (manifestBlob): give the image "
                "descriptors (holdca recover --descriptors FILE)"
            )
        return Descriptor(verified.manifest.media_type, record.manifest_digest, size), verified

    def _read_record(self, record: IssuanceRecord) -> VerifiedRecord:
        """The user's record, fetched from their PDS and verified (a fresh identity once
        when the cached one's key does not verify it)."""
        gate = self.ca.gate
        assert gate is not None
        assert record.record_uri is not None
        did, collection, rkey = parse_record_uri(record.record_uri)
        if did != record.did:
            raise RecordMismatchError(f"record URI is for {did}, not {record.did}")
        for fresh in (False, True):
            identity = gate.resolver.resolve(did, fresh=fresh)
            car = gate.resolver.get_record(identity, collection, rkey)
            try:
                return verify_record_proof(
                    car, identity.document, record.record_uri, record.manifest_digest, did=did
                )
            except SignatureInvalidError:
                if fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ dry run

    def plan(
        self,
        recovery: Recovery | None,
        *,
        interrupted: bool,
        new_label: str | None,
        root: bool,
        started: float,
    ) -> RecoveryReport:
        """What :func:`recover` would do; reads only."""
        state = self.ca.state()
        records = self.ledger.cas()
        also: list[str] = []
        if recovery is not None:
            old = [r.ca_id for r in _compromised_of(records, recovery.old_ca)]
            items = self.ledger.recovery_items(recovery.id)
            olds = [rec for i in items if (rec := self.ledger.get(i.serial)) is not None]
            pending = {i.serial for i in items if i.status == "pending"}
            done = {i.serial: i for i in items if i.status != "pending"}
        else:
            old, also = _doomed(self.ca, root=root, interrupted=interrupted)
            olds = [
                rec for ca_id in old + also for rec in self.ledger.live(self.now, issuer_id=ca_id)
            ]
            pending = {r.serial for r in olds}
            done = {}
        by_id = {r.ca_id: r for r in records}

        def info(ca_id: str) -> CAInfo:
            rec = by_id[ca_id]
            return CAInfo.of(x509.load_der_x509_certificate(rec.certificate_der), rec.key_label)

        images = _images(olds, {})
        todo = [im for im in images if any(r.serial in pending for r in im.records)]
        verdicts = dict(self._map(todo, self._predict))
        outcomes = []
        for im in images:
            if im.key in verdicts:
                status, detail = verdicts[im.key]
                outcomes.append(_outcome(im, status, None, detail))
            else:
                item = done.get(im.primary.serial)
                outcomes.append(
                    _outcome(
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
            hold_did=self.ca.hold_did,
            recovery_id=None if recovery is None else recovery.id,
            dry_run=True,
            finished=False,
            at=self.now,
            started_at=None if recovery is None else recovery.started_at,
            compromised=tuple(info(i) for i in old),
            retired=tuple(info(i) for i in also),
            new_ca=new_ca,
            trust_bundle=(),
            certificates=len(olds),
            revoked=0,
            images=tuple(outcomes),
            out_dir=self.out,
            elapsed=time.monotonic() - started,
            new_label=new_label,
        )

    def _predict(self, image: _Image) -> tuple[str, tuple[str, str | None]]:
        try:
            descriptor, verified = self._inspect(image.primary)
            if verified is None:
                verified = self._read_record(image.primary)
            check_binding(verified, descriptor, self.ca.hold_did)
            denial = self.ledger.denial(image.primary.did)
            if denial is not None:
                return image.key, ("would-refuse", f"DeniedDIDError: denied since {denial.since}")
        except HoldCAError as exc:
            if _refusal(exc):
                return image.key, ("would-refuse", _why(exc))
            return image.key, ("pending", f"transient: {_why(exc)}")
        return image.key, ("would-resign", None)

    # ------------------------------------------------------------------ the real thing

    def execute(self, recovery: Recovery, *, give_up: bool, started: float) -> RecoveryReport:
        """Revoke, re-sign what is pending, write the bundle, CRLs and notice."""
        ca, ledger, now = self.ca, self.ledger, self.now
        self.new_ca = recovery.new_ca
        records = ledger.cas()
        old = _compromised_of(records, recovery.old_ca)
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
        images = _images(olds, items)
        todo = [im for im in images if any(i.status == "pending" for i in im.items.values())]
        ran: dict[str, _Done] = dict(self._map(todo, self._resign))
        results = list(ran.values())
        if give_up:
            current = {i.serial: i for i in ledger.recovery_items(recovery.id)}
            for im in _images(olds, current):
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
            _outcome(
                im,
                final[im.primary.serial].status,
                final[im.primary.serial].new_serial,
                final[im.primary.serial].detail,
            )
            for im in _images(olds, final)
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
            out_dir=self.out,
            push=NO_REGISTRY_CLIENT if self.publisher is None else "pushed by the publisher",
            pushed=sum(d.pushed for d in results),
            push_failures=tuple(d.push_failure for d in results if d.push_failure is not None),
            elapsed=time.monotonic() - started,
            new_label=state.active.key_label,
        )
        self._write_outputs(report, old, state.roots)
        return report

    def _write_outputs(
        self, report: RecoveryReport, old: Sequence[CARecord], roots: Iterable[Any]
    ) -> None:
        assert self.out is not None
        out = self.out
        atomic_write(
            out / "trust-bundle.pem",
            b"".join(ca.certificate.public_bytes(Encoding.PEM) for ca in report.trust_bundle),
        )
        crl_ids = [r.ca_id for r in old] + [r.ca_id for r in roots]
        for ca_id in dict.fromkeys(crl_ids):
            atomic_write(out / "crl" / f"{ca_id[:16]}.crl", self.ca.crl_der(self.now, ca_id=ca_id))
        atomic_write(out / "notice.json", _dumps(report.to_json()))
        atomic_write(out / "notice.txt", notice_text(report).encode("utf-8"))

    def _resign(self, image: _Image) -> tuple[str, _Done]:
        """Re-sign one image (or adopt the signature a crashed run wrote) and record it."""
        done = _Done()
        adopted = self._adopt(image)
        if adopted is not None:
            if self.publisher is not None and not (self._sig_dir(image) / "pushed.json").exists():
                self._publish(image, self._written(image, adopted), done)
            self._mark(image, "resigned", adopted, None)
            return image.key, done
        primary = image.primary
        try:
            descriptor, _ = self._inspect(primary)
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
            if _refusal(exc):
                self._mark(image, "refused", None, _why(exc))
            else:  # stays pending for a resume
                done.error = f"{primary.did} {image.key}: {_why(exc)}"
            return image.key, done
        self._write_signature(image, resp, descriptor)
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

    def _publish(self, image: _Image, signature: RecoveredSignature | None, done: _Done) -> None:
        assert self.publisher is not None
        try:
            if signature is None:
                raise MalformedInputError("the signature files in out_dir are unreadable")
            where = self.publisher.publish(signature)
            atomic_write(self._sig_dir(image) / "pushed.json", _dumps({"location": where}))
            done.pushed = 1
        except (HoldCAError, OSError) as exc:
            done.push_failure = f"{image.key}: {_why(exc)}"

    def _written(self, image: _Image, serial: int) -> RecoveredSignature | None:
        """The signature a previous run wrote for ``image`` (to publish it now)."""
        directory = self._sig_dir(image)
        try:
            meta = json.loads((directory / "item.json").read_text(encoding="utf-8"))
            return RecoveredSignature(
                did=image.primary.did,
                repository=image.primary.repository,
                record_uri=str(image.primary.record_uri),
                image=Descriptor.from_json(meta["image"], "item.json image"),
                envelope=(directory / "envelope.jws").read_bytes(),
                signature_manifest=(directory / "signature-manifest.json").read_bytes(),
                serial=serial,
                old_serials=tuple(r.serial for r in image.records),
            )
        except (OSError, ValueError, KeyError, HoldCAError):
            return None

    def _adopt(self, image: _Image) -> int | None:
        """The new serial a previous run wrote to ``out_dir`` for ``image``, if any."""
        path = self._sig_dir(image) / "item.json"
        if not path.is_file():
            return None
        try:
            serial = int(json.loads(path.read_text(encoding="utf-8"))["newSerial"], 16)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        found = self.ledger.get(serial)
        if found is None or found.issuer_id != self.new_ca:
            return None
        return serial

    def _mark(self, image: _Image, status: str, new_serial: int | None, detail: str | None) -> None:
        for serial, item in image.items.items():
            if item.status == "pending":
                self.ledger.set_recovery_item(
                    RecoveryItem(item.recovery_id, serial, status, new_serial, detail)
                )

    # ------------------------------------------------------------------ concurrency

    def _map(
        self, images: Sequence[_Image], work: Callable[[_Image], tuple[str, Any]]
    ) -> list[tuple[str, Any]]:
        """``work`` over ``images``, ``concurrency`` at a time, in completion order.

        An unexpected exception stops new work, lets the running items finish, and is
        raised (the ledger then holds the progress for a resume).
        """
        results: list[tuple[str, Any]] = []
        if not images:
            return results
        failure: BaseException | None = None
        queue = iter(images)
        with ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="holdca-recover"
        ) as pool:
            running: set[Future[tuple[str, Any]]] = {
                pool.submit(work, im) for im in islice(queue, self.concurrency)
            }
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    error = future.exception()
                    if error is not None:
                        failure = failure or error
                    else:
                        results.append(future.result())
                if failure is None:
                    running |= {pool.submit(work, im) for im in islice(queue, len(finished))}
        if failure is not None:
            raise failure
        return results


def _images(records: Iterable[IssuanceRecord], items: Mapping[int, RecoveryItem]) -> list[_Image]:
    """Group certificates by image (DID, record URI, digest), oldest serial first."""
    groups: dict[tuple[str, str | None, str], _Image] = {}
    for rec in sorted(records, key=lambda r: r.serial):
        key = (rec.did, rec.record_uri, rec.manifest_digest)
        image = groups.setdefault(key, _Image([], {}))
        image.records.append(rec)
        if rec.serial in items:
            image.items[rec.serial] = items[rec.serial]
    return sorted(groups.values(), key=lambda im: (im.primary.did, im.primary.serial))


def _outcome(
    image: _Image, status: str, new_serial: int | None, detail: str | None
) -> ImageOutcome:
    primary = image.primary
    return ImageOutcome(
        did=primary.did,
        repository=primary.repository,
        record_uri=primary.record_uri,
        manifest_digest=primary.manifest_digest,
        old_serials=tuple(r.serial for r in image.records),
        status=status,
        new_serial=new_serial,
        detail=detail,
    )


def _refusal(exc: HoldCAError) -> bool:
    """Whether ``exc`` says the image must not be re-signed (the record no longer verifies,
    the DID is denied or not allowed), as opposed to a failure worth retrying (network,
    ledger, key store, rate limit, the hold's own state)."""
    if isinstance(exc, RateLimitError):
        return False
    if isinstance(exc, ResolutionError):
        return isinstance(exc, AddressRefusedError)
    return isinstance(exc, VerificationError | MalformedInputError | IssuancePolicyError)


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
