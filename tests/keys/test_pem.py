"""PEMKeyStore specifics: file format, modes, atomic writes, typed errors.

Oracles: openssl (reads the PKCS#8 files, encrypted or not, and derives the public
key), cryptography (loads the files independently), the file system (modes, names).
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdca.errors import (
    InsecureKeyFileError,
    KeyExistsError,
    KeyFileCorruptError,
    KeyNotFoundError,
    KeyStoreError,
    UnsupportedAlgorithmError,
    WrongPassphraseError,
)
from holdca.keys import SignatureAlgorithm
from holdca.keys.pem import PEMKeyStore
from tests.keys.helpers import verify
from tests.tools import require_tool

PASSPHRASE = b"correct horse battery staple 7f3a"


def public_pem(key: object) -> bytes:
    assert hasattr(key, "public_bytes")
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


# --- layout and format -----------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    "algorithm",
    [
        SignatureAlgorithm.ES256,
        SignatureAlgorithm.ES384,
        SignatureAlgorithm.ES512,
        SignatureAlgorithm.PS256,
        SignatureAlgorithm.PS384,
    ],
    ids=lambda a: a.value,
)
def test_files_are_pkcs8_that_openssl_reads(
    tmp_path: Path, algorithm: SignatureAlgorithm, passphrase: bytes | None
) -> None:
    """<label>.pem, mode 0600, PKCS#8 (encrypted iff a passphrase); openssl derives the key."""
    openssl = require_tool("openssl")
    store = PEMKeyStore(tmp_path / "keys", passphrase=passphrase)
    signer = store.generate("ca", algorithm)
    path = tmp_path / "keys" / "ca.pem"
    assert store.path_of("ca") == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes().splitlines()[0]
    expected = b"ENCRYPTED PRIVATE KEY" if passphrase else b"PRIVATE KEY"
    assert first == b"-----BEGIN " + expected + b"-----"
    env = {**os.environ, "HOLDCA_TEST_PW": (passphrase or b"unused").decode()}
    out = subprocess.run(
        [openssl, "pkey", "-in", str(path), "-passin", "env:HOLDCA_TEST_PW", "-pubout"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == public_pem(signer.public_key)
    loaded = store.load("ca")
    assert loaded.algorithm is algorithm
    verify(signer, loaded.sign(b"m"), b"m")
    if passphrase:  # openssl agrees the passphrase is needed
        env["HOLDCA_TEST_PW"] = "wrong"
        bad = subprocess.run(
            [openssl, "pkey", "-in", str(path), "-passin", "env:HOLDCA_TEST_PW", "-pubout"],
            capture_output=True,
            env=env,
            check=False,
        )
        assert bad.returncode != 0


def test_cryptography_loads_what_the_store_wrote(tmp_path: Path) -> None:
    """The encrypted file decrypts with the passphrase in cryptography, to the same key."""
    store = PEMKeyStore(tmp_path, passphrase=PASSPHRASE)
    signer = store.generate("k")
    key = serialization.load_pem_private_key((tmp_path / "k.pem").read_bytes(), PASSPHRASE)
    assert public_pem(key.public_key()) == public_pem(signer.public_key)


def test_directory_created_0700(tmp_path: Path) -> None:
    """A missing directory (and parents) is created; the key directory itself is 0700."""
    target = tmp_path / "a" / "b" / "keys"
    old = os.umask(0)
    try:
        PEMKeyStore(target)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_directory_that_is_a_file(tmp_path: Path) -> None:
    """A path that is a file is a KeyStoreError."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(KeyStoreError, match="not a directory"):
        PEMKeyStore(tmp_path / "f")


def test_labels_ignore_other_files(tmp_path: Path) -> None:
    """Only <valid label>.pem regular files are keys: no temp files, dotfiles, dirs."""
    store = PEMKeyStore(tmp_path)
    store.generate("real")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".real.abc.tmp").write_text("x")
    (tmp_path / ".hidden.pem").write_text("x")
    (tmp_path / "sp ace.pem").write_text("x")
    (tmp_path / "dir.pem").mkdir()
    assert store.labels() == ["real"]


# --- atomic writes -----------------------------------------------------------------------


def test_write_sequence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temp file O_CREAT|O_EXCL mode 0600 in the same dir, fsync, link, dir fsync, no leftovers."""
    events: list[tuple[str, object]] = []
    real_open, real_fsync, real_link = os.open, os.fsync, os.link

    def spy_open(path: object, flags: int, mode: int = 0o777, **kw: object) -> int:
        fd = real_open(path, flags, mode, **kw)  # type: ignore[arg-type]
        events.append(("open", (Path(str(path)), flags, mode, fd)))
        return fd

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    def spy_link(src: object, dst: object) -> None:
        events.append(("link", (Path(str(src)), Path(str(dst)))))
        real_link(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "link", spy_link)
    PEMKeyStore(tmp_path).generate("k")
    monkeypatch.undo()

    kinds = [e[0] for e in events]
    assert kinds == ["open", "fsync", "link", "open", "fsync"]
    tmp, flags, mode, _fd = events[0][1]  # type: ignore[misc]
    assert tmp.parent == tmp_path
    assert flags & os.O_CREAT
    assert flags & os.O_EXCL
    assert flags & os.O_NOFOLLOW
    assert mode == 0o600
    assert events[1][1] is False  # the file
    assert events[2][1] == (tmp, tmp_path / "k.pem")
    assert events[4][1] is True  # the directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If fsync fails, no key file and no temp file remain; the error is a KeyStoreError."""

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    store = PEMKeyStore(tmp_path)
    with pytest.raises(KeyStoreError, match="cannot write key 'k'") as info:
        store.generate("k")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert store.labels() == []


def test_race_never_replaces_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that appears between the existence check and the publish is not replaced."""
    store = PEMKeyStore(tmp_path)
    other = PEMKeyStore(tmp_path)
    original = other.generate("k")
    before = (tmp_path / "k.pem").read_bytes()
    monkeypatch.setattr(Path, "exists", lambda self: False)  # lose the race
    with pytest.raises(KeyExistsError):
        store.generate("k")
    monkeypatch.undo()
    assert (tmp_path / "k.pem").read_bytes() == before
    assert public_pem(store.load("k").public_key) == public_pem(original.public_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]


def test_without_hard_links_falls_back_to_replace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system without link(): os.replace publishes, and overwrite is still refused."""
    replaced: list[object] = []
    real_replace = os.replace

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    def spy_replace(src: object, dst: object) -> None:
        replaced.append(dst)
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "replace", spy_replace)
    store = PEMKeyStore(tmp_path)
    signer = store.generate("k")
    assert replaced == [tmp_path / "k.pem"]
    with pytest.raises(KeyExistsError):
        store.generate("k")
    assert public_pem(store.load("k").public_key) == public_pem(signer.public_key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]


# --- refusing to load ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644, 0o666])
def test_insecure_modes_refused(tmp_path: Path, mode: int) -> None:
    """A key file accessible to group or others is refused, naming the file and mode."""
    store = PEMKeyStore(tmp_path)
    store.generate("k")
    (tmp_path / "k.pem").chmod(mode)
    with pytest.raises(InsecureKeyFileError, match=f"mode {mode:04o}"):
        store.load("k")
    (tmp_path / "k.pem").chmod(0o400)  # owner-only read is fine
    store.load("k")


def test_symlink_and_non_regular_refused(tmp_path: Path) -> None:
    """A symlinked key file or a directory named <label>.pem is refused."""
    store = PEMKeyStore(tmp_path / "keys")
    store.generate("k")
    (tmp_path / "keys" / "link.pem").symlink_to(tmp_path / "keys" / "k.pem")
    with pytest.raises(InsecureKeyFileError, match="symlink"):
        store.load("link")
    (tmp_path / "keys" / "d.pem").mkdir(mode=0o700)
    with pytest.raises(InsecureKeyFileError, match="not a regular file"):
        store.load("d")


def test_missing_label(tmp_path: Path) -> None:
    """No file: KeyNotFoundError naming the label."""
    with pytest.raises(KeyNotFoundError, match="'nope'"):
        PEMKeyStore(tmp_path).load("nope")


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["plain", "encrypted"])
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_files_are_corrupt(
    tmp_path_factory: pytest.TempPathFactory, passphrase: bytes | None, data: st.DataObject
) -> None:
    """Any truncation of a key file (short of its final newline) is KeyFileCorruptError."""
    directory = tmp_path_factory.mktemp("trunc")
    store = PEMKeyStore(directory, passphrase=passphrase)
    store.generate("k")
    content = (directory / "k.pem").read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(content.rstrip()) - 1), label="cut")
    write_private(directory / "k.pem", content[:cut])
    with pytest.raises(KeyFileCorruptError):
        store.load("k")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage\n",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAMCAQA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
    ],
    ids=["empty", "garbage", "bad-base64", "bad-der", "bad-encrypted-der", "certificate"],
)
def test_corrupt_files(tmp_path: Path, content: bytes) -> None:
    """Damaged armour or ASN.1 is KeyFileCorruptError, with or without a passphrase."""
    write_private(tmp_path / "k.pem", content)
    for passphrase in (None, PASSPHRASE):
        with pytest.raises(KeyFileCorruptError):
            PEMKeyStore(tmp_path, passphrase=passphrase).load("k")


def test_wrong_and_missing_passphrase(tmp_path: Path) -> None:
    """Wrong or missing passphrase: WrongPassphraseError; extra passphrase: InsecureKeyFileError."""
    PEMKeyStore(tmp_path, passphrase=PASSPHRASE).generate("enc")
    PEMKeyStore(tmp_path).generate("plain")
    with pytest.raises(WrongPassphraseError, match="does not decrypt"):
        PEMKeyStore(tmp_path, passphrase=b"wrong").load("enc")
    with pytest.raises(WrongPassphraseError, match="passphrase is needed"):
        PEMKeyStore(tmp_path).load("enc")
    with pytest.raises(InsecureKeyFileError, match="not encrypted"):
        PEMKeyStore(tmp_path, passphrase=PASSPHRASE).load("plain")
    assert PEMKeyStore(tmp_path, passphrase=PASSPHRASE).load("enc").algorithm.value == "ES256"


def test_errors_are_distinct() -> None:
    """The four load failures are different classes (all KeyStoreErrors)."""
    kinds = {KeyFileCorruptError, WrongPassphraseError, InsecureKeyFileError, KeyNotFoundError}
    assert len(kinds) == 4
    assert all(issubclass(k, KeyStoreError) for k in kinds)
    for a in kinds:
        for b in kinds - {a}:
            assert not issubclass(a, b)


def test_unsupported_key_types(tmp_path: Path) -> None:
    """Ed25519 and secp256k1 keys are UnsupportedAlgorithmError, not a crash."""
    plain = serialization.NoEncryption()
    for name, key in (
        ("ed", ed25519.Ed25519PrivateKey.generate()),
        ("k1", ec.generate_private_key(ec.SECP256K1())),
    ):
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain
        )
        write_private(tmp_path / f"{name}.pem", data)
        with pytest.raises(UnsupportedAlgorithmError):
            PEMKeyStore(tmp_path).load(name)


def test_passphrase_validation(tmp_path: Path) -> None:
    """The passphrase is bytes and not empty."""
    with pytest.raises(TypeError):
        PEMKeyStore(tmp_path, passphrase="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        PEMKeyStore(tmp_path, passphrase=b"")


def test_repr_hides_passphrase(tmp_path: Path) -> None:
    """repr/str/vars of the store never show the passphrase."""
    store = PEMKeyStore(tmp_path, passphrase=PASSPHRASE)
    assert store.encrypted
    shown = repr(store) + str(store) + repr(vars(store))
    assert PASSPHRASE.decode() not in shown
    assert "encrypted" in repr(store)
