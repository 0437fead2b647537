"""Cross-signing for root rotation: openssl and the lint build both directions."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from holdca.errors import ProfileError
from holdca.keys import MemorySigner
from holdca.pki import ProfileRuleError, check_notation_profile, cross_sign, issue_intermediate
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, epoch, make_leaf, make_root, openssl, pem


@pytest.fixture(scope="module")
def roots(now: datetime) -> tuple[CA, CA]:
    old = make_root(now - timedelta(days=300), common_name=f"ATCR Hold CA G1 - {HOLD_DID}")
    new = make_root(now, common_name=f"ATCR Hold CA G2 - {HOLD_DID}")
    return old, new


def cn_line(cert: x509.Certificate) -> str:
    return (
        "C = US, ST = CA, O = Example Hold, CN = " + cert.subject.rfc4514_string().split(",")[0][3:]
    )


def show_chain(
    tmp_path: Path,
    now: datetime,
    trusted: CA,
    untrusted: list[x509.Certificate],
    leaf: x509.Certificate,
) -> tuple[int, str]:
    args: list[str | Path] = [
        "verify",
        "-x509_strict",
        "-show_chain",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "trust.pem", trusted.cert),
    ]
    if untrusted:
        args += ["-untrusted", pem(tmp_path / "untrusted.pem", *untrusted)]
    out = openssl(*args, pem(tmp_path / "leaf.pem", leaf))
    return out.returncode, out.stdout + out.stderr


def depth_subjects(text: str) -> list[tuple[str, bool]]:
    """(subject, untrusted?) per depth of ``openssl verify -show_chain``."""
    return [
        (m[0], bool(m[1])) for m in re.findall(r"^depth=\d+: (.*?)( \(untrusted\))?$", text, re.M)
    ]


@pytest.mark.parametrize("direction", ["old-signs-new", "new-signs-old"])
def test_openssl_builds_the_cross_chain(
    tmp_path: Path, now: datetime, roots: tuple[CA, CA], direction: str
) -> None:
    old, new = roots
    issuer, subject = (old, new) if direction == "old-signs-new" else (new, old)
    cross = cross_sign(issuer.signer, issuer.cert, subject.cert, now=now)
    leaf = make_leaf(subject, now)
    # Without the cross-certificate the issuer's root alone cannot verify the leaf.
    rc, text = show_chain(tmp_path, now, issuer, [subject.cert], leaf)
    assert rc != 0, text
    # With it, openssl finds the path. (The subject's self-signed root may lie around too,
    # after the cross-certificate: openssl 3.0 takes the first matching untrusted issuer and
    # does not backtrack from a self-signed one. notation gets an explicit x5c instead.)
    for untrusted in ([cross], [cross, subject.cert]):
        rc, text = show_chain(tmp_path, now, issuer, untrusted, leaf)
        assert rc == 0, text
        subjects = depth_subjects(text)
        assert len(subjects) == 3, text
        assert subjects[1] == (cn_line(subject.cert), True)  # the cross-certificate
        assert subjects[2] == (cn_line(issuer.cert), False)  # the trust anchor
    # notation's x5c would be [leaf, cross, issuer root].
    check_notation_profile([leaf, cross, issuer.cert], now=now)
    # The subject's own root still verifies the leaf directly.
    rc, text = show_chain(tmp_path, now, subject, [], leaf)
    assert rc == 0, text


def test_cross_certificate_profile(now: datetime, roots: tuple[CA, CA]) -> None:
    old, new = roots
    cross = cross_sign(old.signer, old.cert, new.cert, now=now)
    assert cross.subject == new.cert.subject
    assert cross.issuer == old.cert.subject
    assert cross.public_key() == new.cert.public_key()
    ski = x509.SubjectKeyIdentifier
    assert (
        cross.extensions.get_extension_for_class(ski).value
        == new.cert.extensions.get_extension_for_class(ski).value
    )
    aki = cross.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == old.cert.extensions.get_extension_for_class(ski).value.digest
    bc = cross.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    assert cross.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert cross.not_valid_after_utc == min(
        new.cert.not_valid_after_utc, old.cert.not_valid_after_utc
    )


def test_intermediate_below_the_cross_needs_path_room(now: datetime, roots: tuple[CA, CA]) -> None:
    old, new = roots
    cross = cross_sign(old.signer, old.cert, new.cert, now=now)
    inter_signer = MemorySigner.generate()
    inter = CA(
        inter_signer,
        issue_intermediate(
            new.signer,
            new.cert,
            inter_signer.public_key,
            hold_did=HOLD_DID,
            subject=SUBJECT,
            now=now,
        ),
    )
    leaf = make_leaf(inter, now)
    with pytest.raises(ProfileRuleError) as info:
        check_notation_profile([leaf, inter.cert, cross, old.cert], now=now)
    assert info.value.rule == "ca-path-length"
    roomy_old = make_root(now, common_name=f"ATCR Hold CA G0 - {HOLD_DID}", path_length=2)
    roomy_cross = cross_sign(roomy_old.signer, roomy_old.cert, new.cert, now=now)
    check_notation_profile([leaf, inter.cert, roomy_cross, roomy_old.cert], now=now)


def test_cross_sign_refusals(now: datetime, roots: tuple[CA, CA]) -> None:
    old, new = roots
    twin = make_root(now)
    same_name = make_root(now)
    with pytest.raises(ProfileError, match="cross-name"):
        cross_sign(twin.signer, twin.cert, same_name.cert, now=now)
    with pytest.raises(ProfileError, match="cross-subject"):
        cross_sign(old.signer, old.cert, make_leaf(new, now), now=now)
    no_room = make_root(
        now, common_name="ATCR Hold CA G9 - did:web:hold01.example.com", path_length=0
    )
    with pytest.raises(ProfileError, match="cross-path-length"):
        cross_sign(no_room.signer, no_room.cert, new.cert, now=now)
    expired = make_root(
        now - timedelta(days=20), common_name="ATCR Hold CA G8 - x", validity=timedelta(days=10)
    )
    with pytest.raises(ProfileError, match="cross-validity"):
        cross_sign(old.signer, old.cert, expired.cert, now=now)
