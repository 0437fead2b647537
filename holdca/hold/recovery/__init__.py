"""Recovering from a CA key compromise: revoke, replace, re-sign, tell everyone.

:func:`recover` is ``holdca recover --compromised`` as a library call. In order:

1. **Snapshot** the certificates of the compromised CA that are still live in the ledger
   (:meth:`~holdca.hold.ledger.IssuanceLedger.live`), before anything changes.
2. **Replace the CA** (:meth:`~holdca.hold.compromise.CompromiseMixin.compromise`): the
   issuing CA (a root, or an intermediate; with ``root=True`` also the root above it) goes
   to state ``compromised`` at once, with no grace period: it never issues again and leaves
   the trust bundle, but keeps answering OCSP and CRL for its certificates. A new CA takes
   its place under a new key label, and the compromised key signs nothing for it (no
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

The rooms:

* :mod:`~holdca.hold.recovery.run`: :func:`recover`, the procedure above;
* :mod:`~holdca.hold.recovery.plan`: the checks before a run (:class:`RecoveryError`),
  which CAs a recovery compromises and retires, and the dry run;
* :mod:`~holdca.hold.recovery.images`: certificates grouped by image, and working through
  images concurrently;
* :mod:`~holdca.hold.recovery.records`: an image's descriptor and the user's record, and
  which failures refuse an image;
* :mod:`~holdca.hold.recovery.output`: the files in ``out_dir``;
* :mod:`~holdca.hold.recovery.report`: :class:`RecoveryReport` and the notice
  (:func:`notice_text`);
* :mod:`~holdca.hold.recovery.sources`: what plugs in (:data:`DescriptorSource`,
  :class:`SignaturePublisher`).
"""

from __future__ import annotations

from holdca.hold.recovery.plan import RecoveryError
from holdca.hold.recovery.report import CAInfo, ImageOutcome, RecoveryReport, notice_text
from holdca.hold.recovery.run import SUPERSEDED, recover
from holdca.hold.recovery.sources import (
    NO_REGISTRY_CLIENT,
    DescriptorSource,
    RecoveredSignature,
    SignaturePublisher,
    descriptors_from_json,
)

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
