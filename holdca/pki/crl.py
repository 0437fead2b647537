"""Certificate revocation lists that notation's CRL client accepts.

notation v1.3+ (notation-core-go ``revocation/crl/fetcher.go`` and
``revocation/internal/crl/crl.go``) fetches the leaf's CRL distribution point over
``http://``, accepts at most 32 MiB of DER, requires a v2 CRL signed by the issuing CA (which
needs cRLSign), a ``nextUpdate`` in the future and no unknown critical extensions. An entry is
matched by serial; a reasonCode of certificateHold counts as revoked; an ``invalidityDate``
later than a signingAuthority signature's authentic signing time means "not revoked then".

:func:`build_crl` builds such a CRL with cryptography's builder, passing every entry in one
list (the chained ``add_revoked_certificate`` is quadratic). :func:`select_for_crl` decides
which revocations must still be listed: a revoked short-lived certificate stays on the CRL
until its notAfter plus a retention period, because signatures made with it may still be
verified (timestamped or signingAuthority signatures outlive the certificate).

Example::

    crl = build_crl(ca_signer, ca_cert, select_for_crl(entries, now=now, retention=week),
                    crl_number=42, this_update=now, next_update=now + timedelta(hours=1))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import CRLError, ProfileError
from holdca.keys import Signer, as_private_key
from holdca.pki.issue import check_issuer_key, signing_params
from holdca.pki.rules import check_http_url

__all__ = [
    "CRL_ENTRY_MIN_BYTES",
    "MAX_CRL_BYTES",
    "MAX_CRL_NUMBER",
    "RevokedEntry",
    "build_crl",
    "estimate_crl_bytes",
    "select_for_crl",
]

MAX_CRL_BYTES = 32 * 1024 * 1024
"""The largest CRL notation v1.3 downloads (``revocation/crl/fetcher.go``)."""

MAX_CRL_NUMBER = (1 << 159) - 1
"""The largest CRL number that fits RFC 5280's 20 octets (a positive INTEGER)."""

CRL_ENTRY_MIN_BYTES = 20
"""A lower bound on one DER CRL entry; used to refuse hopeless inputs before building."""

_ENTRY_BYTES_128BIT = 36  # SEQ(2) + INTEGER(2 + up to 17) + UTCTime(15)
_ENTRY_EXTENSIONS_BYTES = 2  # crlEntryExtensions SEQUENCE header, when there is any
_ENTRY_REASON_BYTES = 12  # Extension SEQ(2) + OID(5) + OCTET STRING(2) + ENUMERATED(3)
_ENTRY_INVALIDITY_BYTES = 26  # Extension SEQ(2) + OID(5) + OCTET STRING(2) + GeneralizedTime(17)
_CRL_OVERHEAD_BYTES = 600  # outer SEQs, version, algorithms, issuer name, times, extensions, sig


@dataclass(frozen=True, slots=True)
class RevokedEntry:
    """One revoked certificate as the CRL and the OCSP responder report it.

    Attributes:
        serial: the certificate's serial number (positive, at most 20 octets).
        revoked_at: when it was revoked (timezone-aware).
        reason: optional RFC 5280 reason code (``unspecified`` is written as no reason).
        invalidity_date: optional time from which the key is suspected to be compromised.
        not_after: the certificate's notAfter, used by :func:`select_for_crl`; None keeps
            the entry forever.
    """

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None
    invalidity_date: datetime | None = None
    not_after: datetime | None = None


def _aware(value: object, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise CRLError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise CRLError(f"{what} must be timezone-aware")
    return value


def select_for_crl(
    entries: Iterable[RevokedEntry], *, now: datetime, retention: timedelta
) -> list[RevokedEntry]:
    """The entries that must still be listed at ``now``, in input order.

    An entry stays while ``now < not_after + retention`` (or forever when its ``not_after``
    is None): signatures made with a short-lived certificate may be verified long after it
    expired, and a relying party must still learn that it was revoked.

    Raises:
        CRLError: ``now`` is naive or ``retention`` is negative.
    """
    now = _aware(now, "now")
    keep: object = retention
    if not isinstance(keep, timedelta) or keep < timedelta(0):
        raise CRLError("retention must be a non-negative timedelta")
    return [e for e in entries if e.not_after is None or now < e.not_after + retention]


def estimate_crl_bytes(
    count: int, *, with_reason: bool = True, with_invalidity: bool = False
) -> int:
    """An upper estimate of the DER size of a CRL with ``count`` 128-bit-serial entries.

    For capacity planning (docs/pki.md): ``count = revocations per day x (leaf lifetime +
    retention, in days)``; the result must stay under :data:`MAX_CRL_BYTES`. Exact per-entry
    upper bounds (36 bytes bare, 50 with a reason code, 76 with reason and invalidity date)
    plus 600 bytes for an issuer name of up to about 300 bytes.
    """
    per_entry = _ENTRY_BYTES_128BIT
    if with_reason or with_invalidity:
        per_entry += _ENTRY_EXTENSIONS_BYTES
    if with_reason:
        per_entry += _ENTRY_REASON_BYTES
    if with_invalidity:
        per_entry += _ENTRY_INVALIDITY_BYTES
    return _CRL_OVERHEAD_BYTES + count * per_entry


def _issuer_checks(issuer: Signer, issuer_cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    check_issuer_key(issuer, issuer_cert)
    try:
        ku = issuer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.crl_sign:
        raise ProfileError("issuer-crl-sign: the issuer's keyUsage lacks cRLSign")
    try:
        return issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(issuer.public_key)


_MIN_TIME = datetime(1950, 1, 1, tzinfo=UTC)
_REASON_EXTENSIONS = {
    reason: x509.Extension(x509.CRLReason.oid, False, x509.CRLReason(reason))
    for reason in x509.ReasonFlags
    if reason is not x509.ReasonFlags.unspecified
}


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise CRLError(f"{what} must be a timezone-aware datetime")
    if value < _MIN_TIME:
        raise CRLError(f"{what} must not be before 1950")
    return value


_NO_EXTENSIONS: list[x509.Extension[x509.ExtensionType]] = []
_REASON_LISTS: dict[object, list[x509.Extension[x509.ExtensionType]]] = {
    None: _NO_EXTENSIONS,
    x509.ReasonFlags.unspecified: _NO_EXTENSIONS,
    **{reason: [ext] for reason, ext in _REASON_EXTENSIONS.items()},
}


def _revoked(entry: RevokedEntry) -> x509.RevokedCertificate:
    # The hot loop of a 100k-entry CRL. The builder's constructor with shared, prebuilt
    # extension lists is about twice as fast as chained add_extension, so the checks the
    # chained methods would make (aware time >= 1950, serial range) are made here instead.
    # The shared lists are never mutated (the builder only reads them).
    if type(entry) is not RevokedEntry and not isinstance(entry, RevokedEntry):
        raise TypeError(f"CRL entries must be RevokedEntry, not {type(entry).__name__}")
    serial = entry.serial
    if type(serial) is not int or not 0 < serial <= MAX_CRL_NUMBER:
        raise CRLError(f"CRL entry serial must be a positive int of at most 20 octets: {serial!r}")
    revoked_at = entry.revoked_at
    try:
        fine = type(revoked_at) is datetime and revoked_at.tzinfo is not None
        fine = fine and revoked_at >= _MIN_TIME  # TypeError if utcoffset() is None
    except TypeError:
        fine = False
    if not fine:
        revoked_at = _time(revoked_at, "revoked_at")
    try:
        extensions = _REASON_LISTS[entry.reason]
    except (KeyError, TypeError):
        raise CRLError(f"reason must be an x509.ReasonFlags, not {entry.reason!r}") from None
    if entry.invalidity_date is not None:
        invalid = _time(entry.invalidity_date, "invalidity_date")
        extensions = [
            *extensions,
            x509.Extension(x509.InvalidityDate.oid, False, x509.InvalidityDate(invalid)),
        ]
    return x509.RevokedCertificateBuilder(serial, revoked_at, extensions).build()


def _issuing_distribution_point(url: object) -> x509.Extension[x509.ExtensionType]:
    """The critical IDP of a partition CRL: fullName ``url``, onlyContainsUserCerts."""
    if not isinstance(url, str):
        raise CRLError(f"distribution_point must be a str, not {type(url).__name__}")
    try:
        check_http_url(url, "crl-url")
    except ProfileError as exc:
        raise CRLError(f"distribution_point: {exc}") from None
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=True,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    return x509.Extension(idp.oid, True, idp)


def build_crl(
    issuer: Signer,
    issuer_cert: x509.Certificate,
    entries: Iterable[RevokedEntry],
    *,
    crl_number: int,
    this_update: datetime,
    next_update: datetime,
    distribution_point: str | None = None,
) -> x509.CertificateRevocationList:
    """Build and sign a v2 CRL for the certificates ``issuer_cert`` issued.

    The CRL carries CRLNumber and AuthorityKeyIdentifier, thisUpdate and nextUpdate, and one
    entry per :class:`RevokedEntry` with reasonCode and invalidityDate entry extensions
    when given. It is signed by the CA key itself (notation does not accept indirect CRLs).

    A *partition* CRL (``distribution_point`` given: the URL the leaves it covers name in
    their CRL distribution point) also carries a critical issuingDistributionPoint with
    that URL as its fullName and onlyContainsUserCerts (RFC 5280 5.2.5): openssl's
    ``-crl_check`` then refuses it for a certificate that names another URL ("Different
    CRL scope"). notation v1.3 accepts the extension but does not compare it
    (docs/pki.md).

    Args:
        issuer: the CA's signer.
        issuer_cert: the CA certificate (its keyUsage must include cRLSign).
        entries: the revoked certificates (see :func:`select_for_crl`); serials unique.
        crl_number: the caller's monotonically increasing CRL number (0 .. 2**159 - 1).
        this_update: issue time of the CRL (timezone-aware).
        next_update: when the next CRL will be issued; must be after ``this_update``.
        distribution_point: for a partition CRL, its URL (``http://``); None for a CRL
            of every certificate of the CA.

    Raises:
        CRLError: bad CRL number, ``next_update <= this_update``, naive times, a bad or
            duplicate serial, or a CRL over notation's 32 MiB limit.
        ProfileError: the signer does not match ``issuer_cert`` or it lacks cRLSign.
        SignerError: the signer failed.
    """
    number: object = crl_number
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= MAX_CRL_NUMBER:
        raise CRLError(
            f"crl_number must be an int in 0 .. 2**159 - 1 (20 octets), got {crl_number!r}"
        )
    this_update = _aware(this_update, "this_update")
    next_update = _aware(next_update, "next_update")
    if next_update.replace(microsecond=0) <= this_update.replace(microsecond=0):
        raise CRLError("next_update must be after this_update (notation needs a future nextUpdate)")
    ski = _issuer_checks(issuer, issuer_cert)
    extensions: list[x509.Extension[x509.ExtensionType]] = [
        x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(crl_number)),
        x509.Extension(
            x509.AuthorityKeyIdentifier.oid,
            False,
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        ),
    ]
    if distribution_point is not None:
        extensions.append(_issuing_distribution_point(distribution_point))
    entry_list = list(entries)
    if len(entry_list) * CRL_ENTRY_MIN_BYTES > MAX_CRL_BYTES:
        raise CRLError(
            f"{len(entry_list)} entries cannot fit notation's {MAX_CRL_BYTES}-byte CRL limit"
        )
    revoked = [_revoked(e) for e in entry_list]
    if len({e.serial for e in entry_list}) != len(entry_list):
        raise CRLError("duplicate serial numbers among the CRL entries")
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer_cert.subject,
        last_update=this_update,
        next_update=next_update,
        extensions=extensions,
        revoked_certificates=revoked,
    )
    crl = builder.sign(as_private_key(issuer), **signing_params(issuer))
    size = len(crl.public_bytes(serialization.Encoding.DER))
    if size > MAX_CRL_BYTES:
        raise CRLError(f"the CRL is {size} bytes, over notation's {MAX_CRL_BYTES}-byte limit")
    return crl
