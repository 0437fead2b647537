"""Signed notes and checkpoints, the entry encoding, and Ed25519 keys in the key stores."""

from __future__ import annotations

import base64
import datetime
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from holdca.errors import (
    KeyExistsError,
    SignatureInvalidError,
    TlogError,
    UnsupportedAlgorithmError,
)
from holdca.keys import MemoryEd25519Signer, MemoryKeyStore, ed25519_public_bytes
from holdca.keys.pem import PEMKeyStore
from holdca.tlog import (
    CertificateEntry,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    LogState,
    NoteSignature,
    RevocationEntry,
    append,
    open_checkpoint,
    parse_entry,
    sign_checkpoint,
)
from tests.tlog.conftest import ORIGIN
from tests.tools import require_tool


def test_key_id_and_vkey() -> None:
    """keyID and the verifier key string follow signed-note, computed here from the spec."""
    key = MemoryEd25519Signer.generate()
    signer = Ed25519NoteSigner(ORIGIN, key)
    pub = ed25519_public_bytes(key.public_key)
    key_id = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + pub).digest()[:4]
    assert signer.key_id == key_id
    blob = base64.b64encode(b"\x01" + pub).decode()
    assert signer.vkey == f"{ORIGIN}+{key_id.hex()}+{blob}"
    with pytest.raises(TlogError, match="key ID"):
        Ed25519NoteVerifier.from_vkey(f"other+{key_id.hex()}+{signer.vkey.split('+', 2)[2]}")


def test_checkpoint_bytes_and_foreign_signatures() -> None:
    """The checkpoint text is origin, size, base64 root; foreign lines survive, bad ones fail."""
    key = MemoryEd25519Signer.generate()
    signer = Ed25519NoteSigner(ORIGIN, key)
    state, _ = append(LogState(), [b"a", b"b", b"c"])
    note = sign_checkpoint(state, signer)
    text, _, sigs = note.decode().partition("\n\n")
    assert text == f"{ORIGIN}\n3\n{base64.b64encode(state.root).decode()}"
    assert sigs.startswith(f"\u2014 {ORIGIN} ")
    raw = base64.b64decode(sigs.split()[2])
    assert raw[:4] == signer.key_id
    key.public_key.verify(raw[4:], (text + "\n").encode())  # cryptography as the oracle
    # a witness cosignature line (type 0x04, unknown here) is kept, not fatal
    witness = NoteSignature("witness.example", b"\x04\x03\x02\x01", b"\x00" * 72)
    with_witness = note + witness.line().encode()
    checkpoint, parsed = open_checkpoint(with_witness, [signer.verifier()], origin=ORIGIN)
    assert checkpoint.size == 3
    assert parsed.signatures[-1] == witness
    assert parsed.encode() == with_witness
    tampered = note.replace(b"\n3\n", b"\n4\n")
    with pytest.raises(SignatureInvalidError):
        open_checkpoint(tampered, [signer.verifier()])
    with pytest.raises(TlogError, match="origin"):
        open_checkpoint(note, [signer.verifier()], origin="other")
    for bad in [b"no blank line\n", note[:-1], note.replace(b"\xe2\x80\x94", b"-"), b"\x00" + note]:
        with pytest.raises(TlogError):
            open_checkpoint(bad, [signer.verifier()])


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "did:plc:abc")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def _entry() -> CertificateEntry:
    return CertificateEntry(
        certificate=_certificate(),
        did=DID,
        record_uri=f"at://{DID}/io.atcr.manifest/3jzfcijpj2z2a",
        commit_cid="bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
        commit_rev="3jzfcijpj2z2a",
        manifest_digest="sha256:" + "ab" * 32,
        repository="atcr.io/alice/app",
    )


def test_entries_round_trip_and_layout() -> None:
    """Certificate and revocation entries re-parse to themselves; the bytes are the TLV."""
    entry = _entry()
    data = entry.encode()
    assert data[:2] == b"\x01\x01"
    assert data[2] == 1
    assert int.from_bytes(data[3:5], "big") == len(entry.certificate)
    assert data[5 : 5 + len(entry.certificate)] == entry.certificate
    assert parse_entry(data) == entry
    revocation = RevocationEntry(serial=0x1234, did=DID, reason="keyCompromise", revoked_at=1)
    raw = revocation.encode()
    assert raw[:8] == b"\x01\x02\x01\x00\x02\x12\x34\x02"
    assert parse_entry(raw) == revocation


def test_malformed_entries() -> None:
    """Truncation, trailing bytes, unknown version/kind, reordering, non-canonical: TlogError."""
    data = _entry().encode()
    revocation = RevocationEntry(serial=5, did=DID, reason="superseded", revoked_at=9).encode()
    bad = [
        b"",
        data[:-1],
        data + b"\x00",
        b"\x02" + data[1:],
        data[:1] + b"\x09" + data[2:],
        revocation.replace(b"\x01\x00\x01\x05", b"\x01\x00\x02\x00\x05"),  # leading zero serial
        revocation.replace(b"superseded", b"superseded!"),
    ]
    for b in bad:
        with pytest.raises(TlogError):
            parse_entry(b)
    with pytest.raises(TlogError, match="repository"):
        CertificateEntry(**{**_entry().__dict__, "record_uri": "at://did:plc:other/a.b.c/x"})
    with pytest.raises(TlogError):
        CertificateEntry(**{**_entry().__dict__, "certificate": b"not der"})


def test_ed25519_in_memory_and_pem(tmp_path: Path) -> None:
    """Ed25519 keys in both stores; load() still refuses them; openssl verifies a signature."""
    memory = MemoryKeyStore()
    key = memory.generate_ed25519("log")
    assert memory.load_ed25519("log") is key
    assert memory.labels() == ["log"]
    with pytest.raises(UnsupportedAlgorithmError):
        memory.load("log")
    with pytest.raises(KeyExistsError):
        memory.generate("log")
    memory.generate("ca")
    with pytest.raises(UnsupportedAlgorithmError):
        memory.load_ed25519("ca")
    memory.delete("log")
    assert memory.labels() == ["ca"]

    store = PEMKeyStore(tmp_path, passphrase=b"correct horse")
    signer = store.generate_ed25519("log")
    assert (tmp_path / "log.pem").stat().st_mode & 0o777 == 0o600
    again = store.load_ed25519("log")
    assert ed25519_public_bytes(again.public_key) == ed25519_public_bytes(signer.public_key)
    with pytest.raises(UnsupportedAlgorithmError):
        store.load("log")
    store.generate("ca")
    with pytest.raises(UnsupportedAlgorithmError):
        store.load_ed25519("ca")

    openssl = require_tool("openssl")
    message = tmp_path / "msg"
    message.write_bytes(b"checkpoint text\n")
    (tmp_path / "sig").write_bytes(again.sign(message.read_bytes()))
    pub = tmp_path / "pub.pem"
    pub.write_bytes(
        signer.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    done = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin",
         "-in", str(message), "-sigfile", str(tmp_path / "sig")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # openssl reads the encrypted PKCS#8 file as an Ed25519 key with the same public half
    shown = subprocess.run(
        [openssl, "pkey", "-in", str(tmp_path / "log.pem"), "-passin", "pass:correct horse",
         "-pubout"],
        capture_output=True, check=True,
    )  # fmt: skip
    assert shown.stdout == pub.read_bytes()
    with pytest.raises(TypeError):
        MemoryEd25519Signer(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]
