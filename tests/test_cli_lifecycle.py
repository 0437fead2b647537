"""The CA lifecycle from the command line: init --intermediate, rotate, retire, an offline
root (issue 17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cli_helpers import clean_environment, run, run_json

HOLD = ["--did", "did:web:hold.lifecycle.example.com", "--country", "US", "--state", "CA"]
HOLD += ["--org", "Lifecycle Hold", "--crl-url", "http://127.0.0.1:9/ca.crl"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def _certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _public_key(tmp_path: Path) -> Path:
    path = tmp_path / "leaf.pub"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_rotate_then_retire_and_ca_crt_stays_the_new_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    assert run(capsys, "init", "--home", str(home), *HOLD)[0] == 0
    [old_root] = _certs(home / "ca.crt")
    rotated = run_json(capsys, "rotate", "--home", str(home), "--new-label", "hold-root-2")
    [new_root] = _certs(home / "ca.crt")
    assert new_root != old_root
    assert rotated["newRoot"] != rotated["oldRoot"]
    assert _certs(home / "ca-bundle.crt") == [new_root, old_root]
    # other commands open the hold again: ca.crt does not flip back to the old root
    code, _, err = run(capsys, "crl", "--home", str(home))
    assert code == 0, err
    assert _certs(home / "ca.crt") == [new_root]
    # a leaf issued now chains through the cross-certificate to the old root
    chain = tmp_path / "chain.pem"
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "--public-key", str(_public_key(tmp_path)), "--out", str(chain),
    )  # fmt: skip
    assert code == 0, err
    assert _certs(chain)[-1] == old_root
    retired = run_json(capsys, "retire", "--home", str(home))
    assert retired["retired"] == [rotated["oldRoot"]]
    assert _certs(home / "ca-bundle.crt") == [new_root]
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "--public-key", str(_public_key(tmp_path)), "--out", str(chain),
    )  # fmt: skip
    assert code == 0, err
    assert _certs(chain)[1:] == [new_root]
    assert run_json(capsys, "retire", "--home", str(home))["retired"] == []


def test_an_intermediate_hold_issues_with_the_root_key_offline_and_rotates_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hold"
    assert run(capsys, "init", "--home", str(home), *HOLD, "--intermediate")[0] == 0
    settings = json.loads((home / "hold.json").read_text())
    assert settings["HOLD_CA_INTERMEDIATE_LABEL"] == "hold-issuing"
    [root] = _certs(home / "ca.crt")
    offline = tmp_path / "offline"
    offline.mkdir()
    shutil.move(home / "keys" / "hold-root.pem", offline / "hold-root.pem")
    chain = tmp_path / "chain.pem"
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "--public-key", str(_public_key(tmp_path)), "--out", str(chain),
    )  # fmt: skip
    assert code == 0, err
    leaf, inter, top = _certs(chain)
    assert top == root
    leaf.verify_directly_issued_by(inter)
    code, _, err = run(capsys, "rotate", "--home", str(home), "--new-label", "hold-issuing-2")
    assert code == 1
    assert "offline" in err
    shutil.move(offline / "hold-root.pem", home / "keys" / "hold-root.pem")
    rotated = run_json(capsys, "rotate", "--home", str(home), "--new-label", "hold-issuing-2")
    assert rotated["newIntermediate"] != rotated["oldIntermediate"]
    assert _certs(home / "ca.crt") == [root]  # relying parties keep the same root
    code, _, err = run(
        capsys, "issue", "--home", str(home), "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        "--public-key", str(_public_key(tmp_path)), "--out", str(chain),
    )  # fmt: skip
    assert code == 0, err
    _, new_inter, top = _certs(chain)
    assert top == root
    assert new_inter != inter
    new_inter.verify_directly_issued_by(root)
