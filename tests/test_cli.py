"""The holdca command line: every command through main([...]), one subprocess, real oracles."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.demo import notation_verify
from holdca.notation import parse_envelope
from holdca.notation.oci import OCILayout
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from tests.cli_helpers import clean_environment, run, run_json
from tests.tools import require_notation, require_tool

COMMANDS = [
    "init",
    "issue",
    "cosign",
    "resign",
    "revoke",
    "crl",
    "ocsp",
    "rotate",
    "trust",
    "serve",
    "deny",
    "allow",
    "denied",
    "sweep",
    "recover",
    "demo",
]
HOLD_DID = "did:web:hold.cli-test.example.com"
HOLD = [
    "--did",
    HOLD_DID,
    "--country",
    "US",
    "--state",
    "CA",
    "--org",
    "CLI Test Hold",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--help"] if command is None else [command, "--help"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "usage: holdca" in out


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice" in err


def test_missing_configuration_names_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "crl", "--home", str(tmp_path / "nothing"))
    assert code == 2
    assert "HOLD_DID" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["init", "crl"])
def test_a_broken_hold_json_is_a_configuration_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command reads hold.json the same way (old code: init said "internal error")."""
    (tmp_path / "hold.json").write_text("{broken")
    code, _, err = run(capsys, command, "--home", str(tmp_path))
    assert code == 2
    assert "hold.json: not a readable JSON file" in err
    assert (tmp_path / "hold.json").read_text() == "{broken"  # nothing overwritten


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    h = tmp_path / "hold"
    data = run_json(
        capsys, "init", "--home", str(h), *HOLD, "--crl-url", "http://127.0.0.1:9/ca.crl"
    )
    assert data["created"] is True
    return h


def test_init_is_idempotent_and_fingerprint_matches_openssl(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = run_json(capsys, "init", "--home", str(home))
    assert again["created"] is False
    openssl = require_tool("openssl")
    out = subprocess.run(
        [openssl, "x509", "-in", str(home / "ca.crt"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1].replace(":", "").lower() == again["sha256"]
    settings = json.loads((home / "hold.json").read_text())
    assert settings["HOLD_DID"] == "did:web:hold.cli-test.example.com"
    assert (home / "keys" / "hold-root.pem").stat().st_mode & 0o077 == 0


def _user_files(tmp_path: Path) -> tuple[TestRepo, Path, str, Path, Path]:
    repo = TestRepo.create(method="plc", curve="k256")
    layout_dir = tmp_path / "layout"
    layout = OCILayout.create(layout_dir)
    image = build_test_image(layout, tag="v1", content=b"cli test image\n")
    uri = repo.put_manifest(image.digest, repository="alice/cli", hold_did=HOLD_DID)
    car = tmp_path / "record.car"
    car.write_bytes(repo.get_record_car(uri))
    doc = tmp_path / "did.json"
    doc.write_bytes(repo.did_document())
    return repo, layout_dir, uri, car, doc


def test_cosign_revoke_crl_ocsp(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, layout_dir, uri, car, doc = _user_files(tmp_path)
    signed = run_json(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        str(doc),
        "--car",
        str(car),
        "--uri",
        uri,
        "--layout",
        str(layout_dir),
        "--image",
        "v1",
    )
    assert signed["did"] == repo.did
    sigs = OCILayout(layout_dir).signatures_of("v1")
    assert [s.manifest_descriptor.digest for s in sigs] == [signed["signatureManifest"]]
    serial = str(signed["serial"])
    status = run_json(capsys, "ocsp", "--home", str(home), "--serial", serial)
    assert status["status"] == "good"
    revoked = run_json(
        capsys, "revoke", "--home", str(home), "--serial", serial, "--reason", "keyCompromise"
    )
    assert revoked["revoked"][0]["serial"] == serial  # type: ignore[index]
    status = run_json(capsys, "ocsp", "--home", str(home), "--serial", serial)
    assert status["status"] == "revoked"
    crl_file = tmp_path / "ca.crl"
    info = run_json(capsys, "crl", "--home", str(home), "--out", str(crl_file))
    assert info["entries"] == 1
    openssl = require_tool("openssl")
    out = subprocess.run(
        [
            openssl,
            "crl",
            "-inform",
            "DER",
            "-in",
            str(crl_file),
            "-CAfile",
            str(home / "ca.crt"),
            "-noout",
            "-text",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "verify OK" in out.stdout + out.stderr
    assert serial.upper() in out.stdout.replace(":", "").upper()
    # keyCompromise denied the DID: listed, refused, then allowed again by the operator
    denied = run_json(capsys, "denied", "--home", str(home))
    assert [e["did"] for e in denied["denied"]] == [repo.did]  # type: ignore[index,union-attr]
    code, _, err = run(
        capsys, "cosign", "--home", str(home), "--did-doc", str(doc), "--car", str(car),
        "--uri", uri, "--layout", str(layout_dir), "--image", "v1",
    )  # fmt: skip
    assert code == 1
    assert "DeniedDIDError" in err
    assert run_json(capsys, "allow", "--home", str(home), repo.did)["wasDenied"] is True
    assert run_json(capsys, "denied", "--home", str(home))["denied"] == []
    assert run_json(capsys, "deny", "--home", str(home), repo.did, "--reason", "abuse")["did"]
    assert run_json(capsys, "allow", "--home", str(home), repo.did)["wasDenied"] is True
    # a forged proof: another image's digest -> refused, exit 1, one line, no traceback
    other = build_test_image(OCILayout(layout_dir), tag="v2", content=b"other\n")
    code, _, err = run(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        str(doc),
        "--car",
        str(car),
        "--uri",
        uri,
        "--layout",
        str(layout_dir),
        "--image",
        "v2",
    )
    assert code == 1
    assert "RecordMismatchError" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert OCILayout(layout_dir).signatures_of(other.digest) == []


def test_bad_arguments_are_usage_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "revoke", "--home", str(home), "--serial", "xyz")
    assert code == 2
    assert "hexadecimal" in err
    code, _, err = run(capsys, "revoke", "--home", str(home))
    assert code == 2
    code, _, err = run(capsys, "revoke", "--home", str(home), "--serial", "abcdef")
    assert code == 1
    assert "no certificate" in err
    code, _, err = run(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        "/nonexistent",
        "--car",
        "/nonexistent",
        "--uri",
        "at://x",
        "--layout",
        "/nonexistent",
        "--image",
        "v1",
    )
    assert code == 2
    assert "cannot read" in err
    code, _, err = run(
        capsys, "cosign", "--home", str(home), "--did-doc", "/nonexistent", "--uri", "at://x",
        "--layout", "/nonexistent", "--image", "v1",
    )  # fmt: skip
    assert code == 2
    assert "go together" in err


def test_issue_with_public_key(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out_file = tmp_path / "chain.pem"
    data = run_json(
        capsys,
        "issue",
        "--home",
        str(home),
        "--did",
        "did:web:alice.example.com",
        "--public-key",
        str(pub),
        "--out",
        str(out_file),
    )
    chain = x509.load_pem_x509_certificates(out_file.read_bytes())
    assert format(chain[0].serial_number, "x") == data["serial"]
    chain[0].verify_directly_issued_by(chain[1])
    assert chain[0].public_key() == key.public_key()


def test_trust_install_list_and_notation_verify(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notation = require_notation()
    _, layout_dir, uri, car, doc = _user_files(tmp_path)
    # this hold's leaves carry a CRL URL nobody serves: skip revocation for this test
    (home / "hold.json").write_text(
        json.dumps(
            {
                **json.loads((home / "hold.json").read_text()),
                "HOLD_CRL_ENABLED": "false",
            }
        )
    )
    signed = run_json(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        str(doc),
        "--car",
        str(car),
        "--uri",
        uri,
        "--layout",
        str(layout_dir),
        "--image",
        "v1",
    )
    config = tmp_path / "notation-config"
    info = run_json(
        capsys,
        "trust",
        "install",
        "--home",
        str(home),
        "--notation-config",
        str(config),
        "--scope",
        "local/holdca-demo",
    )
    assert info["store"] == "ca:holdca"
    listed = run_json(capsys, "trust", "list", "--notation-config", str(config))
    assert [h["holdDid"] for h in listed["holds"]] == ["did:web:hold.cli-test.example.com"]  # type: ignore[index,union-attr]
    image = OCILayout(layout_dir).resolve("v1")
    ok, output = notation_verify(notation, config, layout_dir, image.digest)
    assert ok, output
    # rotation: relying parties that still trust only the OLD root keep verifying new leaves
    old_root = (home / "ca.crt").read_bytes()
    rotated = run_json(capsys, "rotate", "--home", str(home), "--new-label", "hold-root-2")
    assert (home / "ca.crt").read_bytes() != old_root
    assert len(x509.load_pem_x509_certificates((home / "ca-bundle.crt").read_bytes())) == 2
    _, layout2, uri2, car2, doc2 = _user_files(tmp_path / "after")
    run_json(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        str(doc2),
        "--car",
        str(car2),
        "--uri",
        uri2,
        "--layout",
        str(layout2),
        "--image",
        "v1",
    )
    image2 = OCILayout(layout2).resolve("v1")
    ok, output = notation_verify(notation, config, layout2, image2.digest)
    assert ok, output  # config still trusts only the old root: chain goes through the cross cert
    exported = run_json(capsys, "trust", "export", "--home", str(home))
    assert len(exported["certificates"]) == 2  # type: ignore[arg-type]
    assert rotated["retireAt"]
    assert signed["serial"]


def test_subprocess_entry_point(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD_")}
    proc = subprocess.run(
        [sys.executable, "-m", "holdca", "ocsp", "--home", str(tmp_path), "--serial", "01"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "HOLD_DID" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_subprocess(home: Path) -> None:
    pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "holdca", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        body = b""
        for _ in range(200):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/ca.crt", timeout=2).content
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert x509.load_pem_x509_certificate(body) == x509.load_pem_x509_certificate(
            (home / "ca.crt").read_bytes()
        )
        crl = httpx.get(f"http://127.0.0.1:{port}/ca.crl", timeout=5)
        assert crl.headers["content-type"] == "application/pkix-crl"
        x509.load_der_x509_crl(crl.content)
    finally:
        proc.terminate()
        proc.wait(20)


def test_init_with_intermediate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = tmp_path / "hold"
    data = run_json(capsys, "init", "--home", str(h), *HOLD, "--intermediate-label", "issuing")
    root = x509.load_pem_x509_certificate((h / "ca.crt").read_bytes())
    root.verify_directly_issued_by(root)  # ca.crt is the self-signed root relying parties trust
    assert data["sha256"] == root.fingerprint(hashes.SHA256()).hex()
    assert (h / "keys" / "issuing.pem").is_file()
    _, layout_dir, uri, car, doc = _user_files(tmp_path)
    run_json(
        capsys,
        "cosign",
        "--home",
        str(h),
        "--did-doc",
        str(doc),
        "--car",
        str(car),
        "--uri",
        uri,
        "--layout",
        str(layout_dir),
        "--image",
        "v1",
    )
    sig = OCILayout(layout_dir).signatures_of("v1")[0]
    chain = parse_envelope(sig.envelope).certificate_chain
    assert len(chain) == 3
    assert chain[-1] == root


def test_relying_party_installs_from_the_published_bundle(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notation = require_notation()
    settings = json.loads((home / "hold.json").read_text())
    (home / "hold.json").write_text(json.dumps({**settings, "HOLD_CRL_ENABLED": "false"}))
    _, layout_dir, uri, car, doc = _user_files(tmp_path)
    run_json(
        capsys,
        "cosign",
        "--home",
        str(home),
        "--did-doc",
        str(doc),
        "--car",
        str(car),
        "--uri",
        uri,
        "--layout",
        str(layout_dir),
        "--image",
        "v1",
    )
    bundle = tmp_path / "hold-roots.pem"
    run_json(capsys, "trust", "export", "--home", str(home), "--out", str(bundle))
    # the relying party has only the PEM file: no --home, no keys, no ledger
    config = tmp_path / "rp-notation"
    run_json(
        capsys,
        "trust",
        "install",
        "--ca-file",
        str(bundle),
        "--notation-config",
        str(config),
        "--scope",
        "local/holdca-demo",
    )
    policy = json.loads((config / "trustpolicy.json").read_text())
    identities = policy["trustPolicies"][0]["trustedIdentities"]
    assert identities == ["x509.subject: C=US, ST=CA, O=CLI Test Hold"]
    image = OCILayout(layout_dir).resolve("v1")
    ok, output = notation_verify(notation, config, layout_dir, image.digest)
    assert ok, output
    code, _, err = run(
        capsys, "trust", "install", "--ca-file", str(doc), "--notation-config", str(config)
    )
    assert code == 2
    assert "not a PEM certificate" in err


def test_cosign_format_cose_attaches_a_cose_envelope_notation_verifies(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from holdca.notation.cose import MEDIA_TYPE_COSE, parse_cose_envelope  # noqa: PLC0415
    from holdca.notation.trustpolicy import hold_trust_policy  # noqa: PLC0415
    from holdca.notation.truststore import write_trust_policy, write_trust_store  # noqa: PLC0415

    repo, layout_dir, uri, car, doc = _user_files(tmp_path)
    signed = run_json(
        capsys, "cosign", "--home", str(home), "--did-doc", str(doc), "--car", str(car),
        "--uri", uri, "--layout", str(layout_dir), "--image", "v1", "--format", "cose",
    )  # fmt: skip
    assert signed["signatureFormat"] == MEDIA_TYPE_COSE
    layout = OCILayout(layout_dir)
    [sig] = layout.signatures_of("v1")
    manifest = json.loads(layout.get_blob(sig.manifest_descriptor.digest))
    assert manifest["layers"][0]["mediaType"] == MEDIA_TYPE_COSE
    assert parse_cose_envelope(sig.envelope).leaf.serial_number == int(str(signed["serial"]), 16)
    notation = require_notation()
    config = tmp_path / "notation"
    write_trust_store(
        config, "hold", x509.load_pem_x509_certificates((home / "ca.crt").read_bytes())
    )
    write_trust_policy(config, hold_trust_policy(store="hold", revocation="skip"))
    image = layout.resolve("v1")
    ok, out = notation_verify(notation, config, layout_dir, image.digest)
    assert ok, out
    assert (
        parse_cose_envelope(sig.envelope)
        .leaf.subject.rfc4514_string()
        .startswith(f"CN={repo.did},")
    )
