"""The profile rules every certificate holdca issues follows, shared by issuance and templates.

:mod:`holdca.pki.issue` (the builder path) and :mod:`holdca.pki.template` (the DER path for
user leaves) both build on this module, and neither imports the other's internals:

* **validity**: :func:`validity_window` / :func:`window_within`, ``[now - backdate,
  now + validity]`` clamped to the issuer's validity (an issuer not valid at ``now`` is a
  :class:`~holdca.errors.ProfileError`); :func:`aware` and :func:`positive` check the inputs;
* **issuer**: :func:`check_issuer` (a Certificate with basicConstraints CA=true whose key
  is the signer's, :func:`check_issuer_key`);
* **keys**: :func:`check_public_key` (P-256/P-384/P-521, RSA 2048/3072/4096);
* **URLs**: :func:`check_http_url` (``http://`` only: notation fetches nothing else);
  :func:`revocation_extensions` and :func:`with_revocation_urls` (CRL distribution point,
  AIA OCSP);
* **serials**: :func:`random_serial`, :func:`valid_serial` (positive, at most 20 octets);
* **extensions**: :func:`ca_key_usage`, :func:`signature_only_key_usage`,
  :func:`subject_key_identifier`, :func:`authority_key_identifier`;
* the default lifetimes (``DEFAULT_*``).

Errors: a profile violation raises :class:`~holdca.errors.ProfileError` with the rule name
first (``issuer-ca: ...``); a wrong Python type or an out-of-range duration raises
TypeError / ValueError (programming errors, not input).
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from holdca.errors import ProfileError
from holdca.keys import PublicKey, Signer, spki_der

__all__ = [
    "DEFAULT_BACKDATE",
    "DEFAULT_CA_VALIDITY",
    "DEFAULT_INTERMEDIATE_VALIDITY",
    "DEFAULT_LEAF_VALIDITY",
    "DEFAULT_RESPONDER_VALIDITY",
    "MAX_SERIAL_BITS",
    "authority_key_identifier",
    "aware",
    "ca_key_usage",
    "certificate_builder",
    "check_http_url",
    "check_issuer",
    "check_issuer_key",
    "check_public_key",
    "key_usage",
    "positive",
    "random_serial",
    "revocation_extensions",
    "signature_only_key_usage",
    "subject_key_identifier",
    "valid_serial",
    "validity_window",
    "window_within",
    "with_revocation_urls",
]

DEFAULT_CA_VALIDITY = timedelta(days=3650)
"""Default root lifetime: 10 years."""

DEFAULT_INTERMEDIATE_VALIDITY = timedelta(days=1825)
"""Default intermediate lifetime: 5 years (clamped to the root's notAfter)."""

DEFAULT_LEAF_VALIDITY = timedelta(hours=24)
"""Default user leaf lifetime."""

DEFAULT_RESPONDER_VALIDITY = timedelta(days=7)
"""Default delegated OCSP responder lifetime (short: it carries id-pkix-ocsp-nocheck)."""

DEFAULT_BACKDATE = timedelta(minutes=5)
"""How far notBefore is set before ``now`` to absorb clock skew."""

MAX_SERIAL_BITS = 159
"""The largest serial number, in bits: 20 DER octets including the sign octet (RFC 5280)."""

_LEAF_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_LEAF_RSA_BITS = frozenset({2048, 3072, 4096})
_ZERO = timedelta(0)


# --- serial numbers ------------------------------------------------------------------


def random_serial(bits: int = 128) -> int:
    """A positive random serial number of at most ``bits`` bits (CSPRNG).

    With the default 128 bits the DER INTEGER is at most 17 octets (a leading zero octet is
    added when the top bit is set), well inside RFC 5280's 20-octet limit.

    Raises:
        ValueError: ``bits`` is below 64 (too little entropy) or above 159 (over 20 octets).
    """
    if not 64 <= bits <= MAX_SERIAL_BITS:
        raise ValueError(f"serial bits must be 64..{MAX_SERIAL_BITS}, got {bits}")
    while True:
        serial = secrets.randbits(bits)
        if serial.bit_length() >= bits - 32:  # 0 is invalid; tiny values are astronomically rare
            return serial


def valid_serial(serial: object) -> bool:
    """Whether ``serial`` is an int (not a bool), positive and at most 159 bits (20 octets).

    Never raises.
    """
    return (
        isinstance(serial, int)
        and not isinstance(serial, bool)
        and 0 < serial < (1 << MAX_SERIAL_BITS)
    )


# --- validity ------------------------------------------------------------------------


def aware(value: datetime, what: str) -> datetime:
    """``value``, checked to be timezone-aware, truncated to whole seconds.

    Raises:
        TypeError: ``value`` is not a datetime (``what`` names it).
        ValueError: ``value`` is naive.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.replace(microsecond=0) if value.microsecond else value


def positive(value: timedelta, what: str, *, allow_zero: bool = False) -> timedelta:
    """``value``, checked to be a timedelta above zero (or zero, with ``allow_zero``).

    Raises:
        TypeError: ``value`` is not a timedelta (``what`` names it).
        ValueError: ``value`` is negative, or zero without ``allow_zero``.
    """
    if not isinstance(value, timedelta):
        raise TypeError(f"{what} must be a timedelta, not {type(value).__name__}")
    if value < _ZERO or (value == _ZERO and not allow_zero):
        raise ValueError(f"{what} must be positive, got {value}")
    return value


def validity_window(
    issuer_cert: x509.Certificate | None, now: datetime, validity: timedelta, backdate: timedelta
) -> tuple[datetime, datetime]:
    """(notBefore, notAfter) for a certificate under ``issuer_cert`` (None: self-signed).

    :func:`window_within` with the issuer's (notBefore, notAfter) as bounds.

    Raises:
        The errors of :func:`window_within`.
    """
    bounds = None
    if issuer_cert is not None:
        bounds = (issuer_cert.not_valid_before_utc, issuer_cert.not_valid_after_utc)
    return window_within(bounds, now, validity, backdate)


def window_within(
    bounds: tuple[datetime, datetime] | None,
    now: datetime,
    validity: timedelta,
    backdate: timedelta,
) -> tuple[datetime, datetime]:
    """(notBefore, notAfter): ``[now - backdate, now + validity]`` clamped to ``bounds``.

    ``bounds`` is the issuer's (notBefore, notAfter), or None for a self-signed root.

    Raises:
        TypeError, ValueError: ``now`` is not an aware datetime, or a duration is not positive.
        ProfileError: ``now`` is outside ``bounds`` (the issuer is not valid at ``now``).
    """
    now = aware(now, "now")
    positive(validity, "validity")
    positive(backdate, "backdate", allow_zero=True)
    not_before = now - backdate
    not_after = now + validity
    if bounds is not None:
        issuer_nb, issuer_na = bounds
        if not issuer_nb <= now < issuer_na:
            raise ProfileError(
                f"issuer-validity: the issuer is valid {issuer_nb.isoformat()} .. "
                f"{issuer_na.isoformat()}, not at {now.isoformat()}"
            )
        not_before = max(not_before, issuer_nb)
        not_after = min(not_after, issuer_na)
    return not_before, not_after


# --- issuer and subject keys ---------------------------------------------------------


def check_issuer_key(signer: Signer, issuer_cert: x509.Certificate) -> None:
    """Raise ProfileError (rule issuer-key) unless ``signer`` holds ``issuer_cert``'s key."""
    if spki_der(signer.public_key) != spki_der(issuer_cert.public_key()):
        raise ProfileError("issuer-key: the signer's key is not the issuer certificate's key")


def check_issuer(signer: Signer, issuer_cert: x509.Certificate) -> None:
    """Check that ``issuer_cert`` can issue with ``signer``: its key, and CA=true.

    Raises:
        TypeError: ``issuer_cert`` is not a Certificate.
        ProfileError: the signer's key is not the certificate's (issuer-key), or the
            certificate has no basicConstraints or says CA=false (issuer-ca).
    """
    if not isinstance(issuer_cert, x509.Certificate):
        raise TypeError(f"issuer_cert must be a Certificate, not {type(issuer_cert).__name__}")
    check_issuer_key(signer, issuer_cert)
    try:
        bc = issuer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ProfileError("issuer-ca: the issuer certificate has no basicConstraints") from None
    if not bc.ca:
        raise ProfileError("issuer-ca: the issuer certificate is not a CA (CA=false)")


def check_public_key(key: object, what: str) -> PublicKey:
    """``key``, checked to be one notation accepts: P-256/P-384/P-521 or RSA 2048/3072/4096.

    Raises:
        ProfileError: (rule ``what``) another curve, RSA size or key type.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _LEAF_CURVES:
            raise ProfileError(f"{what}: curve {key.curve.name} is not P-256/P-384/P-521")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size not in _LEAF_RSA_BITS:
            raise ProfileError(f"{what}: RSA-{key.key_size} is not RSA 2048/3072/4096")
        return key
    raise ProfileError(f"{what}: unsupported public key type {type(key).__name__}")


# --- revocation URLs -----------------------------------------------------------------


def check_http_url(url: str, what: str) -> str:
    """Return ``url`` if notation can fetch it: an absolute ``http://`` URL with a host.

    notation's CRL and OCSP clients refuse every other scheme (notation-core-go
    ``revocation/crl/fetcher.go`` ``fetchCRL`` and ``revocation/internal/ocsp/ocsp.go``
    ``checkStatusFromServer``), so an ``https://`` URL would make revocation status "unknown".

    Raises:
        ProfileError: not a string, not ASCII, whitespace, a scheme other than http, or no host.
    """
    if not isinstance(url, str):
        raise ProfileError(f"{what}: URL must be a string, not {type(url).__name__}")
    return _check_http_url_text(url, what)


@functools.lru_cache(maxsize=256)  # a hold passes the same two URLs for every leaf
def _check_http_url_text(url: str, what: str) -> str:
    if not url.isascii() or any(ch.isspace() or ord(ch) < 0x21 for ch in url):
        raise ProfileError(f"{what}: URL must be printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ProfileError(f"{what}: not a valid URL") from None
    if parts.scheme.lower() != "http":
        raise ProfileError(
            f"{what}: notation only fetches http:// URLs, got scheme {parts.scheme!r}"
        )
    if not host:
        raise ProfileError(f"{what}: URL has no host")
    return url


def revocation_extensions(
    crl_url: str | None, ocsp_url: str | None
) -> list[x509.CRLDistributionPoints | x509.AuthorityInformationAccess]:
    """The CRL distribution point and AIA OCSP extensions for the URLs given, in that order.

    Each URL is checked with :func:`check_http_url` (rules crl-url, ocsp-url); None adds
    nothing. Both extensions are non-critical.

    Raises:
        ProfileError: a URL is not an absolute ``http://`` URL.
    """
    found: list[x509.CRLDistributionPoints | x509.AuthorityInformationAccess] = []
    if crl_url is not None:
        check_http_url(crl_url, "crl-url")
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        found.append(x509.CRLDistributionPoints([point]))
    if ocsp_url is not None:
        check_http_url(ocsp_url, "ocsp-url")
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        found.append(x509.AuthorityInformationAccess([access]))
    return found


def with_revocation_urls(
    builder: x509.CertificateBuilder, crl_url: str | None, ocsp_url: str | None
) -> x509.CertificateBuilder:
    """``builder`` plus :func:`revocation_extensions` (non-critical), when URLs are given.

    Raises:
        ProfileError: a URL is not an absolute ``http://`` URL.
    """
    for extension in revocation_extensions(crl_url, ocsp_url):
        builder = builder.add_extension(extension, critical=False)
    return builder


# --- extensions ----------------------------------------------------------------------


def subject_key_identifier(key: PublicKey) -> x509.SubjectKeyIdentifier:
    """The SKI of ``key``: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1)."""
    return x509.SubjectKeyIdentifier.from_public_key(key)


def authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI naming ``issuer_cert``: its SKI, or one computed from its key if it has none.

    Raises:
        ProfileError: (issuer-key) the issuer has no SKI and a key type notation refuses.
    """
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            check_public_key(issuer_cert.public_key(), "issuer-key")
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def certificate_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    serial: int,
    window: tuple[datetime, datetime],
) -> x509.CertificateBuilder:
    """A CertificateBuilder with the fields every profile sets (window: notBefore, notAfter)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(window[0])
        .not_valid_after(window[1])
    )


def key_usage(*, digital_signature: bool, certificate_sign: bool) -> x509.KeyUsage:
    """A keyUsage with only digitalSignature and/or keyCertSign + cRLSign set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_sign,
        crl_sign=certificate_sign,
        encipher_only=False,
        decipher_only=False,
    )


def ca_key_usage() -> x509.KeyUsage:
    """A CA's keyUsage: keyCertSign, cRLSign and digitalSignature (it signs OCSP itself)."""
    return key_usage(digital_signature=True, certificate_sign=True)


def signature_only_key_usage() -> x509.KeyUsage:
    """A leaf's or OCSP responder's keyUsage: digitalSignature only."""
    return key_usage(digital_signature=True, certificate_sign=False)
