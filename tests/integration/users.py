"""Users of the reference PDS for the integration tests: an account and a manifest record.

Each user's account is created with a recovery key the test holds (first in the DID's
PLC rotationKeys, so a test can sign PLC operations for it), and an
``io.atcr.manifest`` record naming a test image built in an OCI layout of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import coincurve

from holdca.hold import CosignRequest
from holdca.notation import Descriptor
from holdca.notation.oci import OCILayout
from holdca.testing.oci import build_test_image
from tests.integration.conftest import ATProtoNet
from tests.integration.pds_client import Account, did_key_of

__all__ = ["MANIFEST", "User", "manifest_record", "new_user"]

MANIFEST = "io.atcr.manifest"


@dataclass
class User:
    account: Account
    recovery: coincurve.PrivateKey
    layout: OCILayout
    image: Descriptor
    uri: str

    def request(self) -> CosignRequest:
        """A library co-sign request for this user's image, asked by the user."""
        return CosignRequest(
            did=self.account.did,
            descriptor=self.image,
            record_uri=self.uri,
            caller=self.account.did,
        )


def manifest_record(image: Descriptor, repository: str, hold_did: str) -> dict[str, Any]:
    """An ``io.atcr.manifest`` record of ``image`` for the hold ``hold_did``."""
    return {
        "$type": MANIFEST,
        "repository": repository,
        "digest": image.digest,
        "mediaType": image.media_type,
        "schemaVersion": 2,
        "holdDid": hold_did,
        "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def new_user(net: ATProtoNet, tmp: Path, *, hold_did: str, repository: str = "alice/app") -> User:
    """A new account on the PDS with a manifest record of a new image for ``hold_did``."""
    recovery = coincurve.PrivateKey()
    account = net.client.create_account(recovery_key=did_key_of(recovery))
    layout = OCILayout.create(tmp / account.did.rsplit(":", 1)[1])
    image = build_test_image(layout, tag="v1", content=f"image of {account.did}\n".encode())
    record = manifest_record(image, repository, hold_did)
    uri, _ = net.client.create_record(account, MANIFEST, record)
    return User(account, recovery, layout, image, uri)
