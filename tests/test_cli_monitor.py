"""``holdca monitor``: the PLC directory, the PDS and the log served on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.keys import MemoryEd25519Signer
from holdca.testing.atproto import make_tid
from holdca.tlog import Ed25519NoteSigner, LogWriter
from tests.cli_helpers import clean_environment, run
from tests.tlog.monitor_support import NOW, ORIGIN, MonitorWorld, Served


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


@pytest.fixture
def served() -> Iterator[Served]:
    srv = Served()
    yield srv
    srv.close()


@pytest.fixture
def world(served: Served, tmp_path: Path) -> MonitorWorld:
    served.world = MonitorWorld(tmp_path, pds_endpoint=served.url)
    return served.world


def args(world: MonitorWorld, served: Served, state: Path, *extra: str) -> list[str]:
    return [
        "monitor",
        f"{served.url}/log",
        "--insecure-http",
        "--state",
        str(state),
        "--vkey",
        world.signer.vkey,
        "--allow",
        "127.0.0.1/32",
        "--plc-url",
        served.url,
        *extra,
    ]


def test_a_log_of_matching_certificates_exits_0(
    capsys: pytest.CaptureFixture[str], world: MonitorWorld, served: Served, tmp_path: Path
) -> None:
    world.append(world.cosign(world.user()), world.cosign(world.user()))
    state = tmp_path / "state"
    code, out, err = run(capsys, *args(world, served, state), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    assert (report["size"], report["verified"], report["alarms"]) == (2, 2, [])
    assert (state / "checkpoint").read_bytes() == (world.log_dir / "checkpoint").read_bytes()
    code, out, _ = run(capsys, *args(world, served, state))
    assert code == 0
    assert "checkpoint size 2 (previously 2)" in out


def test_a_certificate_without_a_record_exits_1(
    capsys: pytest.CaptureFixture[str], world: MonitorWorld, served: Served, tmp_path: Path
) -> None:
    alice = world.user()
    good = world.cosign(alice)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    leaf = world.ca.issue(alice.did, key, now=NOW, manifest_digest=alice.image.digest)[0]
    forged = dataclasses.replace(
        good,
        certificate=leaf.public_bytes(Encoding.DER),
        record_uri=f"at://{alice.did}/io.atcr.manifest/{make_tid(1_700_000_000_000_000)}",
    )
    world.append(good, forged)
    code, out, err = run(capsys, *args(world, served, tmp_path / "state"))
    assert code == 1
    assert err == ""
    assert "unexpected: 1" in out
    assert f"serial {leaf.serial_number:x}" in out
    assert "absent" in out


def test_did_lists_the_dids_certificates(
    capsys: pytest.CaptureFixture[str], world: MonitorWorld, served: Served, tmp_path: Path
) -> None:
    alice, bob = world.user(), world.user()
    world.append(world.cosign(alice), world.cosign(bob))
    code, out, err = run(capsys, *args(world, served, tmp_path / "s", "--did", bob.did), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [(e["index"], e["did"], e["status"]) for e in report["entries"]] == [
        (1, bob.did, "verified")
    ]
    assert report["entries"][0]["recordUri"] == bob.uri


def test_alarms_exit_1_and_keep_the_state(
    capsys: pytest.CaptureFixture[str], world: MonitorWorld, served: Served, tmp_path: Path
) -> None:
    entries = [world.cosign(world.user()) for _ in range(3)]
    world.append(*entries[:2])
    state = tmp_path / "state"
    assert run(capsys, *args(world, served, state))[0] == 0
    saved = (state / "checkpoint").read_bytes()

    impostor = Ed25519NoteSigner(ORIGIN, MemoryEd25519Signer.generate())
    wrong = args(world, served, state)
    wrong[wrong.index("--vkey") + 1] = impostor.vkey
    code, out, _ = run(capsys, *wrong, "--json")
    assert code == 1
    assert [a["kind"] for a in json.loads(out)["alarms"]] == ["signature"]

    fork = tmp_path / "fork"
    LogWriter.open(fork, world.signer).append([entries[0].encode(), entries[2].encode()])
    forked = args(world, served, state)
    forked[1] = str(fork)
    code, out, _ = run(capsys, *forked)
    assert code == 1
    assert "ALARM fork" in out

    world.append(entries[2])
    tile = world.log_dir / "tile/0/000.p/3"
    tile.write_bytes(bytes(32) + tile.read_bytes()[32:])
    code, out, _ = run(capsys, *args(world, served, state))
    assert code == 1
    assert "ALARM tiles" in out
    assert "state NOT advanced" in out
    assert (state / "checkpoint").read_bytes() == saved


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a[: a.index("--vkey")] + a[a.index("--vkey") + 2 :], "--vkey"),
        (lambda a: [*a[: a.index("--vkey") + 1], "nope", *a[a.index("--vkey") + 2 :]], "--vkey"),
        (lambda a: [x for x in a if x != "--insecure-http"], "--insecure-http"),
        (lambda a: [*a[:1], "/nonexistent/log", *a[2:]], "log directory"),
        (lambda a: [*a, "--did", "did:nope:x"], "--did"),
        (lambda a: [*a, "--allow", "not-an-address"], "--allow"),
        (lambda a: [*a, "--plc-url", "ftp://x"], "--plc-url"),
        (lambda a: [*a, "--timeout", "0"], "--timeout"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    world: MonitorWorld,
    served: Served,
    tmp_path: Path,
    change: object,
    message: str,
) -> None:
    argv = change(args(world, served, tmp_path / "state"))  # type: ignore[operator]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err
    assert not (tmp_path / "state").exists()


def test_vkey_file(
    capsys: pytest.CaptureFixture[str], world: MonitorWorld, served: Served, tmp_path: Path
) -> None:
    world.append(world.cosign(world.user()))
    vkey = tmp_path / "log.vkey"
    vkey.write_text(world.signer.vkey + "\n")
    argv = args(world, served, tmp_path / "state")
    i = argv.index("--vkey")
    argv[i : i + 2] = ["--vkey-file", str(vkey)]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    argv += ["--vkey", world.signer.vkey]
    assert run(capsys, *argv)[0] == 2
