"""``holdca trust add`` over TLS from the reference app (uvicorn, a TestPKI certificate for
127.0.0.1) with a did:web document beside it: ``trust export --did-service`` publishes the
fingerprints, ``trust add`` checks the bundle against them; every bad answer is a typed
error and writes nothing. Oracles: openssl's fingerprint of the hold's ``ca.crt`` and the
files of the notation configuration.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.cli import common as cli_common
from holdca.keys import MemorySigner
from holdca.pki import SubjectInfo, issue_root
from holdca.testing.tls import TestPKI
from tests.cli_helpers import clean_environment, run, run_json
from tests.cli_trust_support import (
    ALICE,
    HOLD,
    SCOPE,
    attacker_root,
    der_sha256,
    init_home,
    notation,
    openssl_sha256,
    pem,
    refused,
    store_files,
    tree,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


# --- the reference app over TLS, with a did:web document ----------------------------------


@dataclass
class TLSHold:
    home: Path
    url: str
    did: str
    cafile: Path
    overrides: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def add(self, config: Path, *extra: str) -> list[str]:
        return [
            "trust", "add", self.url, "--allow", "127.0.0.1", "--cafile", str(self.cafile),
            "--config", str(config), *extra,
        ]  # fmt: skip

    def publish(self, document: dict[str, Any]) -> None:
        self.overrides["/.well-known/did.json"] = (200, json.dumps(document).encode())


def _with_overrides(app: Any, overrides: dict[str, tuple[int, bytes]]) -> Callable[..., Any]:
    """The ASGI app, except for the paths in ``overrides`` (status, body) at request time."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in overrides:
            status, body = overrides[scope["path"]]
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def tls_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[TLSHold]:
    uvicorn = pytest.importorskip("uvicorn")
    from holdca.server import create_app  # noqa: PLC0415
    from holdca.server.run import uvicorn_config  # noqa: PLC0415

    home = init_home(tmp_path / "tls-hold", capsys)
    pki = TestPKI()
    cafile = tmp_path / "tls-ca.pem"
    cafile.write_bytes(pki.certificate.public_bytes(serialization.Encoding.PEM))
    cert, key = pki.server_files(tmp_path, ips=("127.0.0.1",))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ca = cli_common.open_ca(argparse.Namespace(home=str(home)))
    hold = TLSHold(home, f"https://127.0.0.1:{port}", f"did:web:127.0.0.1%3A{port}", cafile)
    # only the GET routes are used: no caller ever authenticates to this server
    app = _with_overrides(create_app(ca, insecure_no_auth=True), hold.overrides)
    config = uvicorn_config(
        app,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    try:
        yield hold
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def exported_service(hold: TLSHold, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = run(
        capsys, "trust", "export", "--home", str(hold.home), "--did-service", "--url", hold.url
    )
    assert code == 0, err
    assert "did.json" in err  # where to publish it, on stderr: stdout is the entry alone
    entry = json.loads(out)
    assert isinstance(entry, dict)
    return entry


def test_export_did_service_then_add_from_the_did_document(
    tls_hold: TLSHold, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = exported_service(tls_hold, capsys)
    fingerprint = openssl_sha256(tls_hold.home / "ca.crt")
    assert entry["caFingerprints"] == ["sha256:" + fingerprint.replace(":", "").lower()]
    assert entry["serviceEndpoint"] == f"{tls_hold.url}/ca-bundle.crt"
    assert entry["id"] == "#atcr_hold_ca"
    tls_hold.publish({"id": tls_hold.did, "service": [entry]})
    config = tmp_path / "rp"
    data = run_json(capsys, *tls_hold.add(config, "--name", "hold01"))
    assert tls_hold.did in data["matched"]
    assert data["statement"] is None  # narrow by default: a store, no statement
    [written] = store_files(config, "hold01")
    assert openssl_sha256(written) == fingerprint
    # notation itself loads what was written once a pin exists
    run_json(capsys, "trust", "pin", SCOPE, ALICE, "--config", str(config))
    shown = notation(config, "policy", "show")
    assert shown.returncode == 0, shown.stderr
    assert "hold01@local/app" in shown.stdout


def test_add_leaves_exactly_the_verified_roots_in_the_store(
    tls_hold: TLSHold, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A root the hold no longer publishes (retired, compromised) leaves the store."""
    config = tmp_path / "rp"
    retired = tmp_path / "retired.pem"
    retired.write_bytes(pem(attacker_root()))  # an old root of the same hold DID
    run_json(
        capsys, "trust", "install", "--ca-file", str(retired), "--store", "hold01",
        "--config", str(config),
    )  # fmt: skip
    tls_hold.publish({"id": tls_hold.did, "service": [exported_service(tls_hold, capsys)]})
    run_json(capsys, *tls_hold.add(config, "--name", "hold01"))
    files = store_files(config, "hold01")
    assert [openssl_sha256(f) for f in files] == [openssl_sha256(tls_hold.home / "ca.crt")]


def test_init_tells_the_operator_to_publish_the_did_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "init", "--home", str(tmp_path / "h"), *HOLD)
    assert code == 0, err
    assert "holdca trust export --did-service" in out
    # and for a did:web hold the entry's URL defaults to the DID's host
    code, out, _ = run(capsys, "trust", "export", "--home", str(tmp_path / "h"), "--did-service")
    assert code == 0
    assert json.loads(out)["serviceEndpoint"] == "https://hold.trust-test.example.com/ca-bundle.crt"


@pytest.mark.parametrize("attack", ["replaced", "appended"])
def test_a_bundle_the_did_document_does_not_list_writes_nothing(
    attack: str, tls_hold: TLSHold, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = exported_service(tls_hold, capsys)
    tls_hold.publish({"id": tls_hold.did, "service": [entry]})
    real = x509.load_pem_x509_certificate((tls_hold.home / "ca.crt").read_bytes())
    evil = attacker_root()
    served = pem(evil) if attack == "replaced" else pem(real, evil)
    tls_hold.overrides["/ca-bundle.crt"] = (200, served)
    config = tmp_path / "rp"
    err = refused(capsys, 1, *tls_hold.add(config))
    assert der_sha256(evil) in err
    assert not config.exists()
    # the same bundle against a --fingerprint of the real root: refused too
    err = refused(capsys, 1, *tls_hold.add(config, "--fingerprint", der_sha256(real)))
    assert not config.exists()


def _leaf_pem(hold: TLSHold) -> bytes:
    key = MemorySigner.generate()
    chain = cli_common.open_ca(argparse.Namespace(home=str(hold.home))).issue(
        ALICE, key.public_key, now=datetime.now(UTC)
    )
    return pem(chain[0])


@pytest.mark.parametrize(
    ("path", "answer", "message"),
    [
        ("/ca-bundle.crt", (200, b"hello"), "not a PEM"),
        ("/ca-bundle.crt", (200, b""), "not a PEM"),
        ("/ca-bundle.crt", (200, b"x" * (300 * 1024)), "larger than"),
        ("/ca-bundle.crt", (404, b"{}"), "HTTP 404"),
        ("/ca-bundle.crt", "leaf", "not a CA certificate"),
        ("/.well-known/did.json", (404, b"{}"), "HTTP 404"),
        ("/.well-known/did.json", (200, b"[]"), "JSON object"),
        ("/.well-known/did.json", "wrong id", "does not match the DID"),
        ("/.well-known/did.json", "no entry", "no #atcr_hold_ca"),
        ("/.well-known/did.json", "two entries", "2 #atcr_hold_ca"),
        ("/.well-known/did.json", "bad fingerprint", "bad fingerprint"),
    ],
)
def test_bad_answers_are_typed_errors_and_write_nothing(
    path: str,
    answer: tuple[int, bytes] | str,
    message: str,
    tls_hold: TLSHold,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = exported_service(tls_hold, capsys)
    documents = {
        "wrong id": {"id": "did:web:hold.example.com", "service": [entry]},
        "no entry": {"id": tls_hold.did, "service": [{**entry, "id": "#other"}]},
        "two entries": {
            "id": tls_hold.did,
            "service": [entry, {**entry, "id": f"{tls_hold.did}#atcr_hold_ca"}],
        },
        "bad fingerprint": {
            "id": tls_hold.did,
            "service": [{**entry, "caFingerprints": ["sha256:00"]}],
        },
    }
    tls_hold.publish({"id": tls_hold.did, "service": [entry]})
    if answer == "leaf":
        tls_hold.overrides[path] = (200, _leaf_pem(tls_hold))
    elif isinstance(answer, str):
        tls_hold.publish(documents[answer])
    else:
        tls_hold.overrides[path] = answer
    config = tmp_path / "rp"
    err = refused(capsys, 1, *tls_hold.add(config))
    assert message in err
    assert not config.exists()


def test_tls_is_verified_against_the_given_ca_only(
    tls_hold: TLSHold, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp"
    fingerprint = openssl_sha256(tls_hold.home / "ca.crt")
    argv = ["trust", "add", tls_hold.url, "--allow", "127.0.0.1", "--config", str(config)]
    err = refused(capsys, 1, *argv, "--fingerprint", fingerprint)  # certifi's roots only
    assert "certificate verification failed" in err
    other = tmp_path / "other-ca.pem"
    other.write_bytes(TestPKI().certificate.public_bytes(serialization.Encoding.PEM))
    err = refused(capsys, 1, *argv, "--cafile", str(other), "--fingerprint", fingerprint)
    assert "certificate verification failed" in err
    assert not config.exists()
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("nope")
    assert "--cafile" in refused(
        capsys, 2, *argv, "--cafile", str(not_pem), "--fingerprint", fingerprint
    )


def test_add_refuses_a_store_name_holding_another_hold_s_roots(
    tls_hold: TLSHold, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rp"
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(pem(issue_root(
        MemorySigner.generate(), hold_did="did:web:stranger.example.com",
        subject=SubjectInfo(country="US", state="CA", organization="Trust Test Hold"),
        now=datetime.now(UTC),
    )))  # fmt: skip
    run_json(
        capsys,
        "trust",
        "install",
        "--ca-file",
        str(stranger),
        "--store",
        "hold01",
        "--config",
        str(config),
    )
    before = tree(config)
    fingerprint = openssl_sha256(tls_hold.home / "ca.crt")
    err = refused(
        capsys, 2, *tls_hold.add(config, "--name", "hold01", "--fingerprint", fingerprint)
    )
    assert "trust remove hold01" in err
    # install, which adds roots beside the existing ones, refuses the mix as well
    bundle = tmp_path / "bundle.pem"
    run_json(capsys, "trust", "export", "--home", str(tls_hold.home), "--out", str(bundle))
    install = ["trust", "install", "--ca-file", str(bundle), "--store", "hold01"]
    assert "trust remove hold01" in refused(capsys, 2, *install, "--config", str(config))
    assert tree(config) == before
