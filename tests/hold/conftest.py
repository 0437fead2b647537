"""Fixtures for the hold tests: a hold CA on memory keys, a user's repo, an image."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from holdca.hold import (
    AllowAllAuthorizer,
    CosignRequest,
    HoldCA,
    IssuanceLedger,
    MemoryLedger,
    SQLiteLedger,
)
from holdca.keys import MemoryKeyStore
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOLD_DID = "did:web:hold01.example.com"
SUBJECT = SubjectInfo(country="US", state="CA", organization="Example Hold")


@dataclass
class World:
    """A hold, a user repo with one manifest record and the image it names."""

    ca: HoldCA
    store: MemoryKeyStore
    ledger: IssuanceLedger
    repo: TestRepo
    layout: OCILayout
    image: Descriptor
    uri: str
    net: TestNetwork

    def request(self, **overrides: object) -> CosignRequest:
        """A request with only DID, URI and descriptor: the hold fetches the proof."""
        fields: dict[str, object] = {
            "did": self.repo.did,
            "descriptor": self.image,
            "record_uri": self.uri,
            "caller": self.repo.did,
        }
        fields.update(overrides)
        return CosignRequest(**fields)  # type: ignore[arg-type]


def make_world(
    tmp_path: Path,
    *,
    ledger: IssuanceLedger | None = None,
    content: bytes = b"hello\n",
    **options: object,
) -> World:
    store = MemoryKeyStore()
    ledger = ledger if ledger is not None else MemoryLedger()
    net = TestNetwork()
    options.setdefault("resolver", net)
    ca = HoldCA.open(
        store,
        ledger,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=NOW,
        create=True,
        **options,  # type: ignore[arg-type]
    )
    repo = net.add(TestRepo.create(method="plc", curve="k256", now=NOW))
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1", content=content)
    uri = repo.put_manifest(image.digest, repository="alice/app", hold_did=HOLD_DID)
    return World(ca, store, ledger, repo, layout, image, uri, net)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    led = SQLiteLedger(tmp_path / "ledger.sqlite3")
    yield make_world(tmp_path, ledger=led, authorizer=AllowAllAuthorizer())
    led.close()
