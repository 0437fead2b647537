"""Distinguished names for the hold's certificates.

Every certificate holdca issues carries the hold's configurable ``C``, ``ST``, optional ``L``
and ``O`` (:class:`SubjectInfo`) followed by a ``CN``: the user's DID for a leaf, ``ATCR Hold
CA - <hold DID>`` for the root, and so on. notation (notation-go ``internal/pkix/pkix.go``
``ParseDistinguishedName``) requires ``C``, ``ST`` and ``O`` in every trusted identity and
parses the leaf subject with an LDAP DN parser (go-ldap ``ParseDN``) that rejects duplicate
attribute types, multi-valued RDNs and any ``=#``, so the names built here use only standard
attribute types, once each, in one attribute per RDN.

Example::

    >>> info = SubjectInfo(country="US", state="CA", organization="Example Hold")
    >>> leaf_name("did:plc:ewvi7nxzyoun6zhxrhs64oiz", info).rfc4514_string()
    'CN=did:plc:ewvi7nxzyoun6zhxrhs64oiz,O=Example Hold,ST=CA,C=US'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from holdca.errors import ConfigError, ProfileError

__all__ = [
    "MAX_COMMON_NAME",
    "SubjectInfo",
    "ca_name",
    "check_common_name",
    "check_subject_info",
    "common_name_of",
    "leaf_name",
    "responder_name",
]

MAX_COMMON_NAME = 64
"""RFC 5280 ``ub-common-name``; cryptography refuses longer common names."""

_COUNTRY = re.compile(r"[A-Z]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_value(setting: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{setting} must be a string, not {type(value).__name__}")
    if not value or len(value) > limit:
        raise ConfigError(f"{setting} must be 1-{limit} characters, got {len(value)}")
    if value != value.strip():
        raise ConfigError(f"{setting} must not start or end with whitespace")
    if _CONTROL.search(value):
        raise ConfigError(f"{setting} must not contain control characters")
    if "=#" in value or value.startswith("#"):
        raise ConfigError(
            f"{setting} must not contain '=#' or start with '#' (notation rejects it)"
        )
    return value


@dataclass(frozen=True, slots=True)
class SubjectInfo:
    """The hold's part of every subject: country, state, organization, optional locality.

    Attributes:
        country: ISO 3166 two-letter code, upper case (``C``).
        state: state or province (``ST``), 1-128 characters.
        organization: the hold's organization (``O``), 1-64 characters.
        locality: optional city (``L``), 1-128 characters.

    Raises:
        ConfigError: a value is empty, too long, has surrounding whitespace or control
            characters, contains ``=#`` (notation's DN parser rejects it) or the country is
            not two upper-case letters.
    """

    country: str
    state: str
    organization: str
    locality: str | None = None

    def __post_init__(self) -> None:
        country: object = self.country
        if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
            raise ConfigError("country must be two upper-case letters (ISO 3166), e.g. 'US'")
        _check_value("state", self.state, 128)
        _check_value("organization", self.organization, 64)
        if self.locality is not None:
            _check_value("locality", self.locality, 128)

    def attributes(self) -> list[x509.NameAttribute[str]]:
        """The ``C``, ``ST``, (``L``,) ``O`` attributes in that order."""
        attrs = [
            x509.NameAttribute(NameOID.COUNTRY_NAME, self.country),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, self.state),
        ]
        if self.locality is not None:
            attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, self.locality))
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        return attrs


def check_subject_info(subject: object) -> SubjectInfo:
    """Return ``subject`` if it is a :class:`SubjectInfo`.

    Raises:
        TypeError: it is not.
    """
    if not isinstance(subject, SubjectInfo):
        raise TypeError(f"subject must be a SubjectInfo, not {type(subject).__name__}")
    return subject


def check_common_name(common_name: str) -> str:
    """Return ``common_name`` if it can be the ``CN`` of a certificate holdca issues.

    Raises:
        ProfileError: it is empty or longer than 64 characters (RFC 5280 ub-common-name),
            has control characters or edge whitespace, or contains ``=#`` / starts with
            ``#`` (notation's DN parser rejects it).
    """
    if not common_name or len(common_name) > MAX_COMMON_NAME:
        raise ProfileError(
            f"subject-cn: common name must be 1-{MAX_COMMON_NAME} characters (RFC 5280 "
            f"ub-common-name), got {len(common_name)}"
        )
    if _CONTROL.search(common_name) or common_name != common_name.strip():
        raise ProfileError("subject-cn: common name has control characters or edge whitespace")
    if "=#" in common_name or common_name.startswith("#"):
        raise ProfileError("subject-cn: common name must not contain '=#' (notation rejects it)")
    return common_name


def _with_cn(subject: SubjectInfo, common_name: str) -> x509.Name:
    check_subject_info(subject)
    check_common_name(common_name)
    return x509.Name([*subject.attributes(), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def leaf_name(did: str, subject: SubjectInfo) -> x509.Name:
    """``C=..,ST=..,(L=..,)O=..,CN=<did>`` for a user leaf (the DID must be validated first).

    Raises:
        ProfileError: the DID is longer than 64 characters (it cannot be a common name).
    """
    return _with_cn(subject, did)


def ca_name(subject: SubjectInfo, common_name: str) -> x509.Name:
    """``C=..,ST=..,(L=..,)O=..,CN=<common_name>`` for a CA certificate.

    Raises:
        ProfileError: the common name is empty, longer than 64 characters or unsafe.
    """
    return _with_cn(subject, common_name)


def responder_name(
    subject: SubjectInfo, common_name: str = "ATCR Hold OCSP Responder"
) -> x509.Name:
    """The subject of a delegated OCSP responder certificate.

    Raises:
        ProfileError: the common name is empty, longer than 64 characters or unsafe.
    """
    return _with_cn(subject, common_name)


def common_name_of(name: x509.Name) -> str | None:
    """The (first) ``CN`` of ``name`` as text, or None when it has none."""
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
