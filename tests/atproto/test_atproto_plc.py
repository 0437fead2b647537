"""did:plc audit-log verification (holdca.atproto.plc).

Oracles: the did-method-plc / go-didplc audit-log vectors (their ``cid`` fields and DIDs were
computed by the reference implementation; their valid/invalid split is the reference verdict);
a directory-rendered DID document (indigo ``did_plc_doc.json``) for the rendering; libipld
(Rust) DAG-CBOR and MarshalX ``atproto_crypto`` signature checks, independent of holdca's
codec and verifier. Attack cases are logs built and signed here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import coincurve
import libipld
import pytest
from atproto_crypto.did import parse_did_key as oracle_parse_did_key
from atproto_crypto.verify import verify_signature as oracle_verify
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.atproto.diddoc import parse_did_document
from holdca.atproto.didkey import K256_ORDER, P256_ORDER, PublicKey, parse_did_key
from holdca.atproto.plc import (
    MAX_LOG_ENTRIES,
    MAX_OPERATION_SIZE,
    RECOVERY_WINDOW,
    PLCState,
    genesis_did,
    operation_cid,
    verify_audit_log,
)
from holdca.errors import (
    DIDDeactivatedError,
    MalformedInputError,
    PLCLogError,
    PLCOperationError,
    VerificationError,
)
from holdca.testing.atproto import sign_k256, sign_p256

V = Path(__file__).resolve().parents[1] / "vectors" / "atproto"
PLC = V / "plc" / "audit_log"
VALID = sorted((PLC / "valid").glob("*.json"))
INVALID = sorted((PLC / "invalid").glob("*.json"))
ALL = VALID + INVALID


def load(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_bytes())  # type: ignore[no-any-return]


# --- independent encoders (libipld, hashlib) -----------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def oracle_cid(op: dict[str, Any]) -> str:
    digest = hashlib.sha256(libipld.encode_dag_cbor(op)).digest()
    return "b" + base64.b32encode(b"\x01\x71\x12\x20" + digest).decode().lower().rstrip("=")


def oracle_did(op: dict[str, Any]) -> str:
    digest = hashlib.sha256(libipld.encode_dag_cbor(op)).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]


def unsigned(op: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor({k: v for k, v in op.items() if k != "sig"})  # type: ignore[no-any-return]


# --- building and signing logs ----------------------------------------------------------------


class Key:
    """A rotation key (K-256 or P-256) that signs like the PLC reference (64-byte low-S)."""

    def __init__(self, curve: str = "k256") -> None:
        self.curve = curve
        if curve == "k256":
            self.k256 = coincurve.PrivateKey()
            point = self.k256.public_key.format(compressed=True)
        else:
            self.p256 = ec.generate_private_key(ec.SECP256R1())
            point = self.p256.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        self.did = PublicKey(curve, point).did_key  # type: ignore[arg-type]

    def sign(self, message: bytes) -> bytes:
        if self.curve == "k256":
            return sign_k256(self.k256, message)
        return sign_p256(self.p256, message)


def plc_op(
    rotation: list[Key],
    prev: str | None,
    *,
    handle: str = "alice.test",
    signing: str | None = None,
    pds: str = "https://pds.example.com",
) -> dict[str, Any]:
    return {
        "type": "plc_operation",
        "rotationKeys": [k.did for k in rotation],
        "verificationMethods": {"atproto": signing or rotation[-1].did} if rotation else {},
        "alsoKnownAs": [f"at://{handle}"],
        "services": {"atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": pds}},
        "prev": prev,
    }


def signed(op: dict[str, Any], key: Key) -> dict[str, Any]:
    body = {k: v for k, v in op.items() if k != "sig"}
    return {**body, "sig": b64url(key.sign(libipld.encode_dag_cbor(body)))}


ED25519 = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"  # a valid non-atproto did:key
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Log:
    """An audit log under construction: genesis by ``keys[-1]``; ``add`` appends signed ops."""

    keys: list[Key]
    entries: list[dict[str, Any]] = field(default_factory=list)
    genesis_key: Key | None = None

    def __post_init__(self) -> None:
        genesis = signed(plc_op(self.keys, None), self.genesis_key or self.keys[-1])
        self.did = oracle_did(genesis)
        self.entries.append(self.entry(genesis, T0))

    def entry(self, op: dict[str, Any], moment: datetime) -> dict[str, Any]:
        return {
            "did": self.did,
            "operation": op,
            "cid": oracle_cid(op),
            "nullified": False,
            "createdAt": stamp(moment),
        }

    def cid(self, index: int) -> str:
        return self.entries[index]["cid"]  # type: ignore[no-any-return]

    def add(
        self, op: dict[str, Any], key: Key, moment: datetime, *, prev: int | None = None
    ) -> dict[str, Any]:
        if op.get("type") != "create":
            op = {**op, "prev": self.cid(len(self.entries) - 1 if prev is None else prev)}
        entry = self.entry(signed(op, key), moment)
        self.entries.append(entry)
        return entry

    def nullify(self, *indices: int) -> Log:
        for index in indices:
            self.entries[index]["nullified"] = True
        return self

    def verify(self) -> PLCState:
        return verify_audit_log(json.dumps(self.entries), self.did)


@pytest.fixture(scope="module")
def keys() -> list[Key]:
    return [Key("k256"), Key("p256"), Key("k256")]


# --- vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector_cids_and_dids_match_the_reference(path: Path) -> None:
    """The cid fields and DIDs were computed by the reference implementation (and libipld)."""
    log = load(path)
    for entry in log:
        assert operation_cid(entry["operation"]) == entry["cid"] == oracle_cid(entry["operation"])
    assert genesis_did(log[0]["operation"]) == log[0]["did"] == oracle_did(log[0]["operation"])


def expected_state(log: list[dict[str, Any]]) -> dict[str, Any]:
    """What the reference renders for the last op (normalizeOp for a legacy genesis)."""
    op = log[-1]["operation"]
    if op["type"] == "plc_tombstone":
        return {"rotation_keys": (), "verification_methods": {}, "services": {}, "aka": ()}
    return {
        "rotation_keys": tuple(op["rotationKeys"]),
        "verification_methods": op["verificationMethods"],
        "services": op["services"],
        "aka": tuple(op["alsoKnownAs"]),
    }


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_vectors_verify(path: Path) -> None:
    raw = path.read_bytes()
    log = load(path)
    did = log[0]["did"]
    state = verify_audit_log(raw, did)
    live = [e for e in log if not e["nullified"]]
    assert state.did == did
    assert state.cid == live[-1]["cid"] == log[-1]["cid"]
    assert state.created_at == datetime.fromisoformat(log[-1]["createdAt"])
    assert state.created_at.tzinfo is UTC
    assert state.tombstoned == (log[-1]["operation"]["type"] == "plc_tombstone")
    expect = expected_state(log)
    assert state.rotation_keys == expect["rotation_keys"]
    assert dict(state.verification_methods) == expect["verification_methods"]
    assert {k: dict(v) for k, v in state.services.items()} == expect["services"]
    assert state.also_known_as == expect["aka"]
    # the same result from str and from the parsed array
    assert verify_audit_log(raw.decode(), did) == state
    assert verify_audit_log(log, did) == state
    if state.tombstoned:
        with pytest.raises(DIDDeactivatedError, match=r"tombstoned"):
            state.did_document()
        return
    doc = state.did_document()
    parsed = parse_did_document(json.dumps(doc), did)
    assert parsed.also_known_as == state.also_known_as
    if "atproto" in state.verification_methods:
        assert parsed.atproto_key().did_key == state.verification_methods["atproto"]
        assert parsed.pds_endpoint() == state.services["atproto_pds"]["endpoint"]


def test_valid_vectors_specific_states() -> None:
    bsky = verify_audit_log(
        (PLC / "valid" / "log_bskyapp.json").read_bytes(), "did:plc:z72i7hdynmk6r22z27h6tvur"
    )
    assert bsky.also_known_as == ("at://bsky.app",)
    assert bsky.verification_methods["atproto"] == (
        "did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
    )
    assert bsky.services["atproto_pds"]["endpoint"] == "https://bsky.social"
    dholms = verify_audit_log(
        (PLC / "valid" / "log_legacy_dholms.json").read_bytes(), "did:plc:yk4dd2qkboz2yv6tpubpc6co"
    )
    assert dholms.cid == "bafyreidfrpuegbqd5r56shka4duythb7phb6d7i3bck2dkeb5fjppwd7gi"
    # nontrivial: op 5 nullified op 4, then op 7 (prev op 1) nullified ops 2..6
    nontrivial = verify_audit_log(
        (PLC / "valid" / "log_nullification_nontrivial.json").read_bytes(),
        "did:plc:ana7n2ppeqk57pay7azhjs24",
    )
    log = load(PLC / "valid" / "log_nullification_nontrivial.json")
    assert [e["nullified"] for e in log] == [False, False, True, True, True, True, True, False]
    assert nontrivial.cid == log[7]["cid"]
    assert nontrivial.rotation_keys == tuple(log[7]["operation"]["rotationKeys"])


def test_legacy_genesis_is_normalised() -> None:
    log = load(PLC / "valid" / "log_legacy_dholms.json")
    state = verify_audit_log(log[:1], log[0]["did"])
    op = log[0]["operation"]
    assert state.rotation_keys == (op["recoveryKey"], op["signingKey"])
    assert dict(state.verification_methods) == {"atproto": op["signingKey"]}
    assert state.also_known_as == ("at://dan.bsky.social",)
    assert {k: dict(v) for k, v in state.services.items()} == {
        "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": "https://bsky.social"}
    }


def test_did_document_matches_a_directory_rendered_document() -> None:
    """indigo's did_plc_doc.json (atproto.com, as plc.directory renders it) has the same key and
    PDS as bsky.app's final op: with id and handle swapped, it is what we must render."""
    template = (V / "indigo" / "identity" / "did_plc_doc.json").read_text()
    did = "did:plc:z72i7hdynmk6r22z27h6tvur"
    expected = json.loads(
        template.replace("did:plc:ewvi7nxzyoun6zhxrhs64oiz", did).replace(
            "at://atproto.com", "at://bsky.app"
        )
    )
    state = verify_audit_log((PLC / "valid" / "log_bskyapp.json").read_bytes(), did)
    assert state.did_document() == expected
    assert list(state.did_document()) == list(expected)


INVALID_EXPECT: dict[str, tuple[type[Exception], str]] = {
    "log_invalid_nullification_reused_key": (PLCLogError, r"entry 2 .*does not outrank.*entry 1"),
    "log_invalid_nullification_too_slow": (PLCLogError, r"entry 2 .*cannot nullify entry 1.*72 h"),
    "log_invalid_sig_b64_newline": (PLCOperationError, r"entry 0 sig is not unpadded base64url"),
    "log_invalid_sig_b64_padding_bits": (PLCOperationError, r"entry 0 sig .*padding bits"),
    "log_invalid_sig_b64_padding_chars": (PLCOperationError, r"entry 0 sig .*padding char"),
    "log_invalid_sig_der": (PLCLogError, r"entry 0 .*signature verifies under none"),
    "log_invalid_sig_k256_high_s": (PLCLogError, r"entry 0 .*high-S"),
    "log_invalid_sig_p256_high_s": (PLCLogError, r"entry 0 .*high-S"),
    "log_invalid_update_nullified": (PLCLogError, r"entry 4 .*prev .* is a nullified operation"),
    "log_invalid_update_tombstoned": (PLCLogError, r"entry 2 .*nothing may follow the tombstone"),
}


def test_every_invalid_vector_has_an_expectation() -> None:
    assert sorted(p.stem for p in INVALID) == sorted(INVALID_EXPECT)
    assert len(VALID) == 10


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_vectors_fail(path: Path) -> None:
    error, pattern = INVALID_EXPECT[path.stem]
    log = load(path)
    with pytest.raises(error, match=pattern) as info:
        verify_audit_log(path.read_bytes(), log[0]["did"])
    assert len(str(info.value)) < 300
    with pytest.raises(error, match=pattern):
        verify_audit_log(log, log[0]["did"])


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_marshalx_agrees_on_every_signature(path: Path) -> None:
    """Each op's sig verifies (MarshalX, libipld) under a rotation key of its prev or itself."""
    log = load(path)
    by_cid = {e["cid"]: e["operation"] for e in log}
    for entry in log:
        op = entry["operation"]
        parent = by_cid[op["prev"]] if op["prev"] else op
        rotation = parent.get("rotationKeys") or [parent["recoveryKey"], parent["signingKey"]]
        sig = base64.urlsafe_b64decode(op["sig"] + "==")
        assert any(oracle_verify(k, unsigned(op), sig) for k in rotation)
        for key in rotation:
            assert oracle_parse_did_key(key).jwt_alg == parse_did_key(key).jwt_alg


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_swapping_nullified_flags_is_caught(path: Path) -> None:
    log = load(path)
    for index in range(len(log)):
        lying = copy.deepcopy(log)
        lying[index]["nullified"] = not lying[index]["nullified"]
        with pytest.raises(PLCLogError, match=rf"entry {index} .*nullified"):
            verify_audit_log(lying, log[0]["did"])


# --- built logs: recovery, rotation, tombstones ----------------------------------------------


def test_built_log_verifies(keys: list[Key]) -> None:
    log = Log(keys)
    new_signing = Key().did
    log.add(plc_op(keys, None, handle="bob.test", signing=new_signing), keys[1], T0 + timedelta(1))
    state = log.verify()
    assert state.verification_methods["atproto"] == new_signing
    assert state.also_known_as == ("at://bob.test",)
    assert state.cid == log.cid(1)
    context = state.did_document()["@context"]
    assert "https://w3id.org/security/suites/secp256k1-2019/v1" in context


def test_rotation_signed_by_a_key_outside_prev_rotation_keys_fails(keys: list[Key]) -> None:
    attacker = Key()
    log = Log(keys)
    log.add(plc_op([attacker], None), attacker, T0 + timedelta(hours=1))
    with pytest.raises(PLCLogError, match=r"entry 1 .*none of the 3 allowed rotation keys"):
        log.verify()


def test_new_rotation_keys_take_effect(keys: list[Key]) -> None:
    new = Key("p256")
    log = Log(keys)
    log.add(plc_op([new], None), keys[0], T0 + timedelta(hours=1))
    log.add(plc_op([new], None, handle="after.test"), new, T0 + timedelta(hours=2))
    assert log.verify().rotation_keys == (new.did,)
    log.add(plc_op([new], None, handle="old.test"), keys[0], T0 + timedelta(hours=3))
    with pytest.raises(PLCLogError, match=r"entry 3 .*none of the 1 allowed"):
        log.verify()


def test_forged_genesis_fails(keys: list[Key]) -> None:
    victim = Log(keys)
    attacker = Log([Key()])  # the attacker's own genesis, served as the victim's log
    forged = copy.deepcopy(attacker.entries)
    for entry in forged:
        entry["did"] = victim.did
    with pytest.raises(PLCLogError, match=rf"hashes to {attacker.did}, not {victim.did}"):
        verify_audit_log(forged, victim.did)


def test_tampered_genesis_fails(keys: list[Key]) -> None:
    log = Log(keys)
    op = {**log.entries[0]["operation"], "alsoKnownAs": ["at://mallory.test"]}
    entry = {**log.entries[0], "operation": op, "cid": oracle_cid(op)}
    with pytest.raises(PLCLogError, match=r"genesis operation hashes to"):
        verify_audit_log([entry], log.did)
    with pytest.raises(PLCLogError, match=r"signature verifies under none"):
        verify_audit_log([{**entry, "did": oracle_did(op)}], oracle_did(op))


def test_prev_naming_an_unknown_cid_fails(keys: list[Key]) -> None:
    log = Log(keys)
    op = signed({**plc_op(keys, None), "prev": oracle_cid({"not": "an op"})}, keys[0])
    log.entries.append(log.entry(op, T0 + timedelta(hours=1)))
    with pytest.raises(PLCLogError, match=r"entry 1 .*names no earlier entry"):
        log.verify()


@pytest.mark.parametrize("curve", ["k256", "p256"])
def test_high_s_signature_fails(curve: str) -> None:
    key = Key(curve)
    log = Log([key])
    log.add(plc_op([key], None, handle="x.test"), key, T0 + timedelta(hours=1))
    assert log.verify().also_known_as == ("at://x.test",)
    op = log.entries[1]["operation"]
    raw = base64.urlsafe_b64decode(op["sig"] + "==")
    order = K256_ORDER if curve == "k256" else P256_ORDER
    high = raw[:32] + (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    assert oracle_verify(key.did, unsigned(op), high) is False  # MarshalX refuses it too
    op = {**op, "sig": b64url(high)}
    log.entries[1] = log.entry(op, T0 + timedelta(hours=1))
    with pytest.raises(PLCLogError, match=r"entry 1 .*high-S"):
        log.verify()


def recovery_log(
    keys: list[Key], delay: timedelta, recover_with: int = 0, attack_with: int = 1
) -> Log:
    """keys[attack_with] changes the atproto key at T0+1h; keys[recover_with] forks from genesis
    ``delay`` after that, restoring a known key."""
    log = Log(keys)
    attacked = T0 + timedelta(hours=1)
    log.add(plc_op(keys, None, signing=Key().did, handle="evil.test"), keys[attack_with], attacked)
    log.add(plc_op(keys, None, handle="alice.test"), keys[recover_with], attacked + delay, prev=0)
    return log


@pytest.mark.parametrize("delay", [timedelta(seconds=1), timedelta(hours=71), RECOVERY_WINDOW])
def test_recovery_within_72h_by_a_higher_key_nullifies(keys: list[Key], delay: timedelta) -> None:
    log = recovery_log(keys, delay).nullify(1)
    state = log.verify()
    assert state.cid == log.cid(2)
    assert state.also_known_as == ("at://alice.test",)
    assert state.verification_methods["atproto"] == keys[-1].did
    with pytest.raises(PLCLogError, match=r"entry 1 .*is nullified, but the log says otherwise"):
        verify_audit_log(json.dumps(recovery_log(keys, delay).entries), log.did)


@pytest.mark.parametrize("delay", [RECOVERY_WINDOW + timedelta(milliseconds=1), timedelta(days=30)])
def test_recovery_after_72h_is_refused(keys: list[Key], delay: timedelta) -> None:
    log = recovery_log(keys, delay).nullify(1)
    with pytest.raises(PLCLogError, match=r"entry 2 .*cannot nullify entry 1 more than 72 h"):
        log.verify()


@pytest.mark.parametrize(("recover_with", "attack_with"), [(1, 1), (2, 1), (1, 0), (2, 2)])
def test_recovery_needs_strictly_higher_authority(
    keys: list[Key], recover_with: int, attack_with: int
) -> None:
    log = recovery_log(keys, timedelta(hours=1), recover_with, attack_with).nullify(1)
    with pytest.raises(PLCLogError, match=r"entry 2 .*(does not outrank|none of the 0 allowed)"):
        log.verify()


def test_a_key_cannot_recover_twice(keys: list[Key]) -> None:
    log = recovery_log(keys, timedelta(hours=1), recover_with=1, attack_with=2).nullify(1)
    assert log.verify().cid == log.cid(2)
    # keys[1] already forked from genesis: only keys[0] may fork again, within 72 h of entry 2
    log.add(plc_op(keys, None, handle="again.test"), keys[1], T0 + timedelta(hours=3), prev=0)
    with pytest.raises(PLCLogError, match=r"entry 3 .*does not outrank the signer of entry 2"):
        log.nullify(2).verify()
    log.entries.pop()
    log.add(plc_op(keys, None, handle="again.test"), keys[0], T0 + timedelta(hours=3), prev=0)
    assert log.verify().also_known_as == ("at://again.test",)


def test_recovery_nullifies_the_whole_chain(keys: list[Key]) -> None:
    log = Log(keys)
    for hour in (1, 2, 3):
        log.add(plc_op(keys, None, handle=f"h{hour}.test"), keys[2], T0 + timedelta(hours=hour))
    log.add(plc_op(keys, None, handle="back.test"), keys[0], T0 + timedelta(hours=4), prev=1)
    with pytest.raises(PLCLogError, match=r"entry 2 .*is nullified"):
        log.verify()
    assert log.nullify(2, 3).verify().also_known_as == ("at://back.test",)
    with pytest.raises(PLCLogError, match=r"entry 1 .*is not nullified"):
        log.nullify(1).verify()


def test_fork_window_counts_from_the_first_nullified_op(keys: list[Key]) -> None:
    log = Log(keys)
    log.add(plc_op(keys, None, handle="a.test"), keys[2], T0 + timedelta(hours=1))
    log.add(plc_op(keys, None, handle="b.test"), keys[2], T0 + timedelta(hours=70))
    log.add(plc_op(keys, None, handle="c.test"), keys[0], T0 + timedelta(hours=74), prev=0)
    with pytest.raises(PLCLogError, match=r"cannot nullify entry 1"):
        log.nullify(1, 2).verify()


def test_tombstone_then_update_is_refused(keys: list[Key]) -> None:
    log = Log(keys)
    tomb = log.add({"type": "plc_tombstone"}, keys[2], T0 + timedelta(hours=1))
    state = log.verify()
    assert state.tombstoned
    assert state.cid == tomb["cid"]
    assert state.rotation_keys == ()
    assert not state.verification_methods
    with pytest.raises(DIDDeactivatedError):
        state.did_document()
    log.add(plc_op(keys, None), keys[0], T0 + timedelta(hours=2))
    with pytest.raises(PLCLogError, match=r"entry 2 .*nothing may follow the tombstone"):
        log.verify()


def test_tombstone_can_be_recovered_within_72h(keys: list[Key]) -> None:
    log = Log(keys)
    log.add({"type": "plc_tombstone"}, keys[1], T0 + timedelta(hours=1))
    log.add(plc_op(keys, None, handle="alive.test"), keys[0], T0 + timedelta(hours=2), prev=0)
    state = log.nullify(1).verify()
    assert not state.tombstoned
    assert state.did_document()["alsoKnownAs"] == ["at://alive.test"]


def test_chain_and_order_rules(keys: list[Key]) -> None:
    log = Log(keys)
    log.add(plc_op(keys, None), keys[0], T0)  # same createdAt as genesis
    with pytest.raises(PLCLogError, match=r"entry 1 .*createdAt is not after that of entry 0"):
        log.verify()
    log = Log(keys)
    log.entries.append(copy.deepcopy(log.entries[0]))
    log.entries[1]["createdAt"] = stamp(T0 + timedelta(hours=1))
    with pytest.raises(PLCLogError, match=r"entry 1 .*repeats entry 0"):
        log.verify()
    log = Log(keys)
    second = signed(plc_op(keys, None), keys[0])  # a second genesis
    log.entries.append(log.entry(second, T0 + timedelta(hours=1)))
    with pytest.raises(PLCLogError, match=r"entry 1 .*only the first entry may be a genesis"):
        log.verify()
    log = Log(keys)
    log.add({"type": "plc_tombstone"}, keys[0], T0 + timedelta(hours=1))
    with pytest.raises(PLCLogError, match=r"entry 0 .*first entry must be a genesis"):
        verify_audit_log(log.entries[1:], log.did)
    with pytest.raises(PLCLogError, match=r"is empty"):
        verify_audit_log("[]", log.did)


def test_entry_claims_are_checked(keys: list[Key]) -> None:
    log = Log(keys)
    log.add(plc_op(keys, None), keys[0], T0 + timedelta(hours=1))
    lying = copy.deepcopy(log.entries)
    lying[1]["cid"] = log.cid(0)
    with pytest.raises(PLCLogError, match=r"entry 1 .*claims cid"):
        verify_audit_log(lying, log.did)
    lying = copy.deepcopy(log.entries)
    lying[1]["did"] = Log([Key()]).did
    with pytest.raises(PLCLogError, match=r"entry 1 .*is for"):
        verify_audit_log(lying, log.did)
    lying = copy.deepcopy(log.entries)
    lying[0]["nullified"] = True
    with pytest.raises(PLCLogError, match=r"entry 0 .*is not nullified"):
        verify_audit_log(lying, log.did)
    tampered = copy.deepcopy(log.entries)
    tampered[1]["operation"]["alsoKnownAs"] = ["at://mallory.test"]
    tampered[1]["cid"] = oracle_cid(tampered[1]["operation"])
    with pytest.raises(PLCLogError, match=r"entry 1 .*signature verifies under none"):
        verify_audit_log(tampered, log.did)
    # extra entry fields are not signed and are ignored (as the reference verifiers do)
    extra = copy.deepcopy(log.entries)
    extra[1]["seq"] = 7
    assert verify_audit_log(extra, log.did).cid == log.cid(1)


def test_legacy_create_ops(keys: list[Key]) -> None:
    signing, recovery = Key(), Key("p256")
    create = signed(
        {
            "type": "create",
            "signingKey": signing.did,
            "recoveryKey": recovery.did,
            "handle": "bob.test",
            "service": "pds.example.com",
            "prev": None,
        },
        signing,
    )
    log = Log(keys)
    log.did = oracle_did(create)
    log.entries = [log.entry(create, T0)]
    state = log.verify()
    assert state.rotation_keys == (recovery.did, signing.did)
    assert state.also_known_as == ("at://bob.test",)
    assert state.services["atproto_pds"]["endpoint"] == "https://pds.example.com"
    log.add(plc_op([recovery], None), signing, T0 + timedelta(hours=1))
    assert log.verify().rotation_keys == (recovery.did,)
    # a create op anywhere but genesis, or with a prev
    log.add(
        {
            "type": "create",
            "signingKey": signing.did,
            "recoveryKey": recovery.did,
            "handle": "bob.test",
            "service": "https://pds.example.com",
            "prev": None,
        },
        recovery,
        T0 + timedelta(hours=2),
    )
    with pytest.raises(PLCLogError, match=r"entry 2 .*only the first entry may be a genesis"):
        log.verify()
    log.entries[2]["operation"]["prev"] = log.cid(1)
    with pytest.raises(PLCOperationError, match=r"entry 2 legacy create .*null prev"):
        log.verify()


# --- malformed input -------------------------------------------------------------------------


def mutate_genesis(keys: list[Key], change: Callable[[dict[str, Any]], None]) -> Log:
    """A one-entry log whose genesis op was changed by ``change`` and then properly signed."""
    log = Log(keys)
    op = plc_op(keys, None)
    change(op)
    op = signed(op, keys[-1])
    log.did = oracle_did(op)
    log.entries = [log.entry(op, T0)]
    return log


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda op: op.update(extra="x"), r"entry 0 plc_operation operation has unknown fields"),
        (lambda op: op.pop("prev"), r"missing \['prev'\]"),
        (lambda op: op.update(type="plc_update"), "unknown operation type"),
        (lambda op: op.update(rotationKeys="did:key:z"), "rotationKeys must be an array"),
        (lambda op: op.update(rotationKeys=[1]), r"rotationKeys\[0\] must be a string"),
        (
            lambda op: op.update(rotationKeys=[ED25519]),
            "rotation key 0 is not a K-256/P-256 did:key",
        ),
        (
            lambda op: op.update(rotationKeys=[Key().did for _ in range(11)]),
            "more than 10 rotationKeys",
        ),
        (lambda op: op.update(verificationMethods={"atproto": "zQ3sh"}), "is not a did:key"),
        (
            lambda op: op.update(verificationMethods={"atproto": "did:key:z0OIl"}),
            "is not a did:key",
        ),
        (lambda op: op.update(verificationMethods=[]), "verificationMethods must be an object"),
        (lambda op: op.update(alsoKnownAs=[None]), r"alsoKnownAs\[0\] must be a string"),
        (lambda op: op["services"]["atproto_pds"].update(x="y"), "exactly the fields type"),
        (lambda op: op["services"].update(s={"type": "T", "endpoint": 1}), "endpoint must be"),
        (
            lambda op: op.update(alsoKnownAs=["at://" + "a" * 100] * 80),
            rf"operation is \d+ bytes of DAG-CBOR \(limit {MAX_OPERATION_SIZE}\)",
        ),
        (
            lambda op: op.update(
                prev="bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            ),
            "prev is not a dag-cbor CID",
        ),
        (lambda op: op.update(prev="Qm123"), "prev is not a dag-cbor CID"),
    ],
)
def test_malformed_operations(
    keys: list[Key], change: Callable[[dict[str, Any]], None], pattern: str
) -> None:
    log = mutate_genesis(keys, change)
    with pytest.raises(PLCOperationError, match=pattern) as info:
        log.verify()
    assert len(str(info.value)) < 300


def test_any_syntactically_valid_did_key_is_a_verification_method(keys: list[Key]) -> None:
    ed25519 = ED25519
    log = mutate_genesis(
        keys, lambda op: op["verificationMethods"].update(atproto=keys[1].did, other=ed25519)
    )
    doc = log.verify().did_document()
    other = doc["verificationMethod"][1]
    assert other == {
        "id": f"{log.did}#other",
        "type": "Multikey",
        "controller": log.did,
        "publicKeyMultibase": ed25519[len("did:key:") :],
    }
    assert doc["@context"] == [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/multikey/v1",
        "https://w3id.org/security/suites/ecdsa-2019/v1",
    ]  # P-256 only


@pytest.mark.parametrize(
    ("sig", "pattern"),
    [
        (lambda s: s + "==", "padding characters"),
        (lambda s: s[:40] + "\n" + s[40:], "not unpadded base64url"),
        (lambda s: s[:40] + " " + s[40:], "not unpadded base64url"),
        (lambda s: "+" + s[1:], "not unpadded base64url"),
        (lambda s: s[:-1] + B64[(B64.index(s[-1]) & ~0xF) | 1], "non-zero trailing padding bits"),
        (lambda s: s[:-2], r"86 characters \(64 bytes r\|\|s\), got 84"),
        (lambda s: s + "AAAA", r"86 characters \(64 bytes r\|\|s\), got 90"),
        (lambda s: "", r"86 characters \(64 bytes r\|\|s\), got 0"),
        (lambda s: 1, "sig must be a string"),
    ],
)
def test_malformed_signatures(keys: list[Key], sig: Callable[[str], Any], pattern: str) -> None:
    log = Log(keys)
    op = log.entries[0]["operation"]
    op["sig"] = sig(op["sig"])
    with pytest.raises(PLCOperationError, match=pattern):
        verify_audit_log(log.entries, log.did)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda e: e.update(createdAt="2025-01-01 00:00:00Z"), "createdAt is not an RFC 3339"),
        (lambda e: e.update(createdAt="2025-02-30T00:00:00Z"), "createdAt is not a valid"),
        (lambda e: e.update(createdAt=0), "createdAt must be a string"),
        (lambda e: e.update(nullified="false"), "nullified must be a boolean"),
        (lambda e: e.pop("cid"), "has no 'cid'"),
        (lambda e: e.update(operation=[]), "operation must be an object"),
        (lambda e: e.update(did=None), "did must be a string"),
    ],
)
def test_malformed_entries(
    keys: list[Key], mutate: Callable[[dict[str, Any]], None], pattern: str
) -> None:
    log = Log(keys)
    mutate(log.entries[0])
    with pytest.raises(PLCOperationError, match=rf"entry 0 {pattern}"):
        verify_audit_log(log.entries, log.did)


def test_malformed_json_and_arguments(keys: list[Key]) -> None:
    log = Log(keys)
    text = json.dumps(log.entries)
    dup = text.replace('"nullified": false', '"nullified": false, "nullified": true')
    with pytest.raises(PLCOperationError, match=r"duplicate JSON key 'nullified'"):
        verify_audit_log(dup, log.did)
    with pytest.raises(PLCOperationError, match=r"NaN"):
        verify_audit_log(text.replace('"nullified": false', '"nullified": NaN'), log.did)
    for bad in ("", "{", b"\xff[]", "{}", '"[]"', "[1]"):
        with pytest.raises(PLCOperationError):
            verify_audit_log(bad, log.did)
    for did in ("did:web:example.com", "did:plc:ABC", log.did + "a", None):
        with pytest.raises(PLCOperationError, match=r"not a did:plc"):
            verify_audit_log(text, did)  # type: ignore[arg-type]
    with pytest.raises(PLCOperationError):
        operation_cid(["not", "a", "map"])  # type: ignore[arg-type]
    with pytest.raises(PLCOperationError, match=r"cannot be encoded"):
        operation_cid({"type": 1.5})
    with pytest.raises(PLCOperationError, match=r"not a genesis"):
        genesis_did({**log.entries[0]["operation"], "prev": log.cid(0)})
    with pytest.raises(PLCOperationError, match=r"no sig"):
        genesis_did({k: v for k, v in log.entries[0]["operation"].items() if k != "sig"})


def test_huge_json_is_refused_quickly(keys: list[Key]) -> None:
    huge = b'["' + b"a" * (20 * 1024 * 1024) + b'"]'
    start = time.perf_counter()
    with pytest.raises(PLCOperationError, match=r"exceeds"):
        verify_audit_log(huge, Log(keys).did)
    with pytest.raises(PLCOperationError, match=r"exceeds"):
        verify_audit_log(huge.decode(), Log(keys).did)
    assert time.perf_counter() - start < 5  # generous: CI machines under load


def test_deeply_nested_json_is_refused_quickly(keys: list[Key]) -> None:
    log = Log(keys)
    start = time.perf_counter()
    for deep in (
        "[" * 100_000 + "]" * 100_000,
        json.dumps(log.entries)[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}]",
    ):
        with pytest.raises(PLCOperationError, match=r"nested too deeply") as info:
            verify_audit_log(deep, log.did)
        assert not isinstance(info.value, RecursionError)
    nested: list[Any] = []
    for _ in range(100_000):  # an already-parsed deep structure: refused by type, no recursion
        nested = [nested]
    log.entries[0]["operation"]["services"] = {"atproto_pds": nested}
    with pytest.raises(PLCOperationError, match=r"must be an object"):
        verify_audit_log(log.entries, log.did)
    assert time.perf_counter() - start < 5  # generous: CI machines under load


def test_too_many_entries(keys: list[Key]) -> None:
    log = Log(keys)
    entries = log.entries * (MAX_LOG_ENTRIES + 1)
    with pytest.raises(PLCOperationError, match=rf"limit {MAX_LOG_ENTRIES}"):
        verify_audit_log(entries, log.did)
    with pytest.raises(PLCOperationError, match=rf"limit {MAX_LOG_ENTRIES}"):
        verify_audit_log(json.dumps(entries), log.did)


def test_state_is_read_only(keys: list[Key]) -> None:
    state = Log(keys).verify()
    with pytest.raises(TypeError):
        state.verification_methods["atproto"] = "did:key:zevil"  # type: ignore[index]
    with pytest.raises(TypeError):
        state.services["atproto_pds"]["endpoint"] = "https://evil"  # type: ignore[index]
    with pytest.raises(AttributeError):
        state.cid = "b"  # type: ignore[misc]
    doc = state.did_document()
    doc["alsoKnownAs"].append("at://changed")
    assert state.did_document()["alsoKnownAs"] == ["at://alice.test"]


def test_error_hierarchy() -> None:
    assert issubclass(PLCOperationError, MalformedInputError)
    assert issubclass(PLCLogError, VerificationError)
    assert issubclass(DIDDeactivatedError, VerificationError)


@settings(max_examples=60)
@given(
    handle=st.text(max_size=40),
    extra=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=20), max_size=4),
)
def test_operation_cid_matches_libipld(handle: str, extra: dict[str, str]) -> None:
    key = Key()
    op = plc_op([key], None, handle=handle)
    op["verificationMethods"].update({k: key.did for k in extra})
    op["services"].update({k: {"type": v, "endpoint": v} for k, v in extra.items()})
    op = signed(op, key)
    assert operation_cid(op) == oracle_cid(op)
    assert genesis_did(op) == oracle_did(op)
    state = verify_audit_log(
        [
            {
                "did": oracle_did(op),
                "operation": op,
                "cid": oracle_cid(op),
                "nullified": False,
                "createdAt": stamp(T0),
            }
        ],
        oracle_did(op),
    )
    assert state.also_known_as == (f"at://{handle}",)
    assert list(state.services) == list(op["services"])
