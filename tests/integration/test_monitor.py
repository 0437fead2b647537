"""``holdca monitor`` against the ATProto reference PLC directory and PDS on 127.0.0.1.

Certificates issued by a HoldCA whose HTTP resolver talks to the reference network are
logged; the monitor (the CLI, over HTTP to the same network) must accept them while their
records exist, and report them once a record is deleted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from holdca.atproto.resolve import HTTPResolver
from holdca.hold import HoldCA, MemoryLedger
from holdca.keys import MemoryEd25519Signer, MemoryKeyStore
from holdca.net import AddressPolicy
from holdca.pki import SubjectInfo
from holdca.tlog import CertificateEntry, Ed25519NoteSigner, LogWriter
from tests.cli_helpers import clean_environment, run
from tests.integration.conftest import ATProtoNet
from tests.integration.users import new_user

HOLD_DID = "did:web:hold.test"
ALLOW = "127.0.0.0/8,::1/128"

pytestmark = pytest.mark.interop


def test_monitor_against_the_reference_network(
    atproto_net: ATProtoNet,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clean_environment(monkeypatch)
    now = datetime.now(UTC)
    ca = HoldCA.open(
        MemoryKeyStore(),
        MemoryLedger(),
        hold_did=HOLD_DID,
        subject=SubjectInfo("US", "CA", "Monitored Hold"),
        now=now,
        create=True,
        resolver=HTTPResolver(plc_url=atproto_net.plc_url, policy=AddressPolicy.parse(ALLOW)),
    )
    users = [new_user(atproto_net, tmp_path, hold_did=HOLD_DID) for _ in range(2)]
    entries = []
    for user in users:
        record = ca.cosign(user.request(), now=now).record
        assert record.commit_cid
        assert record.rev
        assert record.repository
        assert record.record_uri
        entries.append(
            CertificateEntry(
                record.certificate_der,
                record.did,
                record.record_uri,
                record.commit_cid,
                record.rev,
                record.manifest_digest,
                record.repository,
            )
        )
    signer = Ed25519NoteSigner("hold.test/log", MemoryEd25519Signer.generate())
    LogWriter.open(tmp_path / "log", signer).append([e.encode() for e in entries])

    def monitor(state: str, *extra: str) -> tuple[int, dict[str, object]]:
        code, out, err = run(
            capsys,
            "monitor",
            str(tmp_path / "log"),
            "--state",
            str(tmp_path / state),
            "--vkey",
            signer.vkey,
            "--allow",
            ALLOW,
            "--plc-url",
            atproto_net.plc_url,
            "--json",
            *extra,
        )
        assert err == ""
        return code, json.loads(out)

    code, report = monitor("first")
    assert code == 0, report
    assert report["verified"] == 2
    # the record of the second user is deleted on the PDS: its certificate is now unexpected
    atproto_net.client.delete_record(users[1].account, users[1].uri)
    code, report = monitor("second")
    assert code == 1
    unexpected = report["unexpected"]
    assert isinstance(unexpected, list)
    assert [(u["did"], u["status"]) for u in unexpected] == [(users[1].account.did, "unexpected")]
    assert "absent" in unexpected[0]["reason"]
    code, report = monitor("third", "--did", users[0].account.did)
    assert code == 0
    assert report["checked"] == 1
