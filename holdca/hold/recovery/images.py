"""The images of a recovery: the compromised CA's certificates grouped by image.

Certificates for the same DID, record URI and image digest are one :class:`Image`, signed
once. :func:`group_images` builds them (with their recovery items), :func:`outcome` turns
one into the :class:`~holdca.hold.recovery.report.ImageOutcome` a report lists, and
:func:`map_images` works through images ``concurrency`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from typing import Any

from holdca.hold.ledger import IssuanceRecord, RecoveryItem, serial_hex
from holdca.hold.recovery.report import ImageOutcome

__all__ = ["Image", "group_images", "map_images", "outcome"]


@dataclass
class Image:
    """The certificates of one image (same DID, record and digest) in a recovery.

    Attributes:
        records: the certificates, oldest serial first.
        items: their recovery items, by serial (empty when there is no recovery yet).
    """

    records: list[IssuanceRecord]
    items: dict[int, RecoveryItem]

    @property
    def primary(self) -> IssuanceRecord:
        """The oldest certificate: the one the image is re-signed from."""
        return self.records[0]

    @property
    def key(self) -> str:
        """The primary serial in hex: the image's name in ``out_dir/signatures/``."""
        return serial_hex(self.primary.serial)


def group_images(
    records: Iterable[IssuanceRecord], items: Mapping[int, RecoveryItem]
) -> list[Image]:
    """Group certificates by image (DID, record URI, digest), oldest serial first."""
    groups: dict[tuple[str, str | None, str], Image] = {}
    for rec in sorted(records, key=lambda r: r.serial):
        key = (rec.did, rec.record_uri, rec.manifest_digest)
        image = groups.setdefault(key, Image([], {}))
        image.records.append(rec)
        if rec.serial in items:
            image.items[rec.serial] = items[rec.serial]
    return sorted(groups.values(), key=lambda im: (im.primary.did, im.primary.serial))


def outcome(image: Image, status: str, new_serial: int | None, detail: str | None) -> ImageOutcome:
    """The report's line for ``image``."""
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


def map_images(
    images: Sequence[Image], work: Callable[[Image], tuple[str, Any]], concurrency: int
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
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="holdca-recover") as pool:
        running: set[Future[tuple[str, Any]]] = {
            pool.submit(work, im) for im in islice(queue, concurrency)
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
