"""A DER template for user leaves: :func:`~holdca.pki.issue.issue_leaf` without the builder.

A hold issues many leaves under one CA that differ only in DID, public key, serial and
dates. :class:`LeafTemplate` runs every per-issuer check of ``issue_leaf`` once, encodes the
constant parts of the certificate once (signatureAlgorithm, issuer Name, the C/ST/(L)/O
part of the subject, the constant extensions), and then writes each leaf's
``TBSCertificate`` by hand, signs it with :meth:`Signer.sign <holdca.keys.Signer.sign>` and
wraps the ``Certificate``. ``issue_leaf`` itself is a one-shot template. The
``TBSCertificate`` and ``signatureAlgorithm`` are byte-for-byte what cryptography's
``CertificateBuilder`` writes for the same leaf (tests/pki/test_template.py compares them
with a builder-made certificate); with an in-memory P-256 CA a leaf costs about 1.5 bare
P-256 signatures, against about 5 through the builder and the Signer adapter.

Example::

    template = LeafTemplate(ca_signer, ca_cert, subject=info, crl_url=crl, ocsp_url=ocsp)
    der = template.issue_der(did=did, public_key=key, now=now)

A template is immutable after construction and safe to share between threads (the signer
must be, as every Signer in :mod:`holdca.keys` is).

Certificate layout (RFC 5280 section 4.1; ``[c]`` = constant, precomputed)::

    Certificate ::= SEQUENCE {
      tbsCertificate       SEQUENCE {
        version            [0] EXPLICIT INTEGER 2 (v3)                  [c]
        serialNumber       INTEGER (minimal, positive, <= 20 octets)
        signature          AlgorithmIdentifier                          [c]
        issuer             Name (the issuer certificate's subject)      [c]
        validity           SEQUENCE { notBefore Time, notAfter Time }
        subject            Name: C, ST, (L,) O [c] + CN=<DID>
        subjectPublicKeyInfo (the key's own DER)
        extensions         [3] EXPLICIT SEQUENCE OF Extension:
          basicConstraints critical CA=false, keyUsage critical digitalSignature,
          extKeyUsage codeSigning                                       [c]
          subjectKeyIdentifier (SHA-1 of the subjectPublicKey bits)
          authorityKeyIdentifier                                        [c]
          subjectAltName URI=<DID>
          cRLDistributionPoints, authorityInfoAccess OCSP (optional)    [c]
      }
      signatureAlgorithm   AlgorithmIdentifier                          [c]
      signatureValue       BIT STRING
    }
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import (
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)

from holdca.atproto.did import validate_account_did
from holdca.errors import ProfileError, SignerError, UnsupportedAlgorithmError
from holdca.keys import PublicKey, SignatureAlgorithm, Signer
from holdca.pki.names import (
    MAX_COMMON_NAME,
    SubjectInfo,
    check_common_name,
    check_subject_info,
)
from holdca.pki.rules import (
    DEFAULT_BACKDATE,
    DEFAULT_LEAF_VALIDITY,
    authority_key_identifier,
    aware,
    check_issuer,
    check_public_key,
    positive,
    random_serial,
    revocation_extensions,
    signature_only_key_usage,
    valid_serial,
    window_within,
)

__all__ = ["LeafTemplate"]


# --- DER primitives (X.690) ---------------------------------------------------------

_SHORT_LENGTHS = tuple(bytes((n,)) for n in range(0x80))


def _length(n: int) -> bytes:
    """A definite length: one octet below 128, else 0x80|count and the big-endian octets."""
    if n < 0x80:
        return _SHORT_LENGTHS[n]
    size = (n.bit_length() + 7) // 8
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def _tlv(tag: bytes, content: bytes) -> bytes:
    """Tag, length, content."""
    return tag + _length(len(content)) + content


def _seq(content: bytes) -> bytes:
    """SEQUENCE (0x30)."""
    return b"\x30" + _length(len(content)) + content


def _integer(value: int) -> bytes:
    """INTEGER of an int >= 0: minimal two's complement (0x00 first when the top bit is set)."""
    return _tlv(b"\x02", value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _oid(oid: x509.ObjectIdentifier | str) -> bytes:
    """OBJECT IDENTIFIER: 40*arc1+arc2, then each arc in base 128 (high bit = more octets)."""
    dotted = oid if isinstance(oid, str) else oid.dotted_string
    arcs = [int(arc) for arc in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return _tlv(b"\x06", bytes(body))


def _header(der: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the content of the TLV whose tag is at ``der[pos]``."""
    first = der[pos + 1]
    start = pos + 2
    if first < 0x80:
        return start, start + first
    size = first & 0x7F
    length = int.from_bytes(der[start : start + size], "big")
    return start + size, start + size + length


def _subject_public_key_bits(spki: bytes) -> bytes:
    """The subjectPublicKey BIT STRING content, less its unused-bits octet, of an SPKI.

    SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey
    BIT STRING }. These are the bits RFC 5280 section 4.2.1.2 method (1) hashes for the
    key identifier, and what ``x509.SubjectKeyIdentifier.from_public_key`` hashes.
    """
    start, _ = _header(spki, 0)  # into the outer SEQUENCE
    _, algorithm_end = _header(spki, start)  # past the AlgorithmIdentifier
    bits_start, bits_end = _header(spki, algorithm_end)
    return spki[bits_start + 1 : bits_end]  # + 1: the unused-bits octet (0 for keys)


def _extension(oid: x509.ObjectIdentifier, *, critical: bool, value: bytes) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.

    DER omits a FALSE ``critical`` (it is the default).
    """
    flag = b"\x01\x01\xff" if critical else b""
    return _seq(_oid(oid) + flag + _tlv(b"\x04", value))


# --- constant pieces ---------------------------------------------------------------

_VERSION_V3 = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2

_HASH_OIDS = {  # NIST hash algorithm OIDs (RFC 5754)
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_MGF1 = "1.2.840.113549.1.1.8"
_RSASSA_PSS = "1.2.840.113549.1.1.10"


def _algorithm_identifier(algorithm: SignatureAlgorithm) -> bytes:
    """The signature AlgorithmIdentifier cryptography writes for ``algorithm``.

    ECDSA (RFC 5758 section 3.2): ``SEQUENCE { ecdsa-with-SHAxxx }``, no parameters.
    RSA-PSS (RFC 4055 section 3.1): ``SEQUENCE { id-RSASSA-PSS, RSASSA-PSS-params }`` with
    the hash and MGF1's hash written out (each hash AlgorithmIdentifier with NULL
    parameters, as cryptography writes them), the salt length = the hash length, and the
    trailerField left at its default.
    """
    hash_name = algorithm.hash.name
    if algorithm.is_ecdsa:
        oids = {
            "sha256": x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256,
            "sha384": x509.SignatureAlgorithmOID.ECDSA_WITH_SHA384,
            "sha512": x509.SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        }
        return _seq(_oid(oids[hash_name]))
    hash_algorithm = _seq(_oid(_HASH_OIDS[hash_name]) + b"\x05\x00")
    params = _seq(
        _tlv(b"\xa0", hash_algorithm)  # [0] hashAlgorithm
        + _tlv(b"\xa1", _seq(_oid(_MGF1) + hash_algorithm))  # [1] maskGenAlgorithm
        + _tlv(b"\xa2", _integer(algorithm.hash.digest_size))  # [2] saltLength
    )
    return _seq(_oid(_RSASSA_PSS) + params)


# AttributeTypeAndValue string tags, as cryptography's NameAttribute defaults: C is a
# PrintableString, ST, L, O and CN are UTF8String.
_PRINTABLE_STRING = b"\x13"
_UTF8_STRING = b"\x0c"


def _rdn(oid: x509.ObjectIdentifier, tag: bytes, value: str) -> bytes:
    """RelativeDistinguishedName ::= SET { SEQUENCE { type OID, value string } }."""
    return _tlv(b"\x31", _seq(_oid(oid) + _tlv(tag, value.encode("utf-8"))))


def _subject_prefix(subject: SubjectInfo) -> bytes:
    """The C, ST, (L,) O RDNs of every leaf subject, in that order (SubjectInfo.attributes)."""
    rdns = [
        _rdn(NameOID.COUNTRY_NAME, _PRINTABLE_STRING, subject.country),
        _rdn(NameOID.STATE_OR_PROVINCE_NAME, _UTF8_STRING, subject.state),
    ]
    if subject.locality is not None:
        rdns.append(_rdn(NameOID.LOCALITY_NAME, _UTF8_STRING, subject.locality))
    rdns.append(_rdn(NameOID.ORGANIZATION_NAME, _UTF8_STRING, subject.organization))
    return b"".join(rdns)


# CN RDN up to its value's length octet: SET { SEQUENCE { id-at-commonName, UTF8String } }.
# The DID is ASCII and at most 64 octets, so every length here is a single octet.
_CN_TYPE = _oid(NameOID.COMMON_NAME) + _UTF8_STRING

# The subjectKeyIdentifier extension up to the 20-octet SHA-1 key identifier.
_SKI_PREFIX = _extension(
    ExtensionOID.SUBJECT_KEY_IDENTIFIER, critical=False, value=_tlv(b"\x04", bytes(20))
)[:-20]

# The subjectAltName extension is SEQUENCE { id-ce-subjectAltName, OCTET STRING {
# GeneralNames SEQUENCE { [6] IA5String uri } } }.
_SAN_OID = _oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
_URI_TAG = b"\x86"  # GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String

_EARLIEST_TIME_YEAR = 1950  # cryptography's builder refuses earlier dates (UTCTime starts 1950)
_UTC_TIME_END_YEAR = 2050  # RFC 5280 4.1.2.5: UTCTime before 2050, GeneralizedTime from 2050


def _time(moment: datetime) -> bytes:
    """UTCTime ``YYMMDDHHMMSSZ`` before 2050, GeneralizedTime ``YYYYMMDDHHMMSSZ`` from 2050.

    Fractional seconds are dropped, as cryptography's builder drops them.

    Raises:
        ValueError: before 1950 (the builder's limit).
    """
    t = moment.astimezone(UTC)
    year = t.year
    if year < _UTC_TIME_END_YEAR:
        if year < _EARLIEST_TIME_YEAR:
            raise ValueError("certificate dates must be on or after 1950-01-01")
        fields = (year % 100, t.month, t.day, t.hour, t.minute, t.second)
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % fields
    fields = (year, t.month, t.day, t.hour, t.minute, t.second)
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % fields


@functools.lru_cache(maxsize=64)
def _validity(
    bounds: tuple[datetime, datetime], now: datetime, validity: timedelta, backdate: timedelta
) -> bytes:
    """Validity ::= SEQUENCE { notBefore Time, notAfter Time } (issue_leaf's clamped window).

    Cached: leaves issued in the same second share it. ``now`` has whole seconds (it went
    through :func:`~holdca.pki.rules.aware`), so equal keys are equal instants and give
    equal DER; an argument that fails a check raises, and nothing is cached for it.

    Raises:
        ProfileError: the issuer is not valid at ``now``.
        TypeError, ValueError: see ``issue_der``.
    """
    not_before, not_after = window_within(bounds, now, validity, backdate)
    return _seq(_time(not_before) + _time(not_after))


def _revocation_tail(crl_url: str | None, ocsp_url: str | None) -> bytes:
    """CDP, then AIA OCSP (the order issue_leaf's builder used), encoded; checks the URLs.

    Raises:
        ProfileError: a URL is not an absolute ``http://`` URL.
    """
    return b"".join(
        _extension(extension.oid, critical=False, value=extension.public_bytes())
        for extension in revocation_extensions(crl_url, ocsp_url)
    )


_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


class LeafTemplate:
    """Issues :func:`~holdca.pki.issue.issue_leaf`'s leaf certificates from precomputed DER.

    Construction runs the per-issuer checks once; :meth:`issue_der` runs the per-leaf ones
    and returns exactly the DER ``issue_leaf`` would return for the same inputs.

    Args:
        issuer: the CA signer (root or intermediate; ES256/384/512 or PS256/384/512).
        issuer_cert: the CA certificate.
        subject: the hold's C/ST/(L)/O.
        crl_url: optional CRL distribution point (``http://`` only).
        ocsp_url: optional AIA OCSP URL (``http://`` only).
        backdate: notBefore offset for clock skew (default 5 min).

    Raises:
        TypeError: ``issuer_cert`` is not a Certificate or ``subject`` not a SubjectInfo.
        ValueError: ``backdate`` is negative.
        ProfileError: the signer's key is not the issuer certificate's, the issuer
            certificate is not a CA (basicConstraints absent or CA=false), a URL is not an
            absolute ``http://`` URL, or the issuer key type is unsupported.
        UnsupportedAlgorithmError: the signer's algorithm does not fit its key (neither
            ECDSA with an EC key nor RSA-PSS with an RSA key).
    """

    __slots__ = (
        "_aki",
        "_algorithm_identifier",
        "_backdate",
        "_bounds",
        "_crl_url",
        "_issuer_cert",
        "_ocsp_url",
        "_signature_and_issuer",
        "_signer",
        "_subject_prefix",
        "_tail",
        "_to_key_id",
    )

    def __init__(
        self,
        issuer: Signer,
        issuer_cert: x509.Certificate,
        *,
        subject: SubjectInfo,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        backdate: timedelta = DEFAULT_BACKDATE,
    ) -> None:
        check_subject_info(subject)
        tail = _revocation_tail(crl_url, ocsp_url)  # checks the URLs
        check_issuer(issuer, issuer_cert)
        self._backdate = positive(backdate, "backdate", allow_zero=True)
        algorithm = issuer.algorithm
        key = issuer.public_key
        if algorithm.is_ecdsa != isinstance(key, ec.EllipticCurvePublicKey) or (
            algorithm.is_ecdsa == isinstance(key, rsa.RSAPublicKey)
        ):
            raise UnsupportedAlgorithmError(
                f"the issuer signer's algorithm {algorithm!r} does not fit its "
                f"{type(key).__name__} (ECDSA needs an EC key, RSA-PSS an RSA key)"
            )
        self._signer = issuer
        self._issuer_cert = issuer_cert
        self._bounds = (issuer_cert.not_valid_before_utc, issuer_cert.not_valid_after_utc)
        self._algorithm_identifier = _algorithm_identifier(algorithm)
        # The builder encodes the issuer certificate's parsed subject Name, string types
        # included, so its public_bytes() is exactly the issuer field.
        self._signature_and_issuer = self._algorithm_identifier + issuer_cert.subject.public_bytes()
        self._subject_prefix = _subject_prefix(subject)
        # The constant extensions, encoded by cryptography from the same objects issue_leaf
        # used to pass to the builder. Before the key identifier: BC, KU, EKU and the SKI
        # extension's header; between the key identifier and SAN: AKI; after SAN: CDP, AIA.
        self._to_key_id = (
            _extension(
                ExtensionOID.BASIC_CONSTRAINTS,
                critical=True,
                value=x509.BasicConstraints(ca=False, path_length=None).public_bytes(),
            )
            + _extension(
                ExtensionOID.KEY_USAGE,
                critical=True,
                value=signature_only_key_usage().public_bytes(),
            )
            + _extension(
                ExtensionOID.EXTENDED_KEY_USAGE,
                critical=False,
                value=x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]).public_bytes(),
            )
            + _SKI_PREFIX
        )
        self._aki = _extension(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
            critical=False,
            value=authority_key_identifier(issuer_cert).public_bytes(),
        )
        self._tail = tail
        self._crl_url = crl_url
        self._ocsp_url = ocsp_url

    @property
    def issuer_certificate(self) -> x509.Certificate:
        """The CA certificate the leaves are issued under."""
        return self._issuer_cert

    @property
    def crl_url(self) -> str | None:
        """The CRL distribution point its leaves name (None: no CDP)."""
        return self._crl_url

    def with_crl_url(self, crl_url: str | None) -> LeafTemplate:
        """This template with ``crl_url`` as its leaves' CRL distribution point.

        Costs only the encoding of the revocation extensions (the issuer checks and the
        other constant parts are shared), so a hold can keep one template per CRL
        partition and make the next one when the period changes.

        Raises:
            ProfileError: ``crl_url`` is not an absolute ``http://`` URL.
        """
        tail = _revocation_tail(crl_url, self._ocsp_url)
        copy = object.__new__(LeafTemplate)
        for name in LeafTemplate.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        copy._tail = tail
        copy._crl_url = crl_url
        return copy

    def issue_der(
        self,
        *,
        did: str,
        public_key: PublicKey,
        now: datetime,
        validity: timedelta = DEFAULT_LEAF_VALIDITY,
        serial: int | None = None,
    ) -> bytes:
        """The DER of the leaf ``issue_leaf`` issues for ``did`` and ``public_key``.

        Validity is ``[now - backdate, now + validity]`` clamped to the issuer's validity;
        ``now`` is truncated to whole seconds.

        Args:
            did: the user's DID (did:plc or did:web): CN and SAN URI.
            public_key: the leaf key (P-256/P-384/P-521 or RSA 2048/3072/4096).
            now: issuance time (timezone-aware).
            validity: lifetime (default 24 h).
            serial: the serial number; default a fresh 128-bit random one.

        Raises:
            DIDSyntaxError: ``did`` is not a valid did:plc / did:web.
            ProfileError: the DID is longer than 64 characters, the key is not one notation
                accepts, the serial is not a positive int of at most 20 octets, or the
                issuer is not valid at ``now``.
            TypeError, ValueError: ``now`` is not a timezone-aware datetime, ``validity``
                is not a positive timedelta, or a date falls before 1950.
            SignerError: the signer failed or returned something other than bytes.
        """
        validate_account_did(did)
        if len(did) > MAX_COMMON_NAME:  # the DID grammar excludes check_common_name's other faults
            check_common_name(did)
        check_public_key(public_key, "leaf-key")
        if serial is None:
            serial = random_serial()
        elif not valid_serial(serial):
            raise ProfileError("serial-number: serial must be a positive int of at most 20 octets")
        validity_der = _validity(self._bounds, aware(now, "now"), validity, self._backdate)

        spki = public_key.public_bytes(_DER, _SPKI)
        key_id = hashlib.sha1(_subject_public_key_bits(spki), usedforsecurity=False).digest()
        uri = did.encode("ascii")  # DID syntax is ASCII; at most 64 octets (CN limit)
        n = len(uri)
        # CN RDN: SET { SEQUENCE { OID, UTF8String did } } (all short lengths)
        subject = self._subject_prefix + b"\x31%c\x30%c%s%c%s" % (n + 9, n + 7, _CN_TYPE, n, uri)
        # SAN: SEQUENCE { OID, OCTET STRING { SEQUENCE { [6] did } } } (all short lengths)
        san = b"\x30%c%s\x04%c\x30%c\x86%c%s" % (n + 11, _SAN_OID, n + 4, n + 2, n, uri)
        # Extensions ::= SEQUENCE OF Extension: BC, KU, EKU, SKI | AKI | SAN | CDP, AIA
        extensions = _seq(b"".join((self._to_key_id, key_id, self._aki, san, self._tail)))
        number = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # minimal INTEGER
        tbs = b"".join(
            (
                _VERSION_V3,
                b"\x02",  # serialNumber INTEGER
                _SHORT_LENGTHS[len(number)],
                number,
                self._signature_and_issuer,  # signature AlgorithmIdentifier, issuer Name
                validity_der,
                b"\x30",  # subject Name
                _length(len(subject)),
                subject,
                spki,
                b"\xa3",  # [3] EXPLICIT Extensions
                _length(len(extensions)),
                extensions,
            )
        )
        tbs = b"\x30" + _length(len(tbs)) + tbs
        signature = self._signer.sign(tbs)
        if not isinstance(signature, bytes):  # a foreign Signer
            raise SignerError("signer returned a non-bytes signature")
        # Certificate: SEQUENCE { tbs, signatureAlgorithm, signatureValue BIT STRING with
        # 0 unused bits }
        bits = b"\x03" + _length(len(signature) + 1) + b"\x00" + signature
        return _seq(tbs + self._algorithm_identifier + bits)

    def issue(
        self,
        *,
        did: str,
        public_key: PublicKey,
        now: datetime,
        validity: timedelta = DEFAULT_LEAF_VALIDITY,
        serial: int | None = None,
    ) -> x509.Certificate:
        """:meth:`issue_der` parsed into a :class:`cryptography.x509.Certificate`.

        Raises:
            The errors of :meth:`issue_der`.
        """
        der = self.issue_der(
            did=did, public_key=public_key, now=now, validity=validity, serial=serial
        )
        return x509.load_der_x509_certificate(der)
