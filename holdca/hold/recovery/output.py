"""The files a recovery writes to ``out_dir`` (:class:`OutDir`).

::

    recovery.json                     which recovery the directory belongs to
    signatures/<old serial>/
        envelope.jws                  the new Notation JWS envelope
        signature-manifest.json       the OCI signature manifest
        item.json                     the image and the new serial (written last)
        pushed.json                   where a publisher pushed it
    trust-bundle.pem                  the roots to trust now
    crl/<CA id prefix>.crl            the CRLs of the compromised CAs (and a kept root)
    notice.json, notice.txt           the notice for users and relying parties

A signature whose ``item.json`` exists is complete: a resumed run adopts it instead of
re-signing the image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from holdca._fs import atomic_write
from holdca.errors import HoldCAError
from holdca.hold.ledger import IssuanceLedger, Recovery, serial_hex
from holdca.hold.recovery.images import Image
from holdca.hold.recovery.plan import RecoveryError
from holdca.hold.recovery.report import RecoveryReport, notice_text
from holdca.hold.recovery.sources import RecoveredSignature
from holdca.hold.service import CosignResponse, HoldCA
from holdca.notation import Descriptor

__all__ = ["OutDir"]


class OutDir:
    """A recovery's ``out_dir`` (see the module docstring for its layout).

    Args:
        path: the directory (created by :meth:`claim`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def claim(
        self, ledger: IssuanceLedger, recovery: Recovery | None, *, fresh: bool = False
    ) -> None:
        """``out_dir/recovery.json`` names the recovery whose files it holds.

        With ``recovery`` ``None`` (about to start one), the directory must not hold
        another recovery's files. Otherwise it must be the recovery's own, or, when it has
        no ``recovery.json`` yet, the recovery must be ``fresh`` or have no finished item;
        it then becomes the recovery's.

        Raises:
            RecoveryError: the directory belongs to another recovery, or is not this one's.
        """
        marker = self.path / "recovery.json"
        if recovery is None:  # about to start: the directory must not hold another one's
            if marker.exists():
                raise RecoveryError(
                    f"{self.path} holds the files of another recovery: use a new directory"
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
                    f"{self.path} holds the files of another recovery "
                    f"({found.get('recovery')}); "
                    f"resume recovery #{recovery.id} with its own directory"
                )
            return
        if not fresh and any(
            item.status != "pending" for item in ledger.recovery_items(recovery.id)
        ):
            raise RecoveryError(
                f"{self.path} is not the directory of recovery #{recovery.id} (it has no "
                "recovery.json): resume with the directory the recovery started with"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, _dumps(mine))

    def signature_dir(self, image: Image) -> Path:
        """Where the new signature of ``image`` goes."""
        return self.path / "signatures" / image.key

    def write_signature(self, image: Image, resp: CosignResponse, descriptor: Descriptor) -> None:
        """Write the new signature of ``image``; ``item.json`` last, once it is complete."""
        directory = self.signature_dir(image)
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

    def written_serial(self, image: Image) -> int | None:
        """The new serial a previous run wrote for ``image`` (``item.json``), if any."""
        path = self.signature_dir(image) / "item.json"
        if not path.is_file():
            return None
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["newSerial"], 16)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def written(self, image: Image, serial: int) -> RecoveredSignature | None:
        """The signature a previous run wrote for ``image`` (to publish it now), or
        ``None`` when its files are unreadable."""
        directory = self.signature_dir(image)
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

    def pushed(self, image: Image) -> bool:
        """Whether a publisher pushed the signature of ``image`` (``pushed.json``)."""
        return (self.signature_dir(image) / "pushed.json").exists()

    def mark_pushed(self, image: Image, where: str) -> None:
        """Record where a publisher pushed the signature of ``image``."""
        atomic_write(self.signature_dir(image) / "pushed.json", _dumps({"location": where}))

    def write_results(
        self, report: RecoveryReport, ca: HoldCA, now: datetime, crl_ids: Iterable[str]
    ) -> None:
        """Write the trust bundle, the CRLs of ``crl_ids`` (once each) and the notice."""
        out = self.path
        atomic_write(
            out / "trust-bundle.pem",
            b"".join(info.certificate.public_bytes(Encoding.PEM) for info in report.trust_bundle),
        )
        for ca_id in dict.fromkeys(crl_ids):
            atomic_write(out / "crl" / f"{ca_id[:16]}.crl", ca.crl_der(now, ca_id=ca_id))
        atomic_write(out / "notice.json", _dumps(report.to_json()))
        atomic_write(out / "notice.txt", notice_text(report).encode("utf-8"))


def _dumps(obj: Any) -> bytes:
    """``obj`` as the indented, key-sorted JSON the files hold."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
