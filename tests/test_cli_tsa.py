"""The built-in TSA from the command line and the configuration (issue 14).

``holdca init --tsa`` makes the TSA's own root and certificate (profile checked with
``openssl x509 -text``), a hold opened afterwards stamps its signatures (tokens checked with
openssl and rfc3161-client), bad ``HOLD_TSA*`` settings are exit 2 naming the variable, and
``POST /tsa`` answers garbage with a rejection (read back with ``openssl ts -reply``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.demo import notation_verify
from holdca.notation.oci import OCILayout
from holdca.notation.timestamp import MEDIA_TYPE_QUERY, MEDIA_TYPE_REPLY, build_request
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from tests.cli_helpers import clean_environment, run, run_json
from tests.hold.served import serve_hold
from tests.notation.tsa_oracles import check_token_oracles, make_local_tsa
from tests.tools import require_notation, require_tool

HOLD_DID = "did:web:hold.tsa-test.example.com"
HOLD = ["--did", HOLD_DID, "--country", "US", "--state", "CA", "--org", "TSA Test Hold"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def _openssl_text(path: Path) -> str:
    openssl = require_tool("openssl")
    argv = [openssl, "x509", "-in", str(path), "-noout", "-text"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout


def _extension(text: str, name: str) -> list[str]:
    """The header line and value line(s) of extension ``name`` in openssl's -text output."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"X509v3 {name}:"):
            out = [line.strip()]
            for value in lines[i + 1 :]:
                if value.strip().startswith(("X509v3 ", "Authority Information", "Signature ")):
                    break
                out.append(value.strip())
            return out
    return []


def _init(capsys: pytest.CaptureFixture[str], home: Path, *extra: str) -> None:
    code, _, err = run(capsys, "init", "--home", str(home), *HOLD, *extra)
    assert code == 0, err


def _cosign(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> OCILayout:
    repo = TestRepo.create(method="plc", curve="k256")
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1", content=b"tsa cli test\n")
    uri = repo.put_manifest(image.digest, repository="alice/tsa", hold_did=HOLD_DID)
    (tmp_path / "record.car").write_bytes(repo.get_record_car(uri))
    (tmp_path / "did.json").write_bytes(repo.did_document())
    run_json(
        capsys,
        *("cosign", "--home", str(home), "--uri", uri, "--layout", str(layout.path)),
        *("--image", "v1", "--did-doc", str(tmp_path / "did.json")),
        *("--car", str(tmp_path / "record.car")),
    )
    return layout


def test_init_tsa_profile_and_signatures_are_stamped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    code, _, err = run(capsys, "init", "--home", str(home), *HOLD, "--tsa")
    assert code == 0, err
    assert "tsa-root.crt" in err  # tells the operator what to hand to verifiers
    root_path, cert_path = home / "tsa-root.crt", home / "tsa.crt"
    keys = sorted(p.name for p in (home / "keys").iterdir())
    assert any("hold-tsa-root" in k for k in keys), keys
    assert any("hold-tsa" in k and "root" not in k for k in keys), keys

    leaf = _openssl_text(cert_path)
    eku = _extension(leaf, "Extended Key Usage")
    assert eku == ["X509v3 Extended Key Usage: critical", "Time Stamping"], eku
    assert "Authority Information Access" not in leaf
    assert "CRL Distribution Points" not in leaf
    assert _extension(leaf, "Basic Constraints")[1] == "CA:FALSE"
    assert _extension(leaf, "Key Usage") == ["X509v3 Key Usage: critical", "Digital Signature"]
    root = _openssl_text(root_path)
    assert _extension(root, "Extended Key Usage") == []
    assert "CA:TRUE" in _extension(root, "Basic Constraints")[1]
    openssl = require_tool("openssl")
    verified = subprocess.run(
        [openssl, "verify", "-purpose", "timestampsign", "-CAfile", str(root_path), cert_path],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # its own root and key: not the issuing CA's
    ca = x509.load_pem_x509_certificate((home / "ca.crt").read_bytes())
    tsa_root = x509.load_pem_x509_certificate(root_path.read_bytes())
    assert tsa_root.subject != ca.subject
    assert tsa_root.public_key() != ca.public_key()

    # a hold opened afterwards (hold.json now says HOLD_TSA=local) stamps its signatures
    layout = _cosign(capsys, home, tmp_path)
    (signature,) = layout.signatures_of("v1")
    check_token_oracles(signature.envelope, tsa_root)
    # and notation accepts the stamp with a tsa: store of the file init wrote
    notation = require_notation()
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [ca])
    write_trust_store(config, "hold-tsa", [tsa_root], type="tsa")
    write_trust_policy(
        config,
        hold_trust_policy(
            store="hold", tsa_store="hold-tsa", verify_timestamp="always", revocation="skip"
        ),
    )
    ok, out = notation_verify(notation, config, layout.path, layout.resolve("v1").digest)
    assert ok, out


def test_hold_tsa_local_without_init_tsa_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "hold"
    _init(capsys, home)
    monkeypatch.setenv("HOLD_TSA", "local")
    code, _, err = run(capsys, "crl", "--home", str(home))
    assert code == 2
    assert "HOLD_TSA" in err
    assert "holdca init --tsa" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (home / "tsa.crt").exists()  # only init creates TSA state


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"HOLD_TSA_URL": "ftp://tsa.example.com/"}, "HOLD_TSA_URL"),
        ({"HOLD_TSA_URL": "not a url"}, "HOLD_TSA_URL"),
        ({"HOLD_TSA_URL": "https://tsa.example.com/"}, "HOLD_TSA_ROOT_CERT_PATH"),
        ({"HOLD_TSA_URL": "https://tsa.example.com/", "HOLD_TSA": "local"}, "HOLD_TSA_URL"),
        (
            {"HOLD_TSA_URL": "https://tsa.example.com/", "HOLD_TSA_ROOT_CERT_PATH": "missing.pem"},
            "HOLD_TSA_ROOT_CERT_PATH",
        ),
        (
            {"HOLD_TSA_URL": "https://tsa.example.com/", "HOLD_TSA_ROOT_CERT_PATH": "junk.pem"},
            "HOLD_TSA_ROOT_CERT_PATH",
        ),
        (
            {"HOLD_TSA_URL": "https://tsa.example.com/", "HOLD_TSA_ROOT_CERT_PATH": "leaf.pem"},
            "HOLD_TSA_ROOT_CERT_PATH",
        ),
        (
            {"HOLD_TSA_URL": "http://127.0.0.1:9/tsa", "HOLD_TSA_ROOT_CERT_PATH": "root.pem"},
            "HOLD_TSA_URL",
        ),
        ({"HOLD_TSA_ROOT_CERT_PATH": "root.pem"}, "HOLD_TSA_ROOT_CERT_PATH"),
        ({"HOLD_TSA": "remote"}, "HOLD_TSA"),
    ],
)
def test_bad_tsa_settings_are_exit_2_naming_the_variable(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
    variable: str,
) -> None:
    home = tmp_path / "hold"
    _init(capsys, home)
    tsa = make_local_tsa()
    (tmp_path / "root.pem").write_bytes(tsa.root.public_bytes(Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(tsa.chain[0].public_bytes(Encoding.PEM))
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    for name, value in settings.items():
        resolved = str(tmp_path / value) if value.endswith(".pem") else value
        monkeypatch.setenv(name, resolved)
    code, _, err = run(capsys, "crl", "--home", str(home))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert variable in lines[0]
    assert "Traceback" not in err


def _openssl_reply_text(tmp_path: Path, body: bytes) -> str:
    openssl = require_tool("openssl")
    path = tmp_path / "reply.tsr"
    path.write_bytes(body)
    argv = [openssl, "ts", "-reply", "-in", str(path), "-text"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_post_tsa_answers_garbage_with_a_rejection(tmp_path: Path) -> None:
    tsa = make_local_tsa()
    good = build_request(b"signature bytes")
    garbage = [
        b"",
        b"not DER at all",
        b"\x30\x03\x02\x01",  # truncated
        b"\x30\x80\x02\x01\x01\x00\x00",  # BER indefinite length
        tsa.root.public_bytes(Encoding.DER),  # a certificate, not a request
        good.der + b"\x00",  # trailing bytes
    ]
    headers = {"Content-Type": MEDIA_TYPE_QUERY}
    with serve_hold(ca_options={"timestamper": tsa}) as served:
        reply = served.http.post("/tsa", content=good.der, headers=headers)
        assert reply.status_code == 200
        assert reply.headers["content-type"] == MEDIA_TYPE_REPLY
        assert "Status: Granted." in _openssl_reply_text(tmp_path, reply.content)
        for body in garbage:
            reply = served.http.post("/tsa", content=body, headers=headers)
            assert reply.status_code == 400, (body, reply.status_code)
            assert reply.headers["content-type"] == MEDIA_TYPE_REPLY
            text = _openssl_reply_text(tmp_path, reply.content)
            assert "Status: Rejected." in text, text
            assert "Failure info: transaction not permitted or supported" in text  # badRequest
            assert text.rstrip().endswith("TST info:\nNot included."), text
    with serve_hold() as served:  # no TSA configured: no route to a signer
        reply = served.http.post("/tsa", content=good.der, headers=headers)
        assert reply.status_code == 404
