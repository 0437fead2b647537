"""What a recovery tells: the :class:`RecoveryReport` and the notice made from it.

* :class:`CAInfo`: a CA as the notice names it (fingerprint, subject, role, key label);
* :class:`ImageOutcome`: what the recovery did, or would do, for one image;
* :class:`RecoveryReport`: the outcome of :func:`~holdca.hold.recovery.recover`, as JSON
  (``notice.json``, ``holdca recover --json``) with the steps relying parties take;
* :func:`notice_text`: the same for people (``notice.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from holdca.hold.castate import ca_id_of, fingerprint
from holdca.hold.compromise import CA_COMPROMISE
from holdca.hold.ledger import serial_hex
from holdca.hold.recovery.sources import NO_REGISTRY_CLIENT

__all__ = ["CAInfo", "ImageOutcome", "RecoveryReport", "notice_text"]


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
            sha256=fingerprint(cert),
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
