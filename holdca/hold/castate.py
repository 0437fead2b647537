"""CA state: which CAs the hold has and which one issues.

* :class:`CAState`: an immutable snapshot of the hold's CAs (:class:`LoadedCA`), swapped
  under a lock on rotation; :func:`load_state` builds it from the ledger's CA records;
* :func:`crl_url_for`: the CRL URL a CA's certificates name.

Rotating is :mod:`holdca.hold.rotation`.

Replacing a compromised CA (no grace period, no cross-certificate) is
:mod:`holdca.hold.compromise`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import ConfigError, KeyNotFoundError, KeyStoreError
from holdca.hold.ledger import CARecord
from holdca.keys import KeyStore, Signer, spki_der

_log = logging.getLogger("holdca.hold")

__all__ = [
    "FORMER_STATES",
    "CAState",
    "LoadedCA",
    "ca_id_of",
    "certificate_der",
    "check_key_match",
    "crl_url_for",
    "fingerprint",
    "load_state",
]


@dataclass(frozen=True)
class LoadedCA:
    """A CA of the hold with its signer, as loaded from the ledger and the key store.

    Attributes:
        ca_id: SHA-256 of the certificate (the ledger's key).
        key_label: the key store label of its key.
        signer: its key; None for a root above an issuing intermediate whose key is not
            in the key store (an offline root: see :meth:`key`).
        certificate: its certificate.
        state: ``active``, ``root``, ``published``, ``retired`` or ``compromised`` (see
            :class:`~holdca.hold.ledger.CARecord`).
        retire_at: end of a published CA's grace period; for a retired or compromised
            CA, when it stopped being trusted.
        cross: cross-certificates certifying it by a neighbour CA.
        parent_id: the root of an issuing intermediate.
    """

    ca_id: str
    key_label: str
    signer: Signer | None = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    state: str
    retire_at: datetime | None
    cross: tuple[x509.Certificate, ...] = field(repr=False, default=())
    parent_id: str | None = None

    def key(self, purpose: str) -> Signer:
        """This CA's signer, for ``purpose`` (named in the error).

        Raises:
            KeyNotFoundError: the key is offline (not in the key store the hold uses).
        """
        if self.signer is None:
            raise KeyNotFoundError(
                f"{purpose} needs the key {self.key_label!r} of CA {self.ca_id[:16]}, which "
                "is not in the key store (an offline root): run this where the key is"
            )
        return self.signer


@dataclass(frozen=True)
class CAState:
    """A snapshot of the hold's CAs.

    Attributes:
        active: the CA that issues new certificates.
        published: rotated-out CAs still trusted until their ``retire_at``.
        chain_suffix: what follows a new leaf in ``x5c`` (the active root; or the
            intermediate and its root; or during a grace period the cross-certificate
            and the old root).
        roots: parents of an active intermediate (empty for a root-only hold).
        former: retired and compromised CAs, kept only to answer for the certificates
            they issued (OCSP, CRL): they never issue and are not in the trust bundle.
    """

    active: LoadedCA
    published: tuple[LoadedCA, ...]
    chain_suffix: tuple[x509.Certificate, ...]
    roots: tuple[LoadedCA, ...] = ()
    former: tuple[LoadedCA, ...] = ()

    def by_id(self, ca_id: str) -> LoadedCA | None:
        """The active, published, root or former CA with ``ca_id``."""
        for ca in self.all():
            if ca.ca_id == ca_id:
                return ca
        return None

    def all(self) -> tuple[LoadedCA, ...]:
        """Every CA the hold answers for: active, published, roots, former."""
        return (self.active, *self.published, *self.roots, *self.former)

    def by_key(self, key: str) -> LoadedCA | None:
        """The CA whose id starts with ``key`` (at least 16 hex digits, as CRL URLs name it)."""
        key = key.lower()
        if len(key) < 16 or len(key) > 64 or any(c not in "0123456789abcdef" for c in key):
            return None
        found = [ca for ca in self.all() if ca.ca_id.startswith(key)]
        return found[0] if len(found) == 1 else None

    @property
    def chain_not_after(self) -> datetime:
        """When the first certificate after a new leaf in ``x5c`` expires."""
        return min(c.not_valid_after_utc for c in self.chain_suffix)


def ca_id_of(cert: x509.Certificate) -> str:
    """The id of a CA certificate in the ledger: SHA-256 of its DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of a certificate as colon-separated upper-case hex (as openssl prints it)."""
    hexa = ca_id_of(cert).upper()
    return ":".join(hexa[i : i + 2] for i in range(0, len(hexa), 2))


def certificate_der(cert: x509.Certificate) -> bytes:
    """A certificate's DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def crl_url_for(url: str | None, ca_id: str, period: str | None = None) -> str | None:
    """The CRL URL that certificates issued by CA ``ca_id`` name (CDP).

    Every CA has its own CRL, so a certificate must name its own issuer's: ``{ca}`` in
    ``url`` is replaced by the first 16 hex digits of ``ca_id`` (for static hosting:
    ``http://hold.example/crl/{ca}.crl``); otherwise a ``ca=<16 hex>`` query parameter is
    added (``http://hold.example/ca.crl?ca=...``, which the reference server answers).

    With ``period`` (a partition key of :mod:`holdca.hold.crlparts`, e.g. ``2025-01-06``),
    the URL names that partition's CRL: ``{period}`` in ``url`` is replaced by it; else
    ``{ca}`` becomes ``<16 hex>-<period>`` (``/crl/<16 hex>-2025-01-06.crl``); else
    ``&p=<period>`` follows ``ca=``. Without ``period``, a ``{period}`` placeholder is
    replaced by ``all`` (the CA's full CRL). The CA is named as above in every case.
    """
    if url is None:
        return None
    key = ca_id[:16]
    if "{period}" in url:
        url, period = url.replace("{period}", period or "all"), None
    if "{ca}" in url:
        return url.replace("{ca}", key if period is None else f"{key}-{period}")
    found = f"{url}{'&' if '?' in url else '?'}ca={key}"
    return found if period is None else f"{found}&p={period}"


def check_key_match(signer: Signer, certificate: x509.Certificate, label: str) -> None:
    """Raise ConfigError unless ``signer`` holds the key of ``certificate``."""
    if spki_der(signer.public_key) != spki_der(certificate.public_key()):
        raise ConfigError(
            f"the CA key {label!r} does not match the CA certificate "
            f"(certificate SHA-256 {ca_id_of(certificate)[:16]}...): refusing to start"
        )


FORMER_STATES = frozenset({"retired", "compromised"})
"""CA states that no longer issue or are trusted, but still answer for their certificates."""


def load_state(key_store: KeyStore, records: Sequence[CARecord]) -> CAState:
    """The CA snapshot the ledger's CA records describe, with their keys loaded.

    Retired and compromised CAs are loaded into ``former`` when their key is still in the
    key store (a destroyed key is skipped, with a warning: their certificates can then no
    longer be answered for). A root above an issuing intermediate may have its key away
    (an offline root): it is loaded without a signer, and what needs its key (a new
    intermediate, a rotation) raises KeyNotFoundError; its CRL is the one stored when it
    was last signed (:meth:`~holdca.hold.ledger.IssuanceLedger.stored_crl`).

    Raises:
        ConfigError: not exactly one active CA, a missing parent, a key that does not
            match its certificate.
        KeyStoreError: the key of a CA that issues or is trusted could not be loaded.
    """
    cas: list[LoadedCA] = []
    for rec in records:
        cert = x509.load_der_x509_certificate(rec.certificate_der)
        signer: Signer | None
        try:
            signer = key_store.load(rec.key_label)
        except KeyStoreError as exc:
            if rec.state == "root" and isinstance(exc, KeyNotFoundError):
                signer = None  # an offline root
            elif rec.state in FORMER_STATES:
                _log.warning(
                    "the key of former CA %s is gone: its certificates are not answered for",
                    rec.ca_id[:16],
                )
                continue
            else:
                raise
        if signer is not None:
            check_key_match(signer, cert, rec.key_label)
        cross = tuple(x509.load_der_x509_certificate(c) for c in rec.cross_certificates_der)
        cas.append(
            LoadedCA(
                rec.ca_id,
                rec.key_label,
                signer,
                cert,
                rec.state,
                rec.retire_at,
                cross,
                rec.parent_id,
            )
        )
    active = [ca for ca in cas if ca.state == "active"]
    if len(active) != 1:
        raise ConfigError(f"the ledger records {len(active)} active CAs; expected exactly one")
    issuing = active[0]
    published = tuple(ca for ca in cas if ca.state == "published")
    former = tuple(ca for ca in cas if ca.state in FORMER_STATES)
    by_id = {ca.ca_id: ca for ca in cas}
    suffix: list[x509.Certificate] = [issuing.certificate]
    roots: list[LoadedCA] = []
    parent_id = issuing.parent_id
    while parent_id is not None:
        parent = by_id.get(parent_id)
        if parent is None or len(suffix) > 4:
            raise ConfigError(f"the ledger lacks the parent CA {parent_id} of the issuing CA")
        suffix.append(parent.certificate)
        roots.append(parent)
        parent_id = parent.parent_id
    if published and issuing.parent_id is None:
        old = published[-1]
        via = [c for c in issuing.cross if c.issuer == old.certificate.subject]
        if via:
            suffix = [via[0], old.certificate]
    return CAState(issuing, published, tuple(suffix), tuple(roots), former)
