"""The hold as a CA: :class:`HoldCA` wires keys, PKI, ATProto proofs and Notation together.

One object per hold. It loads (or creates) the CA from a :class:`~holdca.keys.KeyStore`
label plus its certificate, and then:

* :meth:`HoldCA.cosign` / :meth:`HoldCA.resign`: authorise the caller, verify the user's
  ATProto record proof, apply the issuance policy, issue a short-lived leaf to the DID
  for an ephemeral P-256 key, sign the Notation envelope and the OCI signature manifest,
  **commit the issuance to the ledger**, audit it, and only then return;
* :meth:`HoldCA.cosign_many` / :meth:`HoldCA.resign_many`: the same for a batch of
  requests, with one ledger commit for all of them (the durable commit costs more than the
  signing; see docs/performance.md);
* :meth:`HoldCA.revoke`, :meth:`HoldCA.crl`, :meth:`HoldCA.ocsp`: revocation;
* :meth:`HoldCA.sweep`: with ``on_did_change``, re-resolve every DID with live
  certificates and act on key changes, PDS moves and deactivations
  (:mod:`holdca.hold.watch`; issuance's own fresh resolutions are watched too);
* :meth:`HoldCA.rotate`: a new root, cross-signed both ways with the old one, which stays
  published for a grace period; :meth:`HoldCA.trust_bundle` lists what relying parties
  should trust meanwhile.

The class is a facade over one room per job: issuance (:mod:`holdca.hold.issuance`, with
the request and response types in :mod:`holdca.hold.requests`), revocation
(:mod:`holdca.hold.revocation`), status (:mod:`holdca.hold.status`), rotation
(:mod:`holdca.hold.rotation`) and compromise (:mod:`holdca.hold.compromise`); this module
holds the set-up (:meth:`HoldCA.open`) and the CA state other processes may change
(:meth:`HoldCA.state`).

Every step that fails raises a typed :class:`~holdca.errors.HoldCAError` and nothing is
issued: the ephemeral key and the unrecorded certificate are discarded, and no ledger row
exists for a failed cosign. Every refusal is audited. Time is always the caller's ``now``.

Thread safety: the ledger, rate limiter and signers are thread-safe; the CA state is an
immutable snapshot swapped under a lock by :meth:`rotate`. Serial numbers are 128-bit
random and their uniqueness is enforced by the ledger (a collision is retried).

Example::

    ca = HoldCA.open(PEMKeyStore("/var/lib/hold/keys"), SQLiteLedger("/var/lib/hold/ledger"),
                     hold_did="did:web:hold.example.com", subject=SubjectInfo("US", "CA", "Hold"),
                     create=True, now=datetime.now(UTC))
    response = ca.cosign(CosignRequest(...), now=datetime.now(UTC))
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from holdca.atproto.identity import Resolver
from holdca.errors import (
    ConfigError,
    KeyNotFoundError,
    KeyStoreError,
    LedgerError,
)
from holdca.hold.audit import AuditLog
from holdca.hold.castate import (
    CAState,
    ca_id_of,
    certificate_der,
    check_key_match,
    crl_url_for,
    load_state,
)
from holdca.hold.compromise import CompromiseMixin
from holdca.hold.crlparts import DEFAULT_CRL_PARTITION, check_partition
from holdca.hold.gate import TrustGate
from holdca.hold.issuance import IssuanceMixin
from holdca.hold.ledger import CARecord, IssuanceLedger
from holdca.hold.policy import Authorizer, IssuancePolicy, SameDIDAuthorizer
from holdca.hold.requests import (
    ANNOTATION_RECORD,
    ANNOTATION_REPOSITORY,
    CosignRequest,
    CosignResponse,
)
from holdca.hold.revocation import RevocationMixin
from holdca.hold.rotation import RotationMixin, RotationResult
from holdca.hold.status import StatusMixin
from holdca.hold.translog import IssuanceLog
from holdca.hold.watch import DEFAULT_CONCURRENCY, DIDWatch, OnChange, SweepReport
from holdca.keys import KeyStore, SignatureAlgorithm
from holdca.notation import (
    SigningScheme,
)
from holdca.notation.formats import SignatureFormat
from holdca.notation.timestamp import Timestamper
from holdca.pki import (
    SubjectInfo,
    issue_intermediate,
    issue_root,
)

_log = logging.getLogger("holdca.hold")

__all__ = [
    "ANNOTATION_RECORD",
    "ANNOTATION_REPOSITORY",
    "DEFAULT_GRACE",
    "CAState",
    "CosignRequest",
    "CosignResponse",
    "HoldCA",
    "RotationResult",
    "ca_id_of",
]

DEFAULT_GRACE = timedelta(days=30)
"""How long a rotated-out root stays published and trusted."""


class HoldCA(IssuanceMixin, RevocationMixin, StatusMixin, RotationMixin, CompromiseMixin):
    """A hold acting as an X.509 CA for the DIDs whose images it stores.

    Build with :meth:`open` (or ``holdca.hold.from_config``). See the module docstring.
    """

    def __init__(
        self,
        state: CAState,
        *,
        ledger: IssuanceLedger,
        hold_did: str,
        subject: SubjectInfo,
        key_store: KeyStore | None = None,
        audit: AuditLog | None = None,
        policy: IssuancePolicy | None = None,
        authorizer: Authorizer | None = None,
        leaf_validity: timedelta = timedelta(hours=24),
        scheme: SigningScheme = SigningScheme.X509,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        cosign_enabled: bool = True,
        crl_next_update: timedelta = timedelta(hours=24),
        root_crl_next_update: timedelta = timedelta(days=30),
        crl_refresh: timedelta = timedelta(hours=1),
        crl_retention: timedelta = timedelta(days=365),
        crl_partition: str | None = DEFAULT_CRL_PARTITION,
        grace: timedelta = DEFAULT_GRACE,
        resolver: Resolver | None = None,
        proof_max_age: timedelta = timedelta(0),
        reuse_identities: bool = False,
        ocsp_validity: timedelta = timedelta(hours=24),
        on_did_change: OnChange | str | None = None,
        signature_format: SignatureFormat = SignatureFormat.JWS,
        timestamper: Timestamper | None = None,
        transparency: IssuanceLog | None = None,
    ) -> None:
        """Wrap an already loaded :class:`CAState`; prefer :meth:`open` (same keywords).

        Args:
            state: the CAs (from :meth:`open`).
            ledger: where issuance, revocations, CRL numbers and CA records live.
            hold_did: the hold's DID (named in the root's common name).
            subject: C/ST/(L)/O of every certificate.
            key_store: needed for rotation (new keys) and to reload after retirement.
            audit: the audit log (default: logger ``holdca.audit``).
            policy: the issuance policy (default: plc/web, 24 h max, no rate limit).
            authorizer: who may act for a DID (default :class:`SameDIDAuthorizer`).
            leaf_validity: default leaf lifetime.
            scheme: the Notation signing scheme.
            crl_url: CDP URL put into leaves (``http://``), or None.
            ocsp_url: AIA OCSP URL put into leaves, or None.
            cosign_enabled: False refuses every cosign/resign with PolicyError.
            crl_next_update: CRL lifetime (nextUpdate - thisUpdate).
            root_crl_next_update: CRL lifetime of a root above an issuing intermediate,
                whose key may be kept offline: its CRL is stored in the ledger and served
                until then (re-sign it where the key is before it runs out).
            crl_refresh: re-sign an unchanged CRL after this long.
            crl_retention: keep revoked entries this long after the certificate expired
                (keyCompromise entries stay for as long as the CA answers).
            crl_partition: leaves name the CRL of their issuance period, ``day`` or
                ``week`` (of their notBefore, UTC), so no CRL grows with the hold's whole
                history; None: one CRL per CA (see :mod:`holdca.hold.crlparts`).
            grace: default rotation grace period.
            resolver: where DID identities and record proofs come from (the hold's own
                :class:`~holdca.atproto.resolve.HTTPResolver` in production); without
                one, :meth:`cosign` and :meth:`resign` refuse with ConfigError.
            ocsp_validity: OCSP nextUpdate - thisUpdate (answers are cached until
                shortly before it).
            proof_max_age: how old a caller's proof hint may be and still be accepted
                without asking the PDS for its current commit (0: never; see
                :class:`~holdca.hold.gate.TrustGate`).
            reuse_identities: let issuance use the resolver's cached identities instead
                of resolving the DID anew for each (see :class:`~holdca.hold.gate.TrustGate`).
            on_did_change: watch DIDs (:class:`~holdca.hold.watch.DIDWatch`, as
                :attr:`watch`): ``revoke``, ``flag`` or ``ignore`` a key change, PDS move
                or deactivation seen by issuance's fresh resolutions and by :meth:`sweep`;
                ``None`` (the default here; ``open_hold`` passes ``HOLD_ON_DID_CHANGE``,
                default ``flag``) watches nothing.
            signature_format: the envelope format of signatures whose request names
                none: JWS (``application/jose+json``) or COSE (``application/cose``).
            timestamper: countersigns each ``notary.x509`` signature with an RFC 3161
                timestamp (``io.cncf.notary.timestampSignature``), so it verifies after
                the short-lived leaf expired under a trust policy with a ``tsa:`` store;
                the token is checked before the envelope is returned.
            transparency: the public log every issuance and revocation is published to
                before it is returned (:class:`~holdca.hold.translog.IssuanceLog`), or None.

        Raises:
            ValueError: an unknown ``on_did_change``.
        """
        self._state = state
        self._ca_version = ledger.ca_version()
        self._lock = threading.Lock()
        # CA chain suffixes (their DER) whose full notation profile lint has passed once
        # (see _sign): a leaf from the LeafTemplate differs only in DID, key, serial and
        # dates, so later signatures skip the lint and check only the suffix's validity.
        self._linted_suffixes = set()
        # the leaf template and chain DER of the current CA state (see _kit)
        self._issuing_kit = None
        # the kit, partition unit, the period's bounds and its template (see _template_at)
        self._period_template = None
        self.ledger = ledger
        self.hold_did = hold_did
        self.subject = subject
        self.key_store = key_store
        self.audit = audit if audit is not None else AuditLog()
        self.policy = policy if policy is not None else IssuancePolicy()
        self.authorizer = authorizer if authorizer is not None else SameDIDAuthorizer()
        self.leaf_validity = leaf_validity
        self.scheme = scheme
        self.crl_url = crl_url
        self.ocsp_url = ocsp_url
        self.cosign_enabled = cosign_enabled
        self.crl_next_update = crl_next_update
        self.root_crl_next_update = root_crl_next_update
        self.crl_refresh = crl_refresh
        self.crl_retention = crl_retention
        self.crl_partition = check_partition(crl_partition)
        self.grace = grace
        self.watch = (
            None
            if on_did_change is None
            else DIDWatch(ledger, self.audit, on_change=on_did_change, revoke=self.revoke)
        )
        self.gate = (
            None
            if resolver is None
            else TrustGate(
                resolver,
                hold_did=hold_did,
                max_age=proof_max_age,
                reuse_identities=reuse_identities,
                observer=self.watch,
            )
        )
        self.ocsp_validity = ocsp_validity
        self.signature_format = signature_format
        self.timestamper = timestamper
        self.transparency = transparency
        self._init_status()

    # ------------------------------------------------------------------ set-up

    @classmethod
    def open(
        cls,
        key_store: KeyStore,
        ledger: IssuanceLedger,
        *,
        hold_did: str,
        subject: SubjectInfo,
        now: datetime,
        key_label: str = "hold-root",
        certificate: x509.Certificate | None = None,
        create: bool = False,
        intermediate_label: str | None = None,
        algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256,
        **options: Any,
    ) -> HoldCA:
        """Load the hold's CA, or create it when ``create`` is true and none exists.

        Sources, in order: the CAs recorded in the ledger (after a rotation the ledger is
        the authority); else ``certificate`` with the key under ``key_label``; else, with
        ``create``, a new key under ``key_label`` (an existing key with that label is
        reused) and a new self-signed root. With ``intermediate_label`` (and ``create``),
        an issuing intermediate CA is created under the root with its key under that
        label: leaves then chain ``leaf -> intermediate -> root`` and the root key only
        signs the intermediate (and its CRL).

        Raises:
            ConfigError: no CA exists and ``create`` is false; the key does not match the
                certificate; ``certificate`` is none of the hold's CAs.
            KeyStoreError: the key store failed.
            LedgerError: the ledger failed.
        """
        records = ledger.cas()
        if not records:
            if certificate is None:
                if not create:
                    raise ConfigError(
                        "the hold has no CA certificate yet: run `holdca init` "
                        "(or pass create=True)"
                    )
                try:
                    signer = key_store.load(key_label)
                except KeyNotFoundError:
                    signer = key_store.generate(key_label, algorithm)
                certificate = issue_root(signer, hold_did=hold_did, subject=subject, now=now)
            else:
                signer = key_store.load(key_label)
            check_key_match(signer, certificate, key_label)
            record = CARecord(ca_id_of(certificate), key_label, certificate_der(certificate), now)
            records = [record]
            if intermediate_label is not None:
                try:
                    issuing = key_store.load(intermediate_label)
                except KeyNotFoundError:
                    issuing = key_store.generate(intermediate_label, algorithm)
                inter = issue_intermediate(
                    signer,
                    certificate,
                    issuing.public_key,
                    hold_did=hold_did,
                    subject=subject,
                    now=now,
                    crl_url=crl_url_for(options.get("crl_url"), record.ca_id),
                )
                records = [
                    replace(record, state="root"),
                    CARecord(
                        ca_id_of(inter),
                        intermediate_label,
                        certificate_der(inter),
                        now + timedelta(microseconds=1),
                        parent_id=record.ca_id,
                    ),
                ]
            ledger.put_cas(records)
        elif certificate is not None and ca_id_of(certificate) not in {r.ca_id for r in records}:
            raise ConfigError(
                "HOLD_CA_CERT_PATH: the certificate is none of this hold's CAs recorded in the "
                "ledger (wrong file, or wrong HOLD_LEDGER_PATH?)"
            )
        state = load_state(key_store, records)
        hold = cls(
            state, ledger=ledger, hold_did=hold_did, subject=subject, key_store=key_store, **options
        )
        for root in state.roots:
            if root.signer is not None and ledger.stored_crl(root.ca_id) is None:
                hold.crl(now, ca_id=root.ca_id)  # stored: served while the root key is away
        return hold

    # ------------------------------------------------------------------ state

    def state(self, now: datetime | None = None) -> CAState:
        """The current CA snapshot; with ``now``, also what other processes changed.

        With ``now``: a rotation, retirement or compromise recorded in the ledger by
        another process (``holdca rotate`` beside a running ``holdca serve``) is loaded
        first (one counter read, :meth:`~holdca.hold.ledger.IssuanceLedger.ca_version`),
        then CAs whose grace period ended are retired. Retiring writes to the ledger; if
        the ledger is busy (another process holds its write lock), the snapshot is
        returned unchanged and the retirement is tried again on the next call, so readers
        (OCSP, CRL) are never failed by it; the same holds for a failed reload.
        """
        with self._lock:
            state = self._state
            if now is not None and self.key_store is not None:
                try:
                    if self.ledger.ca_version() != self._ca_version:
                        state = self._reload_state()
                except (LedgerError, KeyStoreError, ConfigError) as exc:
                    _log.warning("reloading the CA state failed (%s); retrying", exc)
        if now is not None and any(
            ca.retire_at is not None and ca.retire_at <= now for ca in state.published
        ):
            try:
                state = self._retire(now)
            except LedgerError:
                _log.warning("retiring the published CAs failed; retrying on the next request")
        return state

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate of the CA that issues leaves (the root, or the intermediate)."""
        return self.state().active.certificate

    @property
    def root_certificate(self) -> x509.Certificate:
        """The self-signed root at the end of new leaves' chains (what verifiers trust)."""
        return self.state().chain_suffix[-1]

    @property
    def ca_id(self) -> str:
        """The active CA's id (SHA-256 of its certificate)."""
        return self.state().active.ca_id

    def trust_bundle(self, now: datetime) -> list[x509.Certificate]:
        """The roots relying parties should trust at ``now``: active first, then published."""
        state = self.state(now)
        roots = [ca.certificate for ca in state.roots]
        if state.active.parent_id is None:
            roots.insert(0, state.active.certificate)
        return roots + [ca.certificate for ca in state.published]

    def cross_certificates(self, now: datetime) -> list[x509.Certificate]:
        """The cross-certificates of the current rotation grace period (may be empty)."""
        state = self.state(now)
        return [c for ca in (state.active, *state.published) for c in ca.cross]

    # ------------------------------------------------------------------ DID changes

    def sweep(self, now: datetime, *, concurrency: int = DEFAULT_CONCURRENCY) -> SweepReport:
        """Re-resolve every DID with live certificates, fresh, and act on what changed.

        Through the hold's own resolver (its address policy), ``concurrency`` at a time;
        see :meth:`holdca.hold.watch.DIDWatch.sweep`.

        Raises:
            ConfigError: the hold has no resolver, or does not watch DIDs
                (``on_did_change`` is ``None``).
            ValueError: ``concurrency`` below 1.
            LedgerError: the live certificates could not be listed.
        """
        if self.gate is None:
            raise ConfigError("this hold has no resolver: it cannot re-resolve DIDs")
        if self.watch is None:
            raise ConfigError("this hold does not watch DIDs (on_did_change / HOLD_ON_DID_CHANGE)")
        return self.watch.sweep(self.gate.resolver, now=now, concurrency=concurrency)

    def __repr__(self) -> str:
        return f"<HoldCA {self.hold_did} ca={self.ca_id[:16]}>"
