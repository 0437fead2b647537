"""CRL and OCSP URLs on CA certificates: ``issue_intermediate`` and ``cross_sign``.

notation checks the revocation of every certificate of a chain but the root, so an
intermediate or a cross-certificate needs a CRL distribution point or an AIA OCSP URL as
much as a leaf does. Oracles: openssl decodes the extensions (``openssl x509 -ext``) and
builds the chain (``openssl verify -x509_strict``); ``check_notation_profile`` (whose rules
are tested against notation in tests/notation) judges the chains.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from holdca.errors import ProfileError
from holdca.keys import MemorySigner
from holdca.pki import check_notation_profile, cross_sign, issue_intermediate
from tests.pki.helpers import CA, HOLD_DID, SUBJECT, epoch, make_leaf, make_root, openssl, pem

CRL_URL = "http://hold01.example.com/ca.crl"
OCSP_URL = "http://127.0.0.1:8080/ocsp"

_HEADERS = {
    "X509v3 CRL Distribution Points:": "crl",
    "Authority Information Access:": "aia",
}


def revocation_uris(tmp_path: Path, cert: x509.Certificate) -> dict[str, list[str]]:
    """``{"crl": [...], "ocsp": [...]}``: the URIs openssl reads from the CDP and AIA OCSP."""
    out = openssl(
        "x509",
        "-noout",
        "-ext",
        "crlDistributionPoints,authorityInfoAccess",
        "-in",
        pem(tmp_path / "cert.pem", cert),
    )
    assert out.returncode == 0, out.stderr
    found: dict[str, list[str]] = {"crl": [], "ocsp": []}
    section = None
    for raw in out.stdout.splitlines():
        line = raw.strip()
        if line in _HEADERS:
            section = _HEADERS[line]
        elif section == "crl" and (m := re.fullmatch(r"URI:(\S+)", line)):
            found["crl"].append(m[1])
        elif section == "aia" and (m := re.fullmatch(r"OCSP - URI:(\S+)", line)):
            found["ocsp"].append(m[1])
    return found


def openssl_verifies(
    tmp_path: Path,
    now: datetime,
    anchor: CA,
    untrusted: list[x509.Certificate],
    leaf: x509.Certificate,
) -> tuple[int, str]:
    """``openssl verify -x509_strict`` of ``leaf`` through ``untrusted`` up to ``anchor``."""
    out = openssl(
        "verify",
        "-x509_strict",
        "-attime",
        epoch(now),
        "-CAfile",
        pem(tmp_path / "anchor.pem", anchor.cert),
        "-untrusted",
        pem(tmp_path / "untrusted.pem", *untrusted),
        pem(tmp_path / "leaf.pem", leaf),
    )
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module")
def roots(now: datetime) -> tuple[CA, CA]:
    """An old root and a new one with a distinct name (so cross-certificates are not
    self-issued)."""
    old = make_root(now - timedelta(days=30), common_name=f"ATCR Hold CA G1 - {HOLD_DID}")
    new = make_root(now, common_name=f"ATCR Hold CA G2 - {HOLD_DID}")
    return old, new


def intermediate(root: CA, now: datetime, **urls: str | None) -> CA:
    """A fresh P-256 issuing CA under ``root`` (``urls``: crl_url / ocsp_url)."""
    signer = MemorySigner.generate()
    cert = issue_intermediate(
        root.signer,
        root.cert,
        signer.public_key,
        hold_did=HOLD_DID,
        subject=SUBJECT,
        now=now,
        **urls,  # type: ignore[arg-type]
    )
    return CA(signer, cert)


URL_CASES = [
    pytest.param({"crl_url": CRL_URL, "ocsp_url": OCSP_URL}, id="both"),
    pytest.param({"crl_url": CRL_URL}, id="crl-only"),
    pytest.param({"ocsp_url": OCSP_URL}, id="ocsp-only"),
    pytest.param({}, id="none"),
]


def expected(urls: dict[str, str]) -> dict[str, list[str]]:
    return {
        "crl": [urls["crl_url"]] if "crl_url" in urls else [],
        "ocsp": [urls["ocsp_url"]] if "ocsp_url" in urls else [],
    }


@pytest.mark.interop
@pytest.mark.parametrize("urls", URL_CASES)
def test_intermediate_carries_the_urls(
    tmp_path: Path, now: datetime, root: CA, urls: dict[str, str]
) -> None:
    """The intermediate's CDP / AIA OCSP are the URLs given, and only those."""
    inter = intermediate(root, now, **urls)
    assert revocation_uris(tmp_path, inter.cert) == expected(urls)
    # The chain below it still passes notation's profile and openssl's strict path check.
    leaf = make_leaf(inter, now, crl_url=CRL_URL, ocsp_url=OCSP_URL)
    check_notation_profile([leaf, inter.cert, root.cert], now=now)
    rc, text = openssl_verifies(tmp_path, now, root, [inter.cert], leaf)
    assert rc == 0, text


@pytest.mark.interop
@pytest.mark.parametrize("urls", URL_CASES)
def test_cross_certificate_carries_the_urls(
    tmp_path: Path, now: datetime, roots: tuple[CA, CA], urls: dict[str, str]
) -> None:
    """The cross-certificate (new root under the old one) carries the URLs given."""
    old, new = roots
    cross = cross_sign(old.signer, old.cert, new.cert, now=now, **urls)  # type: ignore[arg-type]
    assert revocation_uris(tmp_path, cross) == expected(urls)
    # A leaf under the new root verifies for a relying party trusting only the old root.
    leaf = make_leaf(new, now, crl_url=CRL_URL, ocsp_url=OCSP_URL)
    check_notation_profile([leaf, cross, old.cert], now=now)
    rc, text = openssl_verifies(tmp_path, now, old, [cross], leaf)
    assert rc == 0, text


def _issue_intermediate(roots: tuple[CA, CA], now: datetime, **urls: str) -> object:
    return intermediate(roots[0], now, **urls)


def _cross_sign(roots: tuple[CA, CA], now: datetime, **urls: str) -> object:
    old, new = roots
    return cross_sign(old.signer, old.cert, new.cert, now=now, **urls)  # type: ignore[arg-type]


ISSUERS: dict[str, Callable[..., object]] = {
    "issue_intermediate": _issue_intermediate,
    "cross_sign": _cross_sign,
}


@pytest.mark.parametrize("issuer", sorted(ISSUERS))
@pytest.mark.parametrize(("keyword", "rule"), [("crl_url", "crl-url"), ("ocsp_url", "ocsp-url")])
@pytest.mark.parametrize(
    "url",
    [
        "https://hold01.example.com/ca.crl",
        "HTTPS://hold01.example.com/ocsp",
        "ftp://hold01.example.com/ca.crl",
        "ldap://hold01.example.com/cn=ca",
    ],
)
def test_non_http_urls_are_refused(
    now: datetime, roots: tuple[CA, CA], issuer: str, keyword: str, rule: str, url: str
) -> None:
    """notation fetches only http:// URLs: anything else is a ProfileError naming the URL."""
    scheme = url.split(":", 1)[0].lower()
    with pytest.raises(ProfileError, match=rf"^{rule}: .*{scheme!r}"):
        ISSUERS[issuer](roots, now, **{keyword: url})


@pytest.mark.parametrize("issuer", sorted(ISSUERS))
@pytest.mark.parametrize("url", ["http://", "http:///ca.crl", "hold01.example.com/ca.crl"])
def test_urls_without_a_host_or_scheme_are_refused(
    now: datetime, roots: tuple[CA, CA], issuer: str, url: str
) -> None:
    """A relative URL or one without a host is refused too (rule crl-url)."""
    with pytest.raises(ProfileError, match=r"^crl-url: "):
        ISSUERS[issuer](roots, now, crl_url=url)
