"""``holdca trust add/list/pin/remove`` against a real ``holdca serve`` on 127.0.0.1 (plain
http: ``--insecure-http`` and ``--fingerprint``), and ``install``/``pin``/``remove`` on
notation configurations holding other stores and statements. Oracles: openssl's fingerprint
of the hold's ``ca.crt``, the files written, ``notation verify`` and ``notation policy show``
(the TLS and DID-document side is tests/test_cli_trust_tls.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from holdca.testing.atproto import TestRepo
from tests.cli_helpers import clean_environment, run, run_json
from tests.cli_trust_support import (
    ALICE,
    SCOPE,
    attacker_root,
    cosign,
    der_sha256,
    foreign_config,
    free_port,
    init_home,
    notation,
    openssl_sha256,
    refused,
    store_files,
    tree,
    verify,
)
from tests.tools import require_notation


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


# --- a real `holdca serve` (plain http) -------------------------------------------------


@dataclass
class Served:
    home: Path
    url: str
    fingerprint: str  # openssl's, of the hold's ca.crt


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    pytest.importorskip("uvicorn")
    home = init_home(tmp_path / "hold", capsys)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "holdca", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/ca.crt", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("holdca serve did not start")
        yield Served(home, url, openssl_sha256(home / "ca.crt"))
    finally:
        proc.terminate()
        proc.wait(20)


def add_http(served: Served, config: Path, *extra: str) -> list[str]:
    return [
        "trust", "add", served.url, "--insecure-http", "--allow", "127.0.0.1",
        "--config", str(config), *extra,
    ]  # fmt: skip


def test_add_with_fingerprint_then_pin_and_notation_verifies_only_the_pinned_did(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = TestRepo.create(method="plc", curve="k256")
    bob = TestRepo.create(method="plc", curve="k256")
    alice_layout, alice_image = cosign(served.home, tmp_path, alice, capsys)
    bob_layout, bob_image = cosign(served.home, tmp_path, bob, capsys)
    config = tmp_path / "rp"
    # the fingerprint as a user would paste it from elsewhere: no colons, lower case
    pasted = served.fingerprint.replace(":", "").lower()
    code, out, err = run(capsys, *add_http(served, config, "--fingerprint", pasted))
    assert code == 0, err
    assert served.fingerprint in out  # every certificate is shown with its fingerprint
    assert "CN=ATCR Hold CA - did:web:hold.trust-test.example.com" in out
    [written] = store_files(config, "127.0.0.1_" + served.url.rsplit(":", 1)[1])
    assert openssl_sha256(written) == served.fingerprint
    # by default no statement: notation trusts nothing yet
    assert not (config / "trustpolicy.json").exists()
    assert verify(config, alice_layout, alice_image).returncode != 0
    # pin alice for local/app
    store = written.parent.name
    pinned = run_json(capsys, "trust", "pin", SCOPE, alice.did, "--config", str(config))
    assert pinned["store"] == f"ca:{store}"
    ok = verify(config, alice_layout, alice_image)
    assert ok.returncode == 0, ok.stderr
    # bob's signature, from the same hold, is refused under alice's pin
    bad = verify(config, bob_layout, bob_image)
    assert bad.returncode != 0
    assert "does not match the X.509 trusted identities" in bad.stdout + bad.stderr
    # alice's signature for another repository: no statement applies
    elsewhere = verify(config, alice_layout, alice_image, scope="local/other")
    assert elsewhere.returncode != 0
    assert "no applicable trust policy" in elsewhere.stdout + elsewhere.stderr
    # pinning bob too lets him sign local/app as well
    run_json(capsys, "trust", "pin", SCOPE, bob.did, "--name", store, "--config", str(config))
    assert verify(config, bob_layout, bob_image).returncode == 0
    # list shows the store, its fingerprint and the pin with both DIDs
    listed = run_json(capsys, "trust", "list", "--config", str(config))
    [entry] = listed["stores"]
    assert entry["store"] == f"ca:{store}"
    assert [cert["sha256"] for cert in entry["certificates"]] == [served.fingerprint]
    [statement] = entry["statements"]
    assert statement["registryScopes"] == [SCOPE]
    assert statement["trusts"]["dids"] == [alice.did, bob.did]
    # the hold-wide statement stays available: any user of the hold, any repository
    run_json(capsys, *add_http(served, config, "--fingerprint", served.fingerprint, "--scope", "*"))
    carol = TestRepo.create(method="plc", curve="k256")
    carol_layout, carol_image = cosign(served.home, tmp_path, carol, capsys)
    assert verify(config, carol_layout, carol_image, scope="local/anything").returncode == 0
    assert verify(config, carol_layout, carol_image).returncode != 0  # local/app stays pinned


def test_a_bundle_that_does_not_match_the_fingerprint_writes_nothing(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp"
    theirs = foreign_config(config)  # an existing configuration stays byte for byte
    (config / "trustpolicy.json").write_text(
        json.dumps({"version": "1.0", "trustPolicies": [theirs]})
    )
    before = tree(config)
    other = attacker_root()  # the same names: only the fingerprint tells them apart
    err = refused(capsys, 1, *add_http(served, config, "--fingerprint", der_sha256(other)))
    assert "does not match" in err
    assert tree(config) == before


def test_plain_http_needs_insecure_http_and_a_fingerprint(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp"
    args = ["trust", "add", served.url, "--allow", "127.0.0.1", "--config", str(config)]
    assert "--insecure-http" in refused(capsys, 2, *args, "--fingerprint", served.fingerprint)
    assert "--fingerprint" in refused(capsys, 2, *args, "--insecure-http")
    # without an allow rule the loopback address is refused before anything is sent
    no_allow = ["trust", "add", served.url, "--insecure-http", "--config", str(config)]
    assert "allow rule" in refused(capsys, 1, *no_allow, "--fingerprint", served.fingerprint)
    assert not config.exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["https://hold.example/ca-bundle.crt"], 2, "origin only"),
        (["https://user:pw@hold.example"], 1, "userinfo"),
        (["ftp://hold.example"], 1, "refused URL"),
        (["https://hold.example", "--fingerprint", "abc"], 2, "not a SHA-256 fingerprint"),
        (["https://hold.example", "--allow", "10.0.0.1/8"], 2, "--allow"),
        (["https://hold.example", "--cafile", "/nonexistent/ca.pem"], 2, "--cafile"),
        (["https://hold.example", "--timeout", "0"], 2, "--timeout"),
        (["https://hold.example", "--name", "bad/name"], 2, "must match"),
    ],
)
def test_bad_input_is_one_typed_line(
    argv: list[str], code: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp"
    err = refused(capsys, code, "trust", "add", *argv, "--config", str(config))
    assert message in err
    assert not config.exists()


# --- list, pin, remove on a configuration with other stores and statements ----------------


def test_remove_takes_only_the_hold_s_store_and_statements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = init_home(tmp_path / "hold", capsys)
    bundle = tmp_path / "bundle.pem"
    run_json(capsys, "trust", "export", "--home", str(home), "--out", str(bundle))
    config = tmp_path / "rp"
    theirs = foreign_config(config)
    # theirs too, but listing the hold's store beside their own: kept, with a warning
    shared = {**theirs, "name": "shared", "registryScopes": ["registry.example.com/shared"],
              "trustStores": ["ca:other", "ca:hold01"]}  # fmt: skip
    (config / "trustpolicy.json").write_text(
        json.dumps({"version": "1.0", "trustPolicies": [theirs, shared]})
    )
    run_json(
        capsys, "trust", "install", "--ca-file", str(bundle), "--store", "hold01",
        "--config", str(config),
    )  # fmt: skip
    run_json(capsys, "trust", "pin", SCOPE, ALICE, "--config", str(config))
    run_json(
        capsys, "trust", "install", "--ca-file", str(bundle), "--store", "hold01",
        "--scope", "registry.example.com/team", "--config", str(config),
    )  # fmt: skip
    policy = json.loads((config / "trustpolicy.json").read_text())
    names = [s["name"] for s in policy["trustPolicies"]]
    assert names == ["theirs", "shared", "hold01@local/app", "hold01"]
    other_before = tree(config / "truststore" / "x509" / "ca" / "other")
    removed = run_json(capsys, "trust", "remove", "hold01", "--config", str(config))
    assert sorted(removed["statements"]) == ["hold01", "hold01@local/app"]
    assert removed["stillReferencing"] == ["shared"]
    assert not (config / "truststore" / "x509" / "ca" / "hold01").exists()
    assert tree(config / "truststore" / "x509" / "ca" / "other") == other_before
    left = json.loads((config / "trustpolicy.json").read_text())["trustPolicies"]
    assert left == [theirs, shared]
    shown = notation(config, "policy", "show")  # notation still loads what is left
    assert shown.returncode == 0, shown.stderr
    assert "theirs" in shown.stdout
    # a store holdca did not write is not removed
    assert "no hold trust store" in refused(
        capsys, 2, "trust", "remove", "other", "--config", str(config)
    )
    assert tree(config / "truststore" / "x509" / "ca" / "other") == other_before


def test_remove_of_the_last_statements_removes_the_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = init_home(tmp_path / "hold", capsys)
    config = tmp_path / "rp"
    run_json(capsys, "trust", "install", "--home", str(home), "--config", str(config))
    run_json(capsys, "trust", "pin", SCOPE, ALICE, "--config", str(config))
    run_json(capsys, "trust", "remove", "holdca", "--config", str(config))
    # notation refuses a policy with no statements: holdca leaves no such file behind
    assert not (config / "trustpolicy.json").exists()
    assert run_json(capsys, "trust", "list", "--config", str(config))["stores"] == []


def test_install_writes_no_statement_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old default was a ``*`` statement trusting every user of the hold everywhere."""
    home = init_home(tmp_path / "hold", capsys)
    config = tmp_path / "rp"
    # --notation-config: the option old versions had too (--config is its new alias)
    argv = ["trust", "install", "--home", str(home), "--notation-config", str(config)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "trust pin" in out
    assert not (config / "trustpolicy.json").exists()
    assert len(store_files(config, "holdca")) == 1
    assert "--scope" in refused(capsys, 2, *argv, "--any-identity")
    err = refused(capsys, 2, *argv, "--scope", "Local/App")  # notation's scope rule, up front
    assert "--scope" in err
    assert not (config / "trustpolicy.json").exists()


def test_pin_refuses_what_it_cannot_narrow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = init_home(tmp_path / "hold", capsys)
    config = tmp_path / "rp"
    run_json(
        capsys, "trust", "install", "--home", str(home), "--config", str(config), "--scope", SCOPE
    )
    before = tree(config)
    did = ALICE
    # the scope already trusts every user of the hold: a pin would only look narrower
    assert "already covered" in refused(
        capsys, 1, "trust", "pin", SCOPE, did, "--config", str(config)
    )
    assert "REGISTRY/REPO" in refused(capsys, 2, "trust", "pin", "*", did, "--config", str(config))
    assert "not valid" in refused(
        capsys, 2, "trust", "pin", "Local/App", did, "--config", str(config)
    )
    assert "did:plc" in refused(
        capsys, 2, "trust", "pin", "local/b", "did:plc:x", "--config", str(config)
    )
    err = refused(
        capsys, 2, "trust", "pin", "local/b", did, "--name", "nope", "--config", str(config)
    )
    assert "nope" in err
    assert tree(config) == before


def test_the_default_configuration_directory_is_notation_s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = init_home(tmp_path / "hold", capsys)
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    run_json(capsys, "trust", "install", "--home", str(home), "--scope", SCOPE)
    # notation, with the same HOME and no NOTATION_CONFIG, finds the policy
    proc = subprocess.run(
        [require_notation(), "policy", "show"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(user_home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"holdca"' in proc.stdout or "holdca" in proc.stdout
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # Go refuses a relative one
    err = refused(capsys, 2, "trust", "list")
    assert "XDG_CONFIG_HOME" in err
