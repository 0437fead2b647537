"""RFC 3161 timestamps proved with the notation v1.3.2 CLI (issue 14).

* A short-lived leaf (60 s) really expires (one real wait, never a faked clock): its JWS and
  COSE signatures still verify under a trust policy with a ``tsa:`` store holding holdca's
  TSA root, and fail under the same policy without it.
* ``verifyTimestamp``: ``always`` checks the token of an unexpired leaf, ``afterCertExpiry``
  does not (an envelope whose token was swapped passes only under the latter).
* ``notation sign --timestamp-url`` against the reference app's ``POST /tsa`` works.
* Every token passes ``openssl ts -verify`` and rfc3161-client (tests/notation/tsa_oracles.py).

Revocation: the expiry test's hold has no CRL/OCSP URL and its policies say
``override: {revocation: skip}``, as does the ``notation sign`` test (notation's own test
key); the ``verifyTimestamp`` test runs strict with revocation from a hold served on
127.0.0.1 (real CRL and OCSP URLs in the leaf). In all of them, notation still checks the
TSA chain's revocation (part of authenticTimestamp); holdca's TSA certificate carries no
AIA/CDP, so that check passes offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from holdca.demo import notation_verify
from holdca.errors import TimestampError, TrustPolicyError
from holdca.hold import CosignRequest
from holdca.notation.cose import MEDIA_TYPE_COSE
from holdca.notation.formats import SignatureFormat
from holdca.notation.oci import MEDIA_TYPE_JWS, OCILayout
from holdca.notation.timestamp import build_request, check_policy_oid, verify_token
from holdca.notation.timestamp_tsa import HOLDCA_TSA_POLICY, LocalTSA, build_token
from holdca.notation.trustpolicy import hold_trust_policy, validate_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.testing.oci import build_test_image
from tests.hold.conftest import World, make_world
from tests.hold.served import Served, serve_hold, user
from tests.notation.tsa_oracles import (
    TIMESTAMP_LABEL,
    check_token_oracles,
    make_local_tsa,
    token_and_signature,
)
from tests.tools import require_notation

pytestmark = pytest.mark.interop

LEAF_SECONDS = 60


@dataclass(frozen=True)
class Case:
    """One ``notation verify`` run: an envelope in a fresh layout under one policy."""

    name: str
    envelope: bytes
    media_type: str
    tsa_root: x509.Certificate | None  # None: the policy has no tsa: store
    verify_timestamp: str | None
    expect: bool


def _run(
    notation: str,
    base: Path,
    layout: Path,
    digest: str,
    ca_root: x509.Certificate,
    case: Case,
    *,
    revocation: str | None,
) -> tuple[bool, str]:
    """Copy the pristine ``layout``, attach the case's envelope, write its policy, verify."""
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=base))
    shutil.copytree(layout, work / "layout")
    copy = OCILayout(work / "layout")
    copy.attach_signature(copy.resolve(digest), case.envelope, media_type=case.media_type)
    config = work / "notation"
    write_trust_store(config, "hold", [ca_root])
    if case.tsa_root is not None:
        write_trust_store(config, "hold-tsa", [case.tsa_root], type="tsa")
    policy = hold_trust_policy(
        store="hold",
        revocation=revocation,
        tsa_store="hold-tsa" if case.tsa_root is not None else None,
        verify_timestamp=case.verify_timestamp,
    )
    statement = json.loads(policy.to_json())["trustPolicies"][0]
    assert ("tsa:hold-tsa" in statement["trustStores"]) == (case.tsa_root is not None)
    write_trust_policy(config, policy)
    return notation_verify(notation, config, copy.path, digest)


def _swap_jws_token(envelope: bytes, token: bytes) -> bytes:
    """The JWS with another token in its unprotected header (std base64): the signature
    covers only the protected header and the payload, so the envelope stays valid."""
    jws = json.loads(envelope)
    jws["header"][TIMESTAMP_LABEL] = base64.b64encode(token).decode()
    return json.dumps(jws).encode()


def _swap_cose_token(envelope: bytes, token: bytes) -> bytes:
    outer = cbor2.loads(envelope)
    protected, unprotected, payload, signature = outer.value
    unprotected = {**unprotected, TIMESTAMP_LABEL: token}
    return bytes(cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, signature])))


def _check_all(
    notation: str,
    base: Path,
    w: World | Served,
    layout: OCILayout,
    digest: str,
    cases: list[Case],
    *,
    revocation: str | None,
) -> None:
    """Run every case; report all mismatches at once (with notation's output)."""
    failures = []
    for case in cases:
        ok, out = _run(
            notation, base, layout.path, digest, w.ca.root_certificate, case,
            revocation=revocation,
        )  # fmt: skip
        if ok != case.expect:
            failures.append(f"{case.name}: expected {'pass' if case.expect else 'fail'}\n{out}")
    assert not failures, "\n\n".join(failures)


def test_expired_leaf_verifies_only_with_a_tsa_store(tmp_path: Path) -> None:
    """One real wait for both envelope formats and every policy (the suite waits once)."""
    notation = require_notation()
    tsa, other_tsa = make_local_tsa(), make_local_tsa()
    w = make_world(tmp_path, leaf_validity=timedelta(seconds=LEAF_SECONDS), timestamper=tsa)
    jws = w.ca.cosign(w.request(), now=datetime.now(UTC))
    cose = w.ca.cosign(w.request(signature_format=SignatureFormat.COSE), now=datetime.now(UTC))
    assert jws.signature_format is SignatureFormat.JWS
    assert cose.signature_format is SignatureFormat.COSE
    not_after = max(jws.chain[0].not_valid_after_utc, cose.chain[0].not_valid_after_utc)
    assert not_after - datetime.now(UTC) <= timedelta(seconds=LEAF_SECONDS)
    # the tokens cover the raw signature bytes and pass the independent verifiers
    for response in (jws, cose):
        token = check_token_oracles(response.envelope, tsa.root)
        _, raw = token_and_signature(response.envelope)
        info = verify_token(token, [tsa.root], data=raw)
        assert response.chain[0].not_valid_before_utc <= info.gen_time < not_after
    # a token over other bytes, from the right TSA (still a valid token in itself)
    other_bytes = tsa.timestamp(b"some other signature", hash_algorithm="sha256")
    bad_jws = _swap_jws_token(jws.envelope, other_bytes)
    bad_cose = _swap_cose_token(cose.envelope, other_bytes)
    # before expiry both verify without any tsa: store (the timestamp is not needed yet)
    ok, out = _run(
        notation,
        tmp_path,
        w.layout.path,
        w.image.digest,
        w.ca.root_certificate,
        Case("fresh-no-tsa", jws.envelope, MEDIA_TYPE_JWS, None, None, True),
        revocation="skip",
    )
    assert ok, out

    wait = (not_after - datetime.now(UTC)).total_seconds() + 2
    assert wait < 100
    time.sleep(max(wait, 0))
    assert datetime.now(UTC) > not_after

    root = tsa.root
    _check_all(
        notation,
        tmp_path,
        w,
        w.layout,
        w.image.digest,
        [
            Case("jws-tsa", jws.envelope, MEDIA_TYPE_JWS, root, None, True),
            Case("jws-tsa-always", jws.envelope, MEDIA_TYPE_JWS, root, "always", True),
            Case("jws-tsa-after", jws.envelope, MEDIA_TYPE_JWS, root, "afterCertExpiry", True),
            Case("jws-no-tsa", jws.envelope, MEDIA_TYPE_JWS, None, None, False),
            Case("jws-no-tsa-after", jws.envelope, MEDIA_TYPE_JWS, None, "afterCertExpiry", False),
            Case("jws-other-tsa-root", jws.envelope, MEDIA_TYPE_JWS, other_tsa.root, None, False),
            Case("jws-token-other-bytes", bad_jws, MEDIA_TYPE_JWS, root, "afterCertExpiry", False),
            Case("cose-tsa", cose.envelope, MEDIA_TYPE_COSE, root, None, True),
            Case("cose-tsa-after", cose.envelope, MEDIA_TYPE_COSE, root, "afterCertExpiry", True),
            Case("cose-no-tsa", cose.envelope, MEDIA_TYPE_COSE, None, None, False),
            Case("cose-token-other-bytes", bad_cose, MEDIA_TYPE_COSE, root, None, False),
        ],
        revocation="skip",
    )


def test_verify_timestamp_always_checks_an_unexpired_leafs_token(tmp_path: Path) -> None:
    """Strict, revocation from the served hold: ``always`` checks the timestamp of a valid
    leaf (a swapped token fails), ``afterCertExpiry`` ignores it while the leaf is valid."""
    notation = require_notation()
    tsa, other_tsa = make_local_tsa(), make_local_tsa()
    with serve_hold(ca_options={"timestamper": tsa}) as served:
        repo, layout, image, uri = user(served, tmp_path)
        request = CosignRequest(did=repo.did, descriptor=image, record_uri=uri, caller=repo.did)
        jws = served.ca.cosign(request, now=datetime.now(UTC))
        cose = served.ca.cosign(
            CosignRequest(
                did=repo.did,
                descriptor=image,
                record_uri=uri,
                caller=repo.did,
                signature_format=SignatureFormat.COSE,
            ),
            now=datetime.now(UTC),
        )
        for response in (jws, cose):
            check_token_oracles(response.envelope, tsa.root)
        over_other = tsa.timestamp(b"other bytes", hash_algorithm="sha256")
        _, raw = token_and_signature(jws.envelope)
        by_other_tsa = other_tsa.timestamp(raw, hash_algorithm="sha256")
        check_token_oracles(_swap_jws_token(jws.envelope, by_other_tsa), other_tsa.root)
        root = tsa.root
        cases = []
        for label, token in (("other-bytes", over_other), ("other-tsa", by_other_tsa)):
            bad = _swap_jws_token(jws.envelope, token)
            cases += [
                Case(f"jws-{label}-always", bad, MEDIA_TYPE_JWS, root, "always", False),
                Case(f"jws-{label}-default", bad, MEDIA_TYPE_JWS, root, None, False),
                Case(f"jws-{label}-after", bad, MEDIA_TYPE_JWS, root, "afterCertExpiry", True),
            ]
        bad_cose = _swap_cose_token(cose.envelope, over_other)
        cases += [
            Case("jws-good-always", jws.envelope, MEDIA_TYPE_JWS, root, "always", True),
            Case("cose-good-always", cose.envelope, MEDIA_TYPE_COSE, root, "always", True),
            Case("cose-other-bytes-always", bad_cose, MEDIA_TYPE_COSE, root, "always", False),
            Case("cose-other-after", bad_cose, MEDIA_TYPE_COSE, root, "afterCertExpiry", True),
        ]
        _check_all(notation, tmp_path, served, layout, image.digest, cases, revocation=None)


def _notation_env(config: Path, cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NOTATION_CONFIG": str(config),
        "NOTATION_CACHE": str(cache),
        "NOTATION_EXPERIMENTAL": "1",
    }


def test_notation_sign_with_holdca_tsa(tmp_path: Path) -> None:
    """``notation sign --timestamp-url`` at the reference app's ``POST /tsa``: notation's own
    checks of the reply pass, the signature verifies with a ``tsa:`` store (and not with
    another TSA's root, as notation checks the token of a valid leaf), and the token it
    attached passes openssl and rfc3161-client."""
    notation = require_notation()
    tsa = make_local_tsa()
    config, cache = tmp_path / "notation", tmp_path / "cache"
    env = _notation_env(config, cache)
    subprocess.run(
        [notation, "cert", "generate-test", "--default", "signer"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    keys = json.loads((config / "signingkeys.json").read_text())
    assert keys["default"] == "signer"
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1", content=b"notation sign --timestamp-url\n")
    signer_cert = x509.load_pem_x509_certificate((config / "localkeys/signer.crt").read_bytes())
    # notation requires genTime - accuracy >= notBefore; holdca's genTime is whole seconds
    # with accuracy 1 s and generate-test does not backdate: sign 2 s after its notBefore
    time.sleep(
        max(0.0, (signer_cert.not_valid_before_utc - datetime.now(UTC)).total_seconds() + 2.5)
    )
    root_pem = tmp_path / "tsa-root.pem"
    root_pem.write_bytes(tsa.root.public_bytes(Encoding.PEM))
    with serve_hold(ca_options={"timestamper": tsa}) as served:
        for fmt in ("jws", "cose"):
            proc = subprocess.run(
                [
                    notation, "sign", "--oci-layout", f"{layout.path}@{image.digest}",
                    "--signature-format", fmt,
                    "--timestamp-url", f"{served.base}/tsa",
                    "--timestamp-root-cert", str(root_pem),
                ],
                env=env, capture_output=True, text=True, check=False, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
    signatures = layout.signatures_of(image.digest)
    assert sorted(s.envelope_media_type for s in signatures) == [MEDIA_TYPE_COSE, MEDIA_TYPE_JWS]
    for sig in signatures:
        token = check_token_oracles(sig.envelope, tsa.root)
        info = verify_token(token, [tsa.root], data=token_and_signature(sig.envelope)[1])
        assert info.signer == tsa.chain[0]  # holdca's TSA made it
        assert signer_cert.not_valid_before_utc <= info.gen_time <= datetime.now(UTC)

    # notation's own trust store for its test key, plus holdca's TSA root as tsa:
    def verify(tsa_root: x509.Certificate) -> tuple[bool, str]:
        write_trust_store(config, "hold-tsa", [tsa_root], type="tsa", exact=True)
        write_trust_policy(
            config, hold_trust_policy(store="signer", tsa_store="hold-tsa", revocation="skip")
        )
        return notation_verify(notation, config, layout.path, image.digest)

    ok, out = verify(tsa.root)
    assert ok, out
    ok, out = verify(make_local_tsa().root)
    assert not ok, out


# --- the pieces the interop tests rely on (no notation needed) --------------------------


def test_tsa_policy_oid_fits_gos_int32_arcs() -> None:
    """notation (Go encoding/asn1) refuses an OID arc above 2^31-1: the old 2.25.<UUID>
    policy made every holdca token unparsable ("base 128 integer too large")."""
    arcs = [int(a) for a in HOLDCA_TSA_POLICY.split(".")]
    assert max(arcs) <= 2**31 - 1
    assert check_policy_oid(HOLDCA_TSA_POLICY) == HOLDCA_TSA_POLICY
    assert check_policy_oid("2.25.2147483647") == "2.25.2147483647"
    for bad in ("2.25.230105829140936458725405409061326766466", "2.25.2147483648", "1.40", "3.1"):
        with pytest.raises(TimestampError, match="TSA policy"):
            check_policy_oid(bad)
    for bad in ("", "1", "1..2", "a.b", "1.2.-3", "\u0661.\u0662"):
        with pytest.raises(TimestampError, match="not a dotted OID"):
            check_policy_oid(bad)
    tsa = make_local_tsa()
    with pytest.raises(TimestampError, match="larger than Go"):
        LocalTSA(tsa.signer, tsa.chain, policy="2.25.230105829140936458725405409061326766466")
    request = build_request(b"sig")
    with pytest.raises(TimestampError, match="larger than Go"):
        build_token(
            request, signer=tsa.signer, chain=tsa.chain, now=datetime.now(UTC),
            policy="2.25.230105829140936458725405409061326766466",
        )  # fmt: skip
    info = verify_token(tsa.timestamp(b"sig", hash_algorithm="sha256"), [tsa.root])
    assert info.policy == HOLDCA_TSA_POLICY


def test_hold_trust_policy_tsa_store_and_verify_timestamp() -> None:
    policy = hold_trust_policy(
        store="hold", tsa_store="hold-tsa", verify_timestamp="afterCertExpiry"
    )
    statement = json.loads(policy.to_json())["trustPolicies"][0]
    assert statement["trustStores"] == ["ca:hold", "tsa:hold-tsa"]
    assert statement["signatureVerification"] == {
        "level": "strict",
        "verifyTimestamp": "afterCertExpiry",
    }
    assert validate_trust_policy(policy.to_json()) == policy
    plain = json.loads(hold_trust_policy(store="hold").to_json())["trustPolicies"][0]
    assert plain["trustStores"] == ["ca:hold"]
    assert "verifyTimestamp" not in plain["signatureVerification"]
    with pytest.raises(TrustPolicyError, match="verifyTimestamp"):
        hold_trust_policy(store="hold", tsa_store="t", verify_timestamp="sometimes")
    with pytest.raises(TrustPolicyError, match="trust store"):
        hold_trust_policy(store="hold", tsa_store="bad name")


def _resigned_with_policy(tsa: LocalTSA, token: bytes, policy: str) -> bytes:
    """``token`` with another TSTInfo policy, messageDigest and signature redone (a TSA
    that writes such a policy)."""
    info = cms.ContentInfo.load(token)
    signed = info["content"]
    tst = tsp.TSTInfo.load(bytes(signed["encap_content_info"]["content"].contents))
    tst["policy"] = policy
    signed["encap_content_info"] = {"content_type": "tst_info", "content": tst}
    signer_info = signed["signer_infos"][0]
    digest = hashlib.sha256(tst.dump(force=True)).digest()
    attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "message_digest", "values": [digest]})
            if a["type"].native == "message_digest"
            else cms.CMSAttribute.load(a.dump())
            for a in signer_info["signed_attrs"]
        ]
    )
    signer_info["signature"] = tsa.signer.sign(attrs.dump())  # DER-sorted SET OF, 0x31
    signer_info["signed_attrs"] = attrs
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump(True))


def test_tokens_with_a_policy_go_cannot_parse_are_refused() -> None:
    """What HOLD_TSA_URL's check_response relies on: such a token would reach the envelope
    and then fail every notation verify."""
    tsa = make_local_tsa()
    token = tsa.timestamp(b"sig", hash_algorithm="sha256")
    same = _resigned_with_policy(tsa, token, "2.25.2147483647")
    assert verify_token(same, [tsa.root], data=b"sig").policy == "2.25.2147483647"
    big = _resigned_with_policy(tsa, token, "2.25.230105829140936458725405409061326766466")
    with pytest.raises(TimestampError, match="larger than Go"):
        verify_token(big, [tsa.root], data=b"sig")
