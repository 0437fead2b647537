"""Embed holdca in your own hold: open the CA, co-sign one pushed image, keep the result.

Everything here runs in memory (MemoryKeyStore, MemoryLedger) and builds the user's
signed ATProto repo with holdca.testing, served by an in-process stand-in for the PLC
directory and the user's PDS (TestNetwork), so it runs anywhere. A real hold passes
``resolver=HTTPResolver(...)`` (holdca.atproto.resolve) instead: the hold then resolves
the DID and fetches the proof from the user's PDS itself.

    python examples/embed_cosign.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from holdca.hold import CosignRequest, HoldCA, MemoryLedger
from holdca.keys import MemoryKeyStore
from holdca.notation.oci import OCILayout
from holdca.pki import SubjectInfo
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s", stream=sys.stdout)
    now = datetime.now(UTC)
    # 1. the hold: a CA key in a key store, a ledger, the hold's identity, a resolver
    network = TestNetwork()
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did="did:web:hold.example.com",
        subject=SubjectInfo(country="US", state="CA", organization="Example Hold"),
        now=now,
        create=True,
        resolver=network,
    )
    # 2. the user: an ATProto repo (with its DID on the "network") committing the manifest
    repo = network.add(TestRepo.create(method="plc", curve="k256"))
    with tempfile.TemporaryDirectory() as tmp:
        layout = OCILayout.create(Path(tmp) / "layout")
        image = build_test_image(layout, tag="v1")
        uri = repo.put_manifest(
            image.digest, repository="alice/app", hold_did="did:web:hold.example.com"
        )
        # 3. what the push gives you: who the caller is (your auth layer, e.g.
        #    holdca.hold.ServiceAuth), the record URI and the image descriptor
        request = CosignRequest(
            did=repo.did,
            descriptor=image,
            record_uri=uri,
            caller=repo.did,
        )
        # 4. co-sign: verified, issued, signed and recorded before it returns
        response = ca.cosign(request, now=now)
        layout.attach_signature(image, response.envelope)
        print(f"signed {image.digest} for {repo.did}: serial {response.serial:x}")
        print(f"signature manifest: {len(response.signature_manifest)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
