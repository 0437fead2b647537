"""Ed25519 keys on SoftHSM (holdca.keys.pkcs11_ed25519): the log key of a pkcs11 hold.

Oracles: python-pkcs11 reading the token's objects directly (attributes), cryptography and
``openssl pkeyutl -verify -rawin`` (signatures), a child process that opens the token
afresh (the key is found again), holdca.tlog and the Go verifier (a checkpoint signed on
the token), the file system (what ``holdca init --log`` wrote).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization

from holdca.errors import (
    HoldCAError,
    KeyExistsError,
    KeyNotFoundError,
    SignerError,
    UnsupportedAlgorithmError,
)
from holdca.keys import MemoryEd25519Signer, SignatureAlgorithm, ed25519_public_bytes
from holdca.keys.pkcs11 import PKCS11KeyStore
from holdca.keys.pkcs11_ed25519 import PKCS11Ed25519Signer
from holdca.tlog import Ed25519NoteSigner, Ed25519NoteVerifier, open_checkpoint
from tests.cli_helpers import clean_environment, run_json
from tests.conftest import SoftHSM
from tests.tlog.conftest import BUILD, build_log, entries, run_goverify
from tests.tools import missing, require_tool

pytestmark = pytest.mark.hsm

ROOT = Path(__file__).parents[2]


@pytest.fixture
def store(softhsm: SoftHSM) -> PKCS11KeyStore:
    """A store on the session's token."""
    return softhsm.keystore()


@pytest.fixture
def label(store: PKCS11KeyStore) -> Iterator[str]:
    """A fresh label, deleted after the test if a key is left under it."""
    name = f"ed-{uuid.uuid4().hex[:16]}"
    yield name
    if name in store.labels():
        store.delete(name)


def _objects(store: PKCS11KeyStore, label: str) -> dict[str, dict[str, object]]:
    """The key objects under ``label``, read with python-pkcs11 on a session of its own."""
    lib = pkcs11.lib(store.module_path)  # the same lib object holdca loaded
    token = lib.get_token(token_label=store.token_label)
    a = pkcs11.Attribute
    found: dict[str, dict[str, object]] = {}
    with token.open(rw=False) as session:  # login is per application: already logged in
        for cls, name, attrs in (
            (
                pkcs11.ObjectClass.PRIVATE_KEY,
                "private",
                ["SENSITIVE", "ALWAYS_SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE", "TOKEN",
                 "PRIVATE", "SIGN", "DERIVE", "KEY_TYPE", "ID"],
            ),
            (pkcs11.ObjectClass.PUBLIC_KEY, "public", ["KEY_TYPE", "EC_POINT", "EC_PARAMS", "ID"]),
        ):  # fmt: skip
            objs = list(session.get_objects({a.CLASS: cls, a.LABEL: label}))
            assert len(objs) == 1, (name, len(objs))
            found[name] = {attr: objs[0][getattr(a, attr)] for attr in attrs}
    return found


def test_the_key_is_generated_on_the_token_sensitive_and_never_extractable(
    store: PKCS11KeyStore, label: str
) -> None:
    signer = store.generate_ed25519(label)
    assert isinstance(signer, PKCS11Ed25519Signer)
    objs = _objects(store, label)
    private, public = objs["private"], objs["public"]
    assert private["KEY_TYPE"] == pkcs11.KeyType.EC_EDWARDS
    assert private["SENSITIVE"] is True
    assert private["ALWAYS_SENSITIVE"] is True
    assert private["EXTRACTABLE"] is False
    assert private["NEVER_EXTRACTABLE"] is True
    assert private["TOKEN"] is True
    assert private["PRIVATE"] is True
    assert private["SIGN"] is True
    assert private["DERIVE"] is False
    assert private["ID"] == public["ID"] == signer.key_id
    assert public["EC_PARAMS"] == bytes.fromhex("06032b6570")  # DER OID 1.3.101.112
    point = bytes(public["EC_POINT"])  # type: ignore[call-overload]
    assert ed25519_public_bytes(signer.public_key) in (point, point[2:])
    assert label in store.labels()


def test_signatures_verify_with_cryptography_and_openssl(
    tmp_path: Path, store: PKCS11KeyStore, label: str
) -> None:
    signer = store.generate_ed25519(label)
    message = b"holdca checkpoint\n" + os.urandom(100)
    signature = signer.sign(message)
    assert len(signature) == 64
    signer.public_key.verify(signature, message)
    assert signer.sign(message) == signature  # Ed25519 is deterministic

    openssl = require_tool("openssl")
    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        signer.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    (tmp_path / "bad").write_bytes(message + b"x")

    def pkeyutl(data: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
             "-in", str(tmp_path / data), "-sigfile", str(tmp_path / "sig")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    good = pkeyutl("msg")
    assert good.returncode == 0, good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert pkeyutl("bad").returncode != 0


def test_load_after_reopening_the_token_finds_the_same_key(
    softhsm: SoftHSM, store: PKCS11KeyStore, label: str
) -> None:
    made = store.generate_ed25519(label)
    assert ed25519_public_bytes(store.load_ed25519(label).public_key) == ed25519_public_bytes(
        made.public_key
    )
    child = (
        "import json, os, sys\n"
        "from holdca.keys import ed25519_public_bytes\n"
        "from holdca.keys.pkcs11 import PKCS11KeyStore\n"
        "s = PKCS11KeyStore(sys.argv[1], sys.argv[2], os.environ['CHILD_PIN'])\n"
        "k = s.load_ed25519(sys.argv[3])\n"
        "print(json.dumps({'pub': ed25519_public_bytes(k.public_key).hex(),"
        " 'sig': k.sign(b'from the child').hex()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, softhsm.module, softhsm.token_label, label],
        env=softhsm.env(CHILD_PIN=softhsm.pin),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert bytes.fromhex(got["pub"]) == ed25519_public_bytes(made.public_key)
    made.public_key.verify(bytes.fromhex(got["sig"]), b"from the child")


def test_typed_errors(store: PKCS11KeyStore, label: str) -> None:
    with pytest.raises(KeyNotFoundError):
        store.load_ed25519(label)
    signer = store.generate_ed25519(label)
    with pytest.raises(KeyExistsError):
        store.generate_ed25519(label)
    with pytest.raises(KeyExistsError):
        store.generate(label)
    with pytest.raises(UnsupportedAlgorithmError):
        store.load(label)  # an Ed25519 key is no X.509 signer
    with pytest.raises(ValueError, match="label"):
        store.generate_ed25519("../x")
    with pytest.raises(SignerError):
        signer.sign("text")  # type: ignore[arg-type]
    store.delete(label)
    with pytest.raises(SignerError):
        signer.sign(b"after delete")
    ec_label = f"{label}-ec"
    store.generate(ec_label, SignatureAlgorithm.ES256)
    try:
        with pytest.raises(UnsupportedAlgorithmError, match="not an Ed25519"):
            store.load_ed25519(ec_label)
    finally:
        store.delete(ec_label)


def test_a_key_replaced_under_the_label_is_refused(store: PKCS11KeyStore, label: str) -> None:
    signer = store.generate_ed25519(label)
    signer.sign(b"bound")
    store.delete(label)
    store.generate_ed25519(label)
    with pytest.raises(SignerError, match="no longer the key"):
        signer.sign(b"to the new key")


def test_a_checkpoint_signed_on_the_token_verifies_with_holdca_and_go(
    tmp_path: Path, store: PKCS11KeyStore, label: str
) -> None:
    note = Ed25519NoteSigner("hold.example/log", store.generate_ed25519(label))
    log = build_log(tmp_path / "log", note, entries(300))
    verifier = Ed25519NoteVerifier.from_vkey(note.vkey)
    checkpoint, _ = open_checkpoint(log.read_checkpoint(), [verifier])
    assert checkpoint.size == 300
    other = Ed25519NoteSigner("hold.example/log", MemoryEd25519Signer.generate()).verifier()
    with pytest.raises(HoldCAError):
        open_checkpoint(log.read_checkpoint(), [other])

    require_tool("go")
    built = subprocess.run(
        ["bash", str(BUILD)], capture_output=True, text=True, timeout=600, check=False
    )
    if built.returncode != 0:
        missing(f"the Go log verifier (build failed: {built.stderr.strip()[-500:]})")
    goverify = built.stdout.strip().splitlines()[-1]
    done = run_goverify(goverify, log.root, note.vkey)
    assert done.returncode == 0, done.stderr
    wrong = run_goverify(goverify, log.root, other.vkey)
    assert wrong.returncode != 0


def test_init_log_with_pkcs11_keeps_the_log_key_on_the_token(
    tmp_path: Path,
    softhsm: SoftHSM,
    store: PKCS11KeyStore,
    label: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_environment(monkeypatch)
    ca_label = f"{label}-ca"
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin)
    pin_file.chmod(0o600)
    for name, value in {
        "HOLD_KEY_BACKEND": "pkcs11",
        "HOLD_PKCS11_MODULE": softhsm.module,
        "HOLD_PKCS11_TOKEN_LABEL": softhsm.token_label,
        "HOLD_PKCS11_PIN_FILE": str(pin_file),
        "HOLD_CA_KEY_LABEL": ca_label,
        "HOLD_LOG_KEY_LABEL": label,
    }.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "hold"
    try:
        data = run_json(
            capsys, "init", "--home", str(home), "--did", "did:web:hold.p11-log.example.com",
            "--country", "US", "--state", "CA", "--org", "P11 Log Hold", "--log",
        )  # fmt: skip
        log_key = store.load_ed25519(label)  # on the token, not in a file
        vkey = str(data["logVkey"])
        assert (
            Ed25519NoteVerifier.from_vkey(vkey).vkey
            == Ed25519NoteSigner("hold.p11-log.example.com/log", log_key).vkey
        )
        checkpoint, _ = open_checkpoint(
            (home / "log" / "checkpoint").read_bytes(), [Ed25519NoteVerifier.from_vkey(vkey)]
        )
        assert checkpoint.size == 0
        assert not list(home.rglob("*log*.pem"))  # no key file next to the hold
    finally:
        if ca_label in store.labels():
            store.delete(ca_label)
