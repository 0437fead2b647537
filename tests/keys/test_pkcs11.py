"""PKCS11KeyStore specifics on SoftHSM: key attributes, typed errors, recovery, threads.

Oracles: python-pkcs11 reading the token's objects directly (attributes), cryptography
(verifies every signature, including the 8 x 500 signed in a child process), the child
process's exit status (a SIGSEGV is a failure, not a dead pytest worker).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import threading
import types
import uuid
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pkcs11.util.ec import encode_named_curve_parameters

import holdca.keys
from holdca.errors import (
    KeyExistsError,
    KeyStoreError,
    PINIncorrectError,
    SignerError,
    TokenNotFoundError,
    UnsupportedAlgorithmError,
)
from holdca.keys import SignatureAlgorithm, _p11
from holdca.keys._secret import Secret
from holdca.keys.pkcs11 import PKCS11KeyStore, PKCS11Signer
from tests.conftest import SoftHSM
from tests.keys.helpers import require_algorithm, verify

pytestmark = pytest.mark.hsm

CHILD = Path(__file__).with_name("p11_child.py")
ROOT = Path(__file__).parents[2]


@pytest.fixture
def store(softhsm: SoftHSM) -> PKCS11KeyStore:
    """A store on the session's token (this module's own fixture, not the contract's)."""
    return softhsm.keystore()


@pytest.fixture
def label(request: pytest.FixtureRequest, store: PKCS11KeyStore) -> Any:
    """A fresh label, deleted after the test if a key is left under it."""
    name = f"p-{uuid.uuid4().hex[:16]}"
    yield name
    if name in store.labels():
        store.delete(name)


def run_child(softhsm: SoftHSM, tmp_path: Path, *args: str, timeout: int = 300) -> Any:
    """Run p11_child.py in a fresh process; fail on any abnormal exit (SIGSEGV = -11)."""
    out = tmp_path / "child.json"
    env = softhsm.env(
        HOLDCA_P11_MODULE=softhsm.module,
        HOLDCA_P11_TOKEN=softhsm.token_label,
        HOLDCA_P11_PIN=softhsm.pin,
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, str(CHILD), *args, str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"child exited {proc.returncode}: {proc.stderr[-3000:]}"
    assert softhsm.pin not in proc.stdout + proc.stderr
    return json.loads(out.read_text())


def p11_objects(store: PKCS11KeyStore, label: str) -> dict[str, Any]:
    """The token's private and public key objects under ``label``, via python-pkcs11 itself."""
    lib = pkcs11.lib(store.module_path)  # the same lib object holdca loaded
    token = lib.get_token(token_label=store.token_label)
    session = token.open(rw=False)  # login is per application: already logged in
    try:
        private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
        public = session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, label=label)
        a = pkcs11.Attribute
        names = (
            "TOKEN",
            "PRIVATE",
            "SENSITIVE",
            "EXTRACTABLE",
            "ALWAYS_SENSITIVE",
            "NEVER_EXTRACTABLE",
            "SIGN",
            "DECRYPT",
            "DERIVE",
            "UNWRAP",
            "ID",
            "LABEL",
        )
        result = {f"private.{n}": private[getattr(a, n)] for n in names}
        result.update({f"public.{n}": public[getattr(a, n)] for n in ("TOKEN", "ID", "LABEL")})
        # The secret part: CKA_VALUE (EC) or CKA_PRIVATE_EXPONENT (RSA) must be unreadable.
        result["value_readable"] = None
        for secret in (a.VALUE, a.PRIVATE_EXPONENT):
            try:
                private[secret]
            except pkcs11.exceptions.AttributeSensitive:
                result["value_readable"] = False
            except pkcs11.exceptions.AttributeTypeInvalid:
                continue
            else:
                result["value_readable"] = True
        return result
    finally:
        session.close()


# --- keys on the token ----------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm", [SignatureAlgorithm.ES256, SignatureAlgorithm.PS256], ids=lambda a: a.value
)
def test_generated_keys_are_non_extractable_token_objects(
    store: PKCS11KeyStore, label: str, algorithm: SignatureAlgorithm
) -> None:
    """CKA_TOKEN, PRIVATE, SENSITIVE, not EXTRACTABLE, sign-only, with CKA_LABEL and CKA_ID."""
    require_algorithm(store, algorithm)
    signer = store.generate(label, algorithm)
    attrs = p11_objects(store, label)
    assert attrs["private.TOKEN"] is True
    assert attrs["private.PRIVATE"] is True
    assert attrs["private.SENSITIVE"] is True
    assert attrs["private.EXTRACTABLE"] is False
    assert attrs["private.ALWAYS_SENSITIVE"] is True
    assert attrs["private.NEVER_EXTRACTABLE"] is True
    assert attrs["private.SIGN"] is True
    assert attrs["private.DECRYPT"] is False
    assert attrs["private.DERIVE"] is False
    assert attrs["private.UNWRAP"] is False
    assert attrs["value_readable"] is False
    assert attrs["private.LABEL"] == attrs["public.LABEL"] == label
    assert attrs["private.ID"] == attrs["public.ID"] == signer.key_id
    assert len(signer.key_id) == 16
    assert attrs["public.TOKEN"] is True
    assert store.load(label).key_id == signer.key_id


def test_ecdsa_signs_a_local_digest(store: PKCS11KeyStore, label: str) -> None:
    """P-384: the DER signature verifies over the message and, prehashed, over its digest."""
    signer = store.generate(label, SignatureAlgorithm.ES384)
    signature = signer.sign(b"message")
    public = signer.public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"message", ec.ECDSA(hashes.SHA384()))
    digest = hashes.Hash(hashes.SHA384())
    digest.update(b"message")
    public.verify(signature, digest.finalize(), ec.ECDSA(Prehashed(hashes.SHA384())))


def test_rsa_pss_384(store: PKCS11KeyStore, label: str) -> None:
    """PS384 (RSA-3072, CKM_RSA_PKCS_PSS) when the token supports it: it verifies."""
    require_algorithm(store, SignatureAlgorithm.PS384)  # SoftHSM 2.6 has CKM_RSA_PKCS_PSS
    signer = store.generate(label, SignatureAlgorithm.PS384)
    assert signer.public_key.key_size == 3072
    verify(signer, signer.sign(b"x"), b"x")


# --- typed errors ---------------------------------------------------------------------


def test_missing_token(softhsm: SoftHSM) -> None:
    """An unknown token label is TokenNotFoundError naming it."""
    with pytest.raises(TokenNotFoundError, match="'no-such-token'"):
        PKCS11KeyStore(softhsm.module, "no-such-token", softhsm.pin)


def test_missing_module(tmp_path: Path) -> None:
    """A missing path and a file that is not a PKCS#11 module are KeyStoreErrors naming it."""
    missing = str(tmp_path / "nope.so")
    with pytest.raises(KeyStoreError, match=re.escape(missing)) as info:
        PKCS11KeyStore(missing, "t", "1234")
    assert type(info.value) is KeyStoreError
    bogus = tmp_path / "bogus.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(KeyStoreError, match=re.escape(str(bogus))) as info:
        PKCS11KeyStore(str(bogus), "t", "1234")
    assert isinstance(info.value.__cause__, pkcs11.exceptions.PKCS11Error | OSError)


def test_wrong_pin_in_a_fresh_process(softhsm: SoftHSM, tmp_path: Path) -> None:
    """The token itself rejects a wrong PIN: PINIncorrectError, the message without the PIN."""
    result = run_child(softhsm, tmp_path, "wrong-pin")
    assert result["error"] == "PINIncorrectError"
    assert "00000000" not in result["message"]
    assert result["then_right_pin_works"] is True


def test_wrong_pin_in_this_process(softhsm: SoftHSM, store: PKCS11KeyStore) -> None:
    """A second store with another PIN is refused, not let in on the existing login."""
    with pytest.raises(PINIncorrectError):
        PKCS11KeyStore(softhsm.module, softhsm.token_label, softhsm.pin + "0")
    assert isinstance(softhsm.keystore().labels(), list)


def test_python_pkcs11_missing(monkeypatch: pytest.MonkeyPatch, softhsm: SoftHSM) -> None:
    """Without python-pkcs11 the constructor says how to install it."""
    monkeypatch.setitem(sys.modules, "holdca.keys._p11", None)
    monkeypatch.delattr(holdca.keys, "_p11", raising=False)
    with pytest.raises(KeyStoreError, match=r"pip install -e '\.\[pkcs11\]'"):
        PKCS11KeyStore(softhsm.module, softhsm.token_label, softhsm.pin)


def test_import_is_lazy(softhsm: SoftHSM, tmp_path: Path) -> None:
    """import holdca.keys.pkcs11 does not import python-pkcs11 (an optional extra)."""
    assert run_child(softhsm, tmp_path, "lazy-import") == {"pkcs11_imported": False}


def test_unsupported_mechanism(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token without CKM_RSA_PKCS_PSS: generate/load of PS keys are UnsupportedAlgorithmError."""
    store.generate(label, SignatureAlgorithm.PS256)
    token = store._token
    without = frozenset(m for m in token.mechanisms if m != pkcs11.Mechanism.RSA_PKCS_PSS)
    monkeypatch.setattr(token, "mechanisms", without)
    assert not store.supports(SignatureAlgorithm.PS256)
    assert store.supports(SignatureAlgorithm.ES256)
    with pytest.raises(UnsupportedAlgorithmError, match="PS256"):
        store.generate(label + "x", SignatureAlgorithm.PS256)
    with pytest.raises(UnsupportedAlgorithmError, match="PS256"):
        store.load(label)


def test_unsupported_curve_on_token(store: PKCS11KeyStore, label: str) -> None:
    """A secp256k1 key put on the token by other software: load says UnsupportedAlgorithm."""
    lib = pkcs11.lib(store.module_path)
    session = lib.get_token(token_label=store.token_label).open(rw=True)
    try:
        params = session.create_domain_parameters(
            pkcs11.KeyType.EC,
            {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256k1")},
            local=True,
        )
        params.generate_keypair(store=True, label=label, id=b"k1")
    finally:
        session.close()
    with pytest.raises(UnsupportedAlgorithmError, match="secp256k1"):
        store.load(label)


def test_duplicate_labels_are_refused(store: PKCS11KeyStore, label: str) -> None:
    """Two private keys under one label (made by other software): load refuses to guess."""
    lib = pkcs11.lib(store.module_path)
    session = lib.get_token(token_label=store.token_label).open(rw=True)
    try:
        for key_id in (b"a", b"b"):
            params = session.create_domain_parameters(
                pkcs11.KeyType.EC,
                {pkcs11.Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                local=True,
            )
            params.generate_keypair(store=True, label=label, id=key_id)
    finally:
        session.close()
    with pytest.raises(KeyStoreError, match="2 private keys"):
        store.load(label)
    with pytest.raises(KeyExistsError):
        store.generate(label)


def test_backend_failures_are_typed_and_chained(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PKCS#11 failure is KeyStoreError (store) / SignerError (sign), from the pkcs11 error."""
    signer = store.generate(label)
    signer.sign(b"bind this thread's session to the key")

    def broken(*args: object, **kwargs: object) -> object:
        raise pkcs11.exceptions.DeviceError()

    monkeypatch.setattr(type(store._ops), "objects", broken)
    with pytest.raises(KeyStoreError, match="listing keys failed") as info:
        store.labels()
    assert isinstance(info.value.__cause__, pkcs11.exceptions.DeviceError)

    class FailingKey:
        def sign(self, *args: object, **kwargs: object) -> bytes:
            raise pkcs11.exceptions.FunctionFailed()

    signer._local.key = FailingKey()
    with pytest.raises(SignerError, match="failed to sign") as info2:
        signer.sign(b"x")
    assert isinstance(info2.value.__cause__, pkcs11.exceptions.FunctionFailed)


def test_generate_race_keeps_the_older_key(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another process wins the race to a label, our new key is destroyed, theirs kept."""
    first = store.generate(label)
    ops_type = type(store._ops)
    real = ops_type.objects
    calls = {"n": 0}

    def lose_the_check(self: Any, token: Any, session: Any, **attrs: Any) -> list[Any]:
        calls["n"] += 1
        if calls["n"] == 1:  # the existence check does not see the other key
            return []
        return real(self, token, session, **attrs)

    monkeypatch.setattr(ops_type, "objects", lose_the_check)
    with pytest.raises(KeyExistsError, match="concurrently"):
        store.generate(label)
    monkeypatch.undo()
    attrs = p11_objects(store, label)  # exactly one pair left: the first one
    assert attrs["private.ID"] == first.key_id
    assert store.load(label).key_id == first.key_id


# --- sessions: recovery and never the wrong key ----------------------------------------


def test_recovers_when_sessions_are_closed_under_it(store: PKCS11KeyStore, label: str) -> None:
    """C_CloseAllSessions (a token reset) loses every session and the login: one retry heals."""
    signer = store.generate(label)
    verify(signer, signer.sign(b"before"), b"before")
    relogins = store._token.relogins
    store._token.close_all_sessions()
    verify(signer, signer.sign(b"after"), b"after")
    assert store._token.relogins == relogins + 1
    store._token.close_all_sessions()
    assert label in store.labels()  # store operations recover too
    store._token.close_all_sessions()
    other = store.generate(label + "-2")
    store.delete(label + "-2")
    assert other.key_id != signer.key_id


def test_gives_up_clearly_after_one_retry(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If re-opening does not help, sign raises SignerError from the PKCS#11 error."""
    signer = store.generate(label)
    signer.sign(b"x")
    store._token.close_all_sessions()
    monkeypatch.setattr(store._token, "recover", lambda session: None)  # recovery "fails"
    with pytest.raises(SignerError, match="failed again after re-opening") as info:
        signer.sign(b"x")
    assert isinstance(info.value.__cause__, pkcs11.exceptions.PKCS11Error)
    monkeypatch.undo()
    store._token.recover(store._token.session())
    verify(signer, signer.sign(b"y"), b"y")


def test_relogin_with_a_bad_pin_fails_clearly(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost login that cannot be restored is a SignerError from PINIncorrectError."""
    signer = store.generate(label)
    signer.sign(b"x")
    store._token.close_all_sessions()
    monkeypatch.setattr(store._token, "pin", Secret(b"00000000"))
    with pytest.raises(SignerError, match="cannot log in") as info:
        signer.sign(b"x")
    assert isinstance(info.value.__cause__, PINIncorrectError)
    monkeypatch.undo()
    verify(signer, signer.sign(b"y"), b"y")


def test_token_removed_during_recovery(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C_OpenSession failing while recovering (token removed): SignerError / KeyStoreError."""
    signer = store.generate(label)
    signer.sign(b"x")

    class Removed:
        def open(self, *args: object, **kwargs: object) -> object:
            raise pkcs11.exceptions.TokenNotPresent()

    store._token.close_all_sessions()
    monkeypatch.setattr(store._token, "token", Removed())
    with pytest.raises(SignerError) as info:
        signer.sign(b"x")
    assert isinstance(info.value.__cause__, KeyStoreError | pkcs11.exceptions.PKCS11Error)
    with pytest.raises(KeyStoreError):
        store.labels()
    monkeypatch.undo()  # the token is back
    verify(signer, signer.sign(b"y"), b"y")
    assert label in store.labels()


def test_never_signs_with_a_replaced_key(store: PKCS11KeyStore, label: str) -> None:
    """Delete + regenerate under the same label: the old signer refuses, in every thread."""
    signer = store.generate(label)
    signer.sign(b"x")
    store.delete(label)
    replacement = store.generate(label)
    with pytest.raises(SignerError, match="no longer the key"):
        signer.sign(b"x")
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            signer.sign(b"x")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], SignerError)
    verify(replacement, store.load(label).sign(b"z"), b"z")


def test_deleting_a_key_invalidates_cached_handles(store: PKCS11KeyStore, label: str) -> None:
    """Even if a module reused the deleted key's handle for the new key, the signer re-checks."""
    signer = store.generate(label)
    signer.sign(b"x")
    store.delete(label)
    replacement = store.generate(label)
    replacement.sign(b"bind the replacement in this thread")
    signer._local.key = replacement._local.key  # what a reused object handle would do
    with pytest.raises(SignerError, match="no longer the key"):
        signer.sign(b"x")


def test_first_signature_after_lookup_is_verified(
    store: PKCS11KeyStore, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if the lookup were fooled, a signature that does not verify is never returned."""
    store.generate(label)
    impostor = ec.generate_private_key(ec.SECP256R1()).public_key()
    monkeypatch.setattr(type(store._ops), "public_key", lambda self, obj: impostor)
    fooled = store.load(label)  # believes the token key is the impostor's
    assert fooled.public_key is impostor
    with pytest.raises(SignerError, match="does not verify"):
        fooled.sign(b"x")


def test_each_thread_has_its_own_session_and_one_login(store: PKCS11KeyStore) -> None:
    """Sessions are per thread (closed when the thread ends); the login is not repeated."""
    token = store._token
    relogins = token.relogins
    mine = token.session()
    assert token.session() is mine
    seen: list[Any] = []

    def grab() -> None:
        seen.append(token.session())

    t = threading.Thread(target=grab)
    t.start()
    t.join()
    assert seen[0] is not mine
    assert seen[0].handle != mine.handle
    assert token.logged_in(mine)
    del t
    gc.collect()
    assert not token.alive(seen[0])  # closed with its thread
    assert token.alive(mine)
    assert token.relogins == relogins


def test_module_reinitialised_once(softhsm: SoftHSM) -> None:
    """One re-initialisation per module per process, however many stores."""
    stores = [softhsm.keystore() for _ in range(3)]
    assert all(s.os_locking for s in stores)
    assert len({id(s._module) for s in stores}) == 1
    assert _p11.REINITIALISED[stores[0].module_path] == 1
    assert "os-locking" in repr(stores[0])


# --- threads (child processes, so that a crash is a failure) ------------------------------


def check_child_signatures(result: dict[str, Any], expected: int) -> None:
    assert result["errors"] == []
    public = serialization.load_pem_public_key(result["public_key"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    pairs = result["signatures"]
    assert len(pairs) == expected
    assert len({m for m, _ in pairs}) == expected
    for message, signature in pairs:
        public.verify(bytes.fromhex(signature), bytes.fromhex(message), ec.ECDSA(hashes.SHA256()))
    message, signature = pairs[0]
    with pytest.raises(InvalidSignature):
        public.verify(bytes.fromhex(signature), b"tampered", ec.ECDSA(hashes.SHA256()))


@pytest.mark.slow
def test_eight_threads_five_hundred_signatures(softhsm: SoftHSM, tmp_path: Path) -> None:
    """8 threads x 500 signatures through one signer, in a child process: no crash, all verify."""
    result = run_child(softhsm, tmp_path, "threads", "8", "500")
    assert result["os_locking"] is True
    check_child_signatures(result, 8 * 500)


def test_module_loaded_by_others_is_serialised(softhsm: SoftHSM, tmp_path: Path) -> None:
    """If python-pkcs11 loaded the module first, holdca serialises (and says so): no crash."""
    result = run_child(softhsm, tmp_path, "preloaded")
    assert result["os_locking"] is False
    assert any("serialising all calls" in line for line in result["log"])
    check_child_signatures(result, 4 * 200)


def test_os_locking_can_be_declined(softhsm: SoftHSM, tmp_path: Path) -> None:
    """os_locking=False: every call serialised, threads still safe."""
    result = run_child(softhsm, tmp_path, "no-os-locking")
    assert result["os_locking"] is False
    check_child_signatures(result, 4 * 200)


def test_signer_type_and_repr(store: PKCS11KeyStore, label: str) -> None:
    """generate/load return PKCS11Signer; reprs name label and token only."""
    signer = store.generate(label)
    assert isinstance(signer, PKCS11Signer)
    assert signer.label == label
    assert repr(signer) == f"<PKCS11Signer ES256 {label!r} on {store.token_label!r}>"
    assert os.path.isabs(store.module_path)


# --- the ctypes layer, with stand-in function tables ----------------------------------------


class FakeFunctions:
    """A CK_FUNCTION_LIST stand-in that records calls and returns scripted CKR codes."""

    def __init__(self, finalize: int = 0, init_locking: int = 0, init_plain: int = 0) -> None:
        self.calls: list[str] = []
        self._finalize, self._locking, self._plain = finalize, init_locking, init_plain
        self.login_rv = 0

    def C_Finalize(self, arg: object) -> int:
        self.calls.append("C_Finalize")
        return self._finalize

    def C_Initialize(self, arg: object) -> int:
        if arg is None:
            self.calls.append("C_Initialize(NULL)")
            return self._plain
        self.calls.append("C_Initialize(OS_LOCKING)")
        return self._locking

    def C_Login(self, handle: int, user: int, pin: bytes, length: int) -> int:
        self.calls.append("C_Login")
        return self.login_rv


def test_reinitialise_uses_os_locking() -> None:
    """C_Finalize then C_Initialize with CKF_OS_LOCKING_OK; counted per module path."""
    fake = FakeFunctions()
    before = _p11.REINITIALISED.get("/fake.so", 0)
    assert _p11._reinitialise_with_os_locking("/fake.so", fake) is True
    assert fake.calls == ["C_Finalize", "C_Initialize(OS_LOCKING)"]
    assert _p11.REINITIALISED["/fake.so"] == before + 1


def test_reinitialise_falls_back_when_the_module_cannot_lock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CKR_CANT_LOCK: the module is initialised as python-pkcs11 had it, and calls serialised."""
    fake = FakeFunctions(init_locking=_p11.CKR_CANT_LOCK)
    assert _p11._reinitialise_with_os_locking("/fake.so", fake) is False
    assert fake.calls == ["C_Finalize", "C_Initialize(OS_LOCKING)", "C_Initialize(NULL)"]
    assert "serialising all calls" in caplog.text


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (FakeFunctions(finalize=0x5), "C_Finalize"),
        (FakeFunctions(init_locking=0x6, init_plain=0x6), "could not be initialised again"),
    ],
)
def test_reinitialise_failures_are_keystore_errors(fake: FakeFunctions, message: str) -> None:
    """A module that cannot be finalised or initialised again is a KeyStoreError naming it."""
    with pytest.raises(KeyStoreError, match=message) as info:
        _p11._reinitialise_with_os_locking("/fake.so", fake)
    assert "/fake.so" in str(info.value)


@pytest.mark.parametrize(
    ("rv", "first", "error", "message"),
    [
        (_p11.CKR_PIN_INCORRECT, True, PINIncorrectError, "rejected the PIN"),
        (_p11.CKR_PIN_LEN_RANGE, True, PINIncorrectError, "rejected the PIN"),
        (_p11.CKR_PIN_LOCKED, True, KeyStoreError, "locked"),
        (_p11.CKR_PIN_EXPIRED, True, KeyStoreError, "expired"),
        (_p11.CKR_USER_ALREADY_LOGGED_IN, True, KeyStoreError, "cannot check the PIN"),
        (0x30, True, KeyStoreError, "CKR 0x30"),
        (_p11.CKR_USER_ALREADY_LOGGED_IN, False, None, ""),
        (0, True, None, ""),
    ],
)
def test_login_results(rv: int, first: bool, error: type[Exception] | None, message: str) -> None:
    """C_Login return codes map to typed errors; the session of a failed login is closed."""
    closed: list[int] = []
    session = types.SimpleNamespace(handle=42, close=lambda: closed.append(42))
    fake = FakeFunctions()
    fake.login_rv = rv
    stub = types.SimpleNamespace(
        module=types.SimpleNamespace(functions=fake, guard=contextlib.nullcontext()),
        token=types.SimpleNamespace(open=lambda rw: session),
        pin=Secret(b"135790"),
        label="t",
    )
    if error is None:
        assert _p11.Token._login(stub, first=first) is session  # type: ignore[arg-type]
        assert closed == []
        return
    with pytest.raises(error, match=message) as info:
        _p11.Token._login(stub, first=first)  # type: ignore[arg-type]
    assert "135790" not in str(info.value)
    assert closed == [42]
