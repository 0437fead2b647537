"""CRLs: openssl verify -crl_check, openssl crl -text, round trips, selection, errors."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from holdca.errors import CRLError, ProfileError
from holdca.keys import MemorySigner, SignatureAlgorithm
from holdca.pki import (
    RevokedEntry,
    build_crl,
    issue_intermediate,
    issue_leaf,
    issue_root,
    random_serial,
    select_for_crl,
)
from holdca.pki import crl as crl_module
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, epoch, make_leaf, make_root, openssl, pem


def crl_pem(path: Path, crl: x509.CertificateRevocationList) -> Path:
    path.write_bytes(crl.public_bytes(Encoding.PEM))
    return path


def crl_for(
    ca: CA, now: datetime, entries: list[RevokedEntry], number: int = 1
) -> x509.CertificateRevocationList:
    return build_crl(
        ca.signer,
        ca.cert,
        entries,
        crl_number=number,
        this_update=now,
        next_update=now + timedelta(hours=1),
    )


def test_openssl_crl_check_good_and_revoked(tmp_path: Path, root: CA, now: datetime) -> None:
    good = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    bad = make_leaf(root, now, crl_url="http://hold.example.com/crl")
    crl = crl_for(
        root, now, [RevokedEntry(bad.serial_number, now, x509.ReasonFlags.key_compromise)]
    )
    args = [
        "verify",
        "-attime",
        epoch(now),
        "-crl_check",
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        "-CRLfile",
        crl_pem(tmp_path / "c.pem", crl),
    ]
    ok = openssl(*args, pem(tmp_path / "good.pem", good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoked = openssl(*args, pem(tmp_path / "bad.pem", bad))
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr


def test_openssl_crl_check_all_with_intermediate(tmp_path: Path, root: CA, now: datetime) -> None:
    inter_signer = MemorySigner.generate()
    inter = CA(
        inter_signer,
        issue_intermediate(
            root.signer,
            root.cert,
            inter_signer.public_key,
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=now,
        ),
    )
    good, bad = make_leaf(inter, now), make_leaf(inter, now)
    root_crl = crl_for(root, now, [])
    inter_crl = crl_for(inter, now, [RevokedEntry(bad.serial_number, now)])
    args: list[str | Path] = [
        "verify",
        "-attime",
        epoch(now),
        "-crl_check_all",
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        "-untrusted",
        pem(tmp_path / "i.pem", inter.cert),
        "-CRLfile",
        crl_pem(tmp_path / "rc.pem", root_crl),
        "-CRLfile",
        crl_pem(tmp_path / "ic.pem", inter_crl),
    ]
    ok = openssl(*args, pem(tmp_path / "good.pem", good))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoked = openssl(*args, pem(tmp_path / "bad.pem", bad))
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    # Revoking the intermediate in the root's CRL revokes the whole branch.
    root_crl2 = crl_for(root, now, [RevokedEntry(inter.cert.serial_number, now)], number=2)
    args[args.index(tmp_path / "rc.pem")] = crl_pem(tmp_path / "rc2.pem", root_crl2)
    branch = openssl(*args, tmp_path / "good.pem")
    assert "certificate revoked" in branch.stdout + branch.stderr
    # Without the intermediate's CRL, -crl_check_all cannot succeed.
    missing = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-crl_check_all",
        "-CAfile",
        tmp_path / "r.pem",
        "-untrusted",
        tmp_path / "i.pem",
        "-CRLfile",
        tmp_path / "rc.pem",
        tmp_path / "good.pem",
    )
    assert missing.returncode != 0


def test_openssl_crl_text(tmp_path: Path, root: CA, now: datetime) -> None:
    entries = [
        RevokedEntry(
            0xABCDEF,
            now - timedelta(hours=1),
            x509.ReasonFlags.key_compromise,
            invalidity_date=now - timedelta(hours=3),
        ),
        RevokedEntry(0x123456, now - timedelta(minutes=1), x509.ReasonFlags.certificate_hold),
        RevokedEntry(0x777, now, x509.ReasonFlags.unspecified),
    ]
    crl = build_crl(
        root.signer,
        root.cert,
        entries,
        crl_number=4242,
        this_update=now,
        next_update=now + timedelta(hours=6),
    )
    out = openssl(
        "crl", "-in", crl_pem(tmp_path / "c.pem", crl), "-text", "-noout", check=True
    ).stdout
    assert "Version 2 (0x1)" in out
    assert re.search(r"X509v3 CRL Number:\s*\n\s*4242", out)
    assert "X509v3 Authority Key Identifier" in out
    assert re.search(
        r"Serial Number: ABCDEF\s*\n.*\n\s*CRL entry extensions:\s*\n"
        r"\s*X509v3 CRL Reason Code:\s*\n\s*Key Compromise\s*\n\s*Invalidity Date:",
        out,
    )
    assert re.search(
        r"Serial Number: 123456\s*\n.*\n\s*CRL entry extensions:\s*\n"
        r"\s*X509v3 CRL Reason Code:\s*\n\s*Certificate Hold",
        out,
    )
    assert re.search(
        r"Serial Number: 0777\s*\n\s*Revocation Date: [^\n]*\n(?!\s*CRL entry extensions)", out
    )
    assert "Next Update:" in out
    verify = openssl(
        "crl", "-in", tmp_path / "c.pem", "-noout", "-CAfile", pem(tmp_path / "r.pem", root.cert)
    )
    assert "verify OK" in verify.stdout + verify.stderr


@settings(max_examples=25)
@given(
    serials=st.sets(st.integers(min_value=1, max_value=(1 << 128) - 1), max_size=60),
    others=st.lists(st.integers(min_value=1, max_value=(1 << 159) - 1), max_size=20),
    reason=st.sampled_from([None, *x509.ReasonFlags]),
)
def test_crl_round_trip(
    root: CA, now: datetime, serials: set[int], others: list[int], reason: x509.ReasonFlags | None
) -> None:
    entries = [
        RevokedEntry(s, now - timedelta(seconds=i), reason) for i, s in enumerate(sorted(serials))
    ]
    crl = x509.load_der_x509_crl(crl_for(root, now, entries).public_bytes(Encoding.DER))
    assert crl.is_signature_valid(root.signer.public_key)  # type: ignore[arg-type]
    assert len(crl) == len(serials)
    for entry in entries:
        found = crl.get_revoked_certificate_by_serial_number(entry.serial)
        assert found is not None
        assert found.revocation_date_utc == entry.revoked_at
        if reason in (None, x509.ReasonFlags.unspecified):
            assert len(found.extensions) == 0
        else:
            assert found.extensions.get_extension_for_class(x509.CRLReason).value.reason == reason
    for other in others:
        if other not in serials:
            assert crl.get_revoked_certificate_by_serial_number(other) is None


@settings(max_examples=50)
@given(
    ages=st.lists(st.integers(min_value=-48, max_value=24 * 30), max_size=30),
    retention_h=st.integers(min_value=0, max_value=24 * 14),
)
def test_select_for_crl(now: datetime, ages: list[int], retention_h: int) -> None:
    retention = timedelta(hours=retention_h)
    entries = [
        RevokedEntry(i + 1, now - timedelta(hours=abs(a) + 24), not_after=now - timedelta(hours=a))
        for i, a in enumerate(ages)
    ]
    entries.append(RevokedEntry(10_000, now - timedelta(days=999)))  # not_after unknown: kept
    kept = select_for_crl(entries, now=now, retention=retention)
    expected = [e for e in entries if e.not_after is None or e.not_after + retention > now]
    assert kept == expected
    assert entries[-1] in kept
    for e in entries[:-1]:
        expired_for = now - e.not_after  # type: ignore[operator]
        assert (e in kept) == (expired_for < retention)


def test_select_for_crl_errors(now: datetime) -> None:
    with pytest.raises(CRLError):
        select_for_crl([], now=now.replace(tzinfo=None), retention=timedelta(0))
    with pytest.raises(CRLError):
        select_for_crl([], now=now, retention=timedelta(seconds=-1))


@pytest.mark.parametrize("number", [-1, 1 << 159, True, 1.5, "7"])
def test_bad_crl_number(root: CA, now: datetime, number: object) -> None:
    with pytest.raises(CRLError, match="crl_number"):
        build_crl(
            root.signer,
            root.cert,
            [],
            crl_number=number,
            this_update=now,  # type: ignore[arg-type]
            next_update=now + timedelta(hours=1),
        )


def test_largest_crl_number_is_accepted(root: CA, now: datetime) -> None:
    crl = build_crl(
        root.signer,
        root.cert,
        [],
        crl_number=(1 << 159) - 1,
        this_update=now,
        next_update=now + timedelta(hours=1),
    )
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (1 << 159) - 1


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=5)])
def test_next_update_must_follow_this_update(root: CA, now: datetime, delta: timedelta) -> None:
    with pytest.raises(CRLError, match="next_update"):
        build_crl(
            root.signer, root.cert, [], crl_number=1, this_update=now, next_update=now + delta
        )


def test_naive_times_are_refused(root: CA, now: datetime) -> None:
    with pytest.raises(CRLError, match="timezone-aware"):
        build_crl(
            root.signer,
            root.cert,
            [],
            crl_number=1,
            this_update=now.replace(tzinfo=None),
            next_update=now + timedelta(hours=1),
        )
    with pytest.raises(CRLError, match="revoked_at"):
        crl_for(root, now, [RevokedEntry(5, now.replace(tzinfo=None))])
    with pytest.raises(CRLError, match="1950"):
        crl_for(root, now, [RevokedEntry(5, now.replace(year=1949))])


@pytest.mark.parametrize("serial", [0, -3, 1 << 159, True])
def test_bad_entry_serial(root: CA, now: datetime, serial: int) -> None:
    with pytest.raises(CRLError, match="serial"):
        crl_for(root, now, [RevokedEntry(serial, now)])


def test_duplicate_serials_are_refused(root: CA, now: datetime) -> None:
    with pytest.raises(CRLError, match="duplicate"):
        crl_for(root, now, [RevokedEntry(5, now), RevokedEntry(5, now - timedelta(hours=1))])


def test_bad_reason_is_refused(root: CA, now: datetime) -> None:
    with pytest.raises(CRLError, match="reason"):
        crl_for(root, now, [RevokedEntry(5, now, "keyCompromise")])  # type: ignore[arg-type]


def test_issuer_checks(root: CA, now: datetime) -> None:
    with pytest.raises(ProfileError, match="issuer-key"):
        build_crl(
            MemorySigner.generate(),
            root.cert,
            [],
            crl_number=1,
            this_update=now,
            next_update=now + timedelta(hours=1),
        )
    signer = MemorySigner.generate()
    leaf = issue_leaf(
        root.signer,
        root.cert,
        did="did:plc:ewvi7nxzyoun6zhxrhs64oiz",
        public_key=signer.public_key,
        subject=SUBJECT,
        now=now,
    )
    with pytest.raises(ProfileError, match="cRLSign"):
        build_crl(
            signer, leaf, [], crl_number=1, this_update=now, next_update=now + timedelta(hours=1)
        )


def test_crl_over_the_size_limit_is_refused(
    root: CA, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [RevokedEntry(random_serial(), now) for _ in range(100)]
    size = len(crl_for(root, now, entries).public_bytes(Encoding.DER))
    monkeypatch.setattr(crl_module, "MAX_CRL_BYTES", size - 16)  # ECDSA DER varies
    with pytest.raises(CRLError, match="limit"):
        crl_for(root, now, entries)
    monkeypatch.setattr(crl_module, "MAX_CRL_BYTES", 100 * crl_module.CRL_ENTRY_MIN_BYTES - 1)
    with pytest.raises(CRLError, match="cannot fit"):
        crl_for(root, now, entries)


@pytest.mark.parametrize(
    ("reason", "invalidity"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_estimate_is_an_upper_bound(
    root: CA, now: datetime, reason: bool, invalidity: bool
) -> None:
    entries = [
        RevokedEntry(
            (1 << 127) | random_serial(),  # 17 DER octets: the longest 128-bit serial
            now,
            x509.ReasonFlags.superseded if reason else None,
            invalidity_date=now - timedelta(hours=1) if invalidity else None,
        )
        for _ in range(500)
    ]
    size = len(crl_for(root, now, entries).public_bytes(Encoding.DER))
    estimate = crl_module.estimate_crl_bytes(500, with_reason=reason, with_invalidity=invalidity)
    assert size <= estimate <= size * 1.05


def test_p384_ca_signs_crls(tmp_path: Path, now: datetime) -> None:
    signer = MemorySigner.generate(SignatureAlgorithm.ES384)
    root = CA(signer, issue_root(signer, hold_did=HOLD_DID, subject=SUBJECT, now=now))
    leaf = make_leaf(root, now)
    crl = crl_for(root, now, [RevokedEntry(leaf.serial_number, now)])
    out = openssl(
        "verify",
        "-attime",
        epoch(now),
        "-crl_check",
        "-CAfile",
        pem(tmp_path / "r.pem", root.cert),
        "-CRLfile",
        crl_pem(tmp_path / "c.pem", crl),
        pem(tmp_path / "l.pem", leaf),
    )
    assert "certificate revoked" in out.stdout + out.stderr
    assert make_root  # fixture-free root construction helper is shared with other modules
