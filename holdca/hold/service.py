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
* :meth:`HoldCA.rotate`: a new root, cross-signed both ways with the old one, which stays
  published for a grace period; :meth:`HoldCA.trust_bundle` lists what relying parties
  should trust meanwhile.

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

import base64
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.atproto.verify import VerifiedRecord, verify_record_proof
from holdca.errors import (
    ConfigError,
    DuplicateSerialError,
    HoldCAError,
    KeyNotFoundError,
    LedgerError,
    MalformedInputError,
    PolicyError,
)
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import REASONS, CARecord, IssuanceLedger, IssuanceRecord, Revocation
from holdca.hold.policy import Authorizer, IssuancePolicy, SameDIDAuthorizer
from holdca.keys import KeyStore, MemorySigner, SignatureAlgorithm, Signer, spki_der
from holdca.notation import (
    Descriptor,
    SigningScheme,
    sign_envelope,
    signature_manifest,
)
from holdca.pki import (
    CertStatus,
    LeafTemplate,
    RevokedEntry,
    SubjectInfo,
    build_crl,
    cross_sign,
    issue_intermediate,
    issue_root,
    parse_ocsp_request,
    random_serial,
    respond_ocsp,
    select_for_crl,
)

__all__ = [
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

_MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


def ca_id_of(cert: x509.Certificate) -> str:
    """The id of a CA certificate in the ledger: SHA-256 of its DER, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class CosignRequest:
    """A coSignManifest / reSignManifest request, already decoded from the transport.

    Attributes:
        did: the user DID the certificate is for.
        descriptor: the image manifest (mediaType, digest, size) to sign.
        record_uri: ``at://<did>/io.atcr.manifest/<rkey>`` of the manifest record.
        record_car: the ``com.atproto.sync.getRecord`` CAR proving the record.
        did_document: the user's DID document (JSON bytes).
        caller: the identity the embedder authenticated, or ``None``.
        validity: requested leaf lifetime (default: the hold's).
    """

    did: str
    descriptor: Descriptor
    record_uri: str
    record_car: bytes = field(repr=False)
    did_document: bytes = field(repr=False)
    caller: str | None = None
    validity: timedelta | None = None


@dataclass(frozen=True)
class CosignResponse:
    """What a cosign returns: everything a client attaches to the image.

    Attributes:
        envelope: the Notation JWS envelope (``application/jose+json``).
        signature_manifest: the OCI signature manifest whose subject is the image.
        chain: leaf first, then CA certificates up to the self-signed root.
        record: the ledger entry (serial, validity, ATProto commit).
        verified: the verified ATProto record.
    """

    envelope: bytes = field(repr=False)
    signature_manifest: bytes = field(repr=False)
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    record: IssuanceRecord
    verified: VerifiedRecord | None = field(repr=False, default=None)

    @property
    def certificate(self) -> x509.Certificate:
        """The issued leaf certificate."""
        return self.chain[0]

    @property
    def serial(self) -> int:
        """The leaf's serial number."""
        return self.record.serial

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (XRPC response body): PEM certificates, base64 blobs."""
        return {
            "envelope": base64.b64encode(self.envelope).decode("ascii"),
            "signatureManifest": base64.b64encode(self.signature_manifest).decode("ascii"),
            "certificate": self.chain[0].public_bytes(serialization.Encoding.PEM).decode(),
            "caCertificates": [
                c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain[1:]
            ],
            "serial": format(self.record.serial, "x"),
            "notBefore": self.record.not_before.isoformat(),
            "notAfter": self.record.not_after.isoformat(),
            "commitCid": self.record.commit_cid,
            "rev": self.record.rev,
        }


@dataclass(frozen=True)
class _CA:
    ca_id: str
    key_label: str
    signer: Signer = field(repr=False)
    certificate: x509.Certificate = field(repr=False)
    state: str
    retire_at: datetime | None
    cross: tuple[x509.Certificate, ...] = field(repr=False, default=())
    parent_id: str | None = None


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
    """

    active: _CA
    published: tuple[_CA, ...]
    chain_suffix: tuple[x509.Certificate, ...]
    roots: tuple[_CA, ...] = ()

    def by_id(self, ca_id: str) -> _CA | None:
        """The active, published or root CA with ``ca_id``."""
        for ca in (self.active, *self.published, *self.roots):
            if ca.ca_id == ca_id:
                return ca
        return None


@dataclass(frozen=True)
class RotationResult:
    """The outcome of :meth:`HoldCA.rotate`.

    Attributes:
        old_root: the previous root (published until ``retire_at``).
        new_root: the new active root.
        new_by_old: the new root's key certified by the old root.
        old_by_new: the old root's key certified by the new root.
        retire_at: end of the grace period.
    """

    old_root: x509.Certificate
    new_root: x509.Certificate
    new_by_old: x509.Certificate
    old_by_new: x509.Certificate
    retire_at: datetime


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check: what signing (and re-signing) it needs."""

    did: str
    descriptor: Descriptor
    verified: VerifiedRecord | None
    validity: timedelta
    kind: str


@dataclass(frozen=True)
class _IssuingKit:
    """What every leaf of one CA state reuses: the leaf template and the chain's DER."""

    state: CAState
    settings: tuple[SubjectInfo, str | None, str | None]
    template: LeafTemplate
    suffix_der: tuple[bytes, ...]
    suffix_valid: tuple[datetime, datetime]  # when every suffix certificate is valid


def _reason_flag(reason: str | None) -> x509.ReasonFlags | None:
    return x509.ReasonFlags(reason) if reason in REASONS else None


class HoldCA:
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
        crl_refresh: timedelta = timedelta(hours=1),
        crl_retention: timedelta = timedelta(days=365),
        grace: timedelta = DEFAULT_GRACE,
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
            crl_refresh: re-sign an unchanged CRL after this long.
            crl_retention: keep revoked entries this long after the certificate expired.
            grace: default rotation grace period.
        """
        self._state = state
        self._lock = threading.Lock()
        # CA chain suffixes (their DER) whose full notation profile lint has passed once
        # (see _sign): a leaf from the LeafTemplate differs only in DID, key, serial and
        # dates, so later signatures skip the lint and check only the suffix's validity.
        self._linted_suffixes: set[tuple[bytes, ...]] = set()
        # the leaf template and chain DER of the current CA state (see _kit)
        self._issuing_kit: _IssuingKit | None = None
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
        self.crl_refresh = crl_refresh
        self.crl_retention = crl_retention
        self.grace = grace
        self._crl_cache: dict[str, tuple[tuple[int, int], x509.CertificateRevocationList]] = {}
        self._crl_lock = threading.Lock()

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
            _check_match(signer, certificate, key_label)
            record = CARecord(ca_id_of(certificate), key_label, _der(certificate), now)
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
                )
                records = [
                    replace(record, state="root"),
                    CARecord(
                        ca_id_of(inter),
                        intermediate_label,
                        _der(inter),
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
        state = _load_state(key_store, records)
        return cls(
            state, ledger=ledger, hold_did=hold_did, subject=subject, key_store=key_store, **options
        )

    # ------------------------------------------------------------------ state

    def state(self, now: datetime | None = None) -> CAState:
        """The current CA snapshot; with ``now``, retires CAs whose grace period ended."""
        with self._lock:
            state = self._state
        if now is not None and any(
            ca.retire_at is not None and ca.retire_at <= now for ca in state.published
        ):
            state = self._retire(now)
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

    # ------------------------------------------------------------------ issuance

    def cosign(self, request: CosignRequest, *, now: datetime) -> CosignResponse:
        """Co-sign an image manifest for the DID that committed it to its ATProto repo.

        Steps: cosign enabled? -> authorise the caller -> check the DID and validity
        against the policy -> verify the record proof (DID document key, CAR hashes,
        commit signature, MST inclusion, record digest == descriptor digest, commit DID)
        -> rate limit -> ephemeral P-256 key -> leaf -> envelope -> signature manifest ->
        ledger commit -> audit -> return.

        Raises:
            PolicyError: co-signing is disabled.
            AuthorizationError: the caller may not act for the DID.
            IssuancePolicyError: the policy refuses (method, allow-list, validity, rate).
            MalformedInputError, VerificationError: the proof does not verify.
            ProfileError, SignerError: issuing or signing failed.
            LedgerError: the issuance could not be recorded (then nothing is returned).
        """
        return self._sign_request(request, now=now, kind="cosign")

    def resign(self, request: CosignRequest, *, now: datetime) -> CosignResponse:
        """Re-sign an older image: re-verify its record proof and issue a fresh signature.

        The seed's ``reSignManifest``: used when an earlier 24-hour certificate has
        expired and a verifier without a timestamp needs a currently valid chain. Same
        checks and errors as :meth:`cosign`; the ledger entry has kind ``resign``.
        """
        return self._sign_request(request, now=now, kind="resign")

    def cosign_many(
        self, requests: Sequence[CosignRequest], *, now: datetime
    ) -> list[CosignResponse | HoldCAError]:
        """Co-sign several requests with one ledger commit (one sync to disk for all).

        Each request is checked and signed exactly as :meth:`cosign` does; the issuances
        are then committed to the ledger in one transaction, and only then handed out.
        This is how an embedder that queues requests (or re-signs many images) amortises
        the ledger's durable commit, which otherwise costs more than the signing itself.

        Returns:
            One entry per request, in order: its response, or the HoldCAError that
            refused it (audited like a :meth:`cosign` refusal). A failed ledger commit
            makes every signed entry that LedgerError: nothing unrecorded is handed out.
        """
        return self._sign_many(requests, now=now, kind="cosign")

    def resign_many(
        self, requests: Sequence[CosignRequest], *, now: datetime
    ) -> list[CosignResponse | HoldCAError]:
        """:meth:`resign` for several requests with one ledger commit (see :meth:`cosign_many`)."""
        return self._sign_many(requests, now=now, kind="resign")

    def _sign_request(self, request: CosignRequest, *, now: datetime, kind: str) -> CosignResponse:
        try:
            checked = self._check(request, now=now, kind=kind)
            return self._record_and_audit(checked, self._sign(checked, now=now), now=now)
        except HoldCAError as exc:
            self._refused(request, kind, exc, now)
            raise

    def _sign_many(
        self, requests: Sequence[CosignRequest], *, now: datetime, kind: str
    ) -> list[CosignResponse | HoldCAError]:
        results: list[CosignResponse | HoldCAError] = []
        signed: list[tuple[int, _Checked, CosignResponse]] = []
        for i, request in enumerate(requests):
            try:
                checked = self._check(request, now=now, kind=kind)
                response = self._sign(checked, now=now)
            except HoldCAError as exc:
                self._refused(request, kind, exc, now)
                results.append(exc)
                continue
            signed.append((i, checked, response))
            results.append(response)
        try:
            outcome = self.ledger.record_issuances([r.record for _, _, r in signed])
        except LedgerError as exc:
            outcome = [exc] * len(signed)
        for (i, checked, response), error in zip(signed, outcome, strict=True):
            if error is None:
                self.audit.issued(response.record, now=now)
                continue
            try:
                if not isinstance(error, DuplicateSerialError):
                    raise error
                # a 128-bit serial collided: sign this one again with a fresh serial
                results[i] = self._record_and_audit(checked, None, now=now)
            except HoldCAError as exc:
                self._refused(requests[i], kind, exc, now)
                results[i] = exc
        return results

    def _refused(
        self, request: CosignRequest, kind: str, error: HoldCAError, now: datetime
    ) -> None:
        self.audit.refused(
            operation=kind, did=request.did, caller=request.caller, error=error, now=now
        )

    def _check(self, request: CosignRequest, *, now: datetime, kind: str) -> _Checked:
        """Policy, authorisation, the record proof and the rate limit, in that order."""
        if not self.cosign_enabled:
            raise PolicyError("co-signing is disabled on this hold (HOLD_COSIGN_ENABLED)")
        self.authorizer.authorize(request.caller, request.did)
        did = self.policy.check_did(request.did)
        validity = request.validity if request.validity is not None else self.leaf_validity
        self.policy.check_validity(validity)
        descriptor = request.descriptor
        if descriptor.media_type not in _MANIFEST_TYPES:
            raise MalformedInputError(
                f"descriptor media type {descriptor.media_type!r} is not an image manifest"
            )
        verified = verify_record_proof(
            request.record_car,
            request.did_document,
            request.record_uri,
            descriptor.digest,
            did=did,
        )
        if self.policy.rate_limit is not None:
            self.policy.rate_limit.acquire(did, now)
        return _Checked(did, descriptor, verified, validity, kind)

    def _sign(self, checked: _Checked, *, now: datetime) -> CosignResponse:
        """Ephemeral key, leaf, envelope and signature manifest; not recorded in the ledger."""
        did, descriptor, verified = checked.did, checked.descriptor, checked.verified
        state = self.state(now)
        kit = self._kit(state)
        leaf_key = MemorySigner.generate(SignatureAlgorithm.ES256)
        leaf_der = kit.template.issue_der(
            did=did,
            public_key=leaf_key.public_key,
            now=now,
            validity=checked.validity,
            serial=random_serial(),
        )
        leaf = x509.load_der_x509_certificate(leaf_der)
        chain_der = (leaf_der, *kit.suffix_der)
        envelope = sign_envelope(
            leaf_key,
            chain_der,
            descriptor,
            now=now,
            scheme=self.scheme,
            check_chain=self._needs_lint(kit, now),
        )
        self._linted_suffixes.add(kit.suffix_der)
        manifest = signature_manifest(
            envelope, descriptor, chain=chain_der, created=now.replace(microsecond=0)
        )
        record = IssuanceRecord(
            serial=leaf.serial_number,
            did=did,
            manifest_digest=descriptor.digest,
            commit_cid=None if verified is None else str(verified.commit_cid),
            rev=None if verified is None else verified.rev,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            certificate_der=leaf_der,
            issuer_id=state.active.ca_id,
            issued_at=now,
            kind=checked.kind,
        )
        return CosignResponse(envelope, manifest, (leaf, *state.chain_suffix), record, verified)

    def _record_and_audit(
        self, checked: _Checked, response: CosignResponse | None, *, now: datetime
    ) -> CosignResponse:
        """Commit the issuance, audit it and return it; re-sign on a serial collision.

        ``response`` None: sign first (a retry after a collision in a batch).
        """
        for attempt in range(3):
            if response is None or attempt:
                response = self._sign(checked, now=now)
            try:
                self.ledger.record_issuance(response.record)
            except DuplicateSerialError:
                if attempt == 2:
                    raise
                continue
            self.audit.issued(response.record, now=now)
            return response
        raise LedgerError("could not find a free serial number")  # pragma: no cover

    def _kit(self, state: CAState) -> _IssuingKit:
        """The leaf template and chain DER of ``state`` (built once per state and settings)."""
        settings = (self.subject, self.crl_url, self.ocsp_url)
        kit = self._issuing_kit
        if kit is None or kit.state is not state or kit.settings != settings:
            kit = _IssuingKit(
                state=state,
                settings=settings,
                template=LeafTemplate(
                    state.active.signer,
                    state.active.certificate,
                    subject=self.subject,
                    crl_url=self.crl_url,
                    ocsp_url=self.ocsp_url,
                ),
                suffix_der=tuple(_der(c) for c in state.chain_suffix),
                suffix_valid=(
                    max(c.not_valid_before_utc for c in state.chain_suffix),
                    min(c.not_valid_after_utc for c in state.chain_suffix),
                ),
            )
            self._issuing_kit = kit
        return kit

    def _needs_lint(self, kit: _IssuingKit, now: datetime) -> bool:
        """Whether a chain ending in ``kit``'s CA suffix needs the full notation lint now.

        Yes the first time for each suffix, and whenever a suffix certificate is outside
        its validity at ``now`` (the lint then raises the ProfileError notation would).
        """
        if kit.suffix_der not in self._linted_suffixes:
            return True
        return not kit.suffix_valid[0] <= now <= kit.suffix_valid[1]

    def issue(
        self,
        did: str,
        public_key: Any,
        *,
        now: datetime,
        validity: timedelta | None = None,
        manifest_digest: str = "",
    ) -> tuple[x509.Certificate, ...]:
        """Operator issuance: a leaf for ``did`` and ``public_key`` without an ATProto proof.

        The DID and validity still pass the issuance policy (not the rate limit), and
        the certificate is recorded (kind ``issue``) before it is returned.

        Returns:
            The chain: leaf, then CA certificates.

        Raises:
            IssuancePolicyError, DIDSyntaxError, ProfileError, SignerError, LedgerError.
        """
        validity = validity if validity is not None else self.leaf_validity
        try:
            did = self.policy.check_did(did)
            self.policy.check_validity(validity)
            state = self.state(now)
            leaf = self._kit(state).template.issue(
                did=did, public_key=public_key, now=now, validity=validity
            )
            record = IssuanceRecord(
                serial=leaf.serial_number,
                did=did,
                manifest_digest=manifest_digest,
                commit_cid=None,
                rev=None,
                not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc,
                certificate_der=_der(leaf),
                issuer_id=state.active.ca_id,
                issued_at=now,
                kind="issue",
            )
            self.ledger.record_issuance(record)
        except HoldCAError as exc:
            self.audit.refused(operation="issue", did=did, caller=None, error=exc, now=now)
            raise
        self.audit.issued(record, now=now)
        return (leaf, *state.chain_suffix)

    # ------------------------------------------------------------------ revocation

    def revoke(
        self,
        *,
        now: datetime,
        serial: int | None = None,
        did: str | None = None,
        since: datetime | None = None,
        reason: str | None = None,
        invalidity_date: datetime | None = None,
    ) -> list[Revocation]:
        """Revoke one certificate (``serial``) or every certificate of ``did`` (since ``since``).

        Already revoked certificates keep their first revocation. Each revocation is
        audited; the next :meth:`crl` lists them.

        Returns:
            The revocations (new or earlier), by serial.

        Raises:
            ValueError: neither or both of ``serial`` and ``did``; ``since`` without ``did``.
            LedgerError: unknown serial, unknown reason, or the ledger failed.
        """
        if (serial is None) == (did is None):
            raise ValueError("give exactly one of serial= or did=")
        if since is not None and did is None:
            raise ValueError("since= needs did=")
        out: list[Revocation] = []
        try:
            if serial is not None:
                found = self.ledger.get(serial)
                if found is None:
                    raise LedgerError(
                        f"no certificate with serial {serial:x} was issued by this hold"
                    )
                records = [found]
            else:
                assert did is not None
                records = list(self.ledger.by_did(did, since=since))
            for rec in records:
                entry = self.ledger.revoke(
                    rec.serial, revoked_at=now, reason=reason, invalidity_date=invalidity_date
                )
                self.audit.revoked(entry, rec.did, now=now)
                out.append(entry)
        except HoldCAError as exc:
            self.audit.refused(operation="revoke", did=did, caller=None, error=exc, now=now)
            raise
        return sorted(out, key=lambda e: e.serial)

    def crl(self, now: datetime, *, ca_id: str | None = None) -> x509.CertificateRevocationList:
        """The current CRL of the active CA (or of the published CA ``ca_id``).

        A new CRL (with the next persisted CRL number and a thisUpdate that never goes
        backwards) is signed when revocations changed, after ``crl_refresh``, or when no
        CRL was made by this object yet; otherwise the cached one is returned.

        Raises:
            ConfigError: unknown ``ca_id``.
            LedgerError, ProfileError, SignerError: building failed.
        """
        state = self.state(now)
        ca = state.active if ca_id is None else state.by_id(ca_id)
        if ca is None:
            raise ConfigError(f"no active or published CA with id {ca_id}")
        with self._crl_lock:  # concurrent requests share one new CRL (and one CRL number)
            return self._crl_for(ca, now)

    def _crl_for(self, ca: _CA, now: datetime) -> x509.CertificateRevocationList:
        revoked = self.ledger.revoked(ca.ca_id)
        key = (len(revoked), max((r.serial for r, _ in revoked), default=0))
        cached = self._crl_cache.get(ca.ca_id)
        if cached is not None and cached[0] == key:
            this_update = cached[1].last_update_utc
            if this_update <= now < this_update + self.crl_refresh:
                return cached[1]
        entries = [
            RevokedEntry(
                serial=rev.serial,
                revoked_at=rev.revoked_at,
                reason=_reason_flag(rev.reason),
                invalidity_date=rev.invalidity_date,
                not_after=rec.not_after,
            )
            for rev, rec in revoked
        ]
        entries = select_for_crl(entries, now=now, retention=self.crl_retention)
        number, this_update = self.ledger.next_crl_number(ca.ca_id, now)
        crl = build_crl(
            ca.signer,
            ca.certificate,
            entries,
            crl_number=number,
            this_update=this_update,
            next_update=this_update + self.crl_next_update,
        )
        self._crl_cache[ca.ca_id] = (key, crl)
        self.audit.crl(
            issuer_id=ca.ca_id,
            number=number,
            entries=len(entries),
            this_update=this_update,
            now=now,
        )
        return crl

    def status_of(self, serial: int, ca_id: str | None = None) -> CertStatus:
        """OCSP status of ``serial``: good, revoked (time, reason) or unknown.

        With ``ca_id``, a serial issued by another CA is unknown.
        """
        record = self.ledger.get(serial)
        if record is None or (ca_id is not None and record.issuer_id != ca_id):
            return CertStatus.unknown()
        rev = self.ledger.revocation(serial)
        if rev is None:
            return CertStatus.good()
        return CertStatus.revoked(rev.revoked_at, _reason_flag(rev.reason))

    def ocsp(self, request_der: bytes, *, now: datetime) -> bytes:
        """An OCSP response (DER) for ``request_der``, signed by the CA the request names.

        Never raises on bad input: malformed requests get a ``malformedRequest`` response,
        certificates of other issuers ``unauthorized`` (see :func:`holdca.pki.respond_ocsp`).
        """
        state = self.state(now)
        ca = _ca_for_ocsp(state, request_der)
        return respond_ocsp(
            request_der,
            status_of=lambda serial: self.status_of(serial, ca.ca_id),
            issuer_cert=ca.certificate,
            signer=ca.signer,
            now=now,
        )

    # ------------------------------------------------------------------ rotation

    def rotate(
        self,
        *,
        new_label: str,
        now: datetime,
        grace: timedelta | None = None,
        algorithm: SignatureAlgorithm | None = None,
    ) -> RotationResult:
        """Rotate to a new root: generate it, cross-sign both ways, keep the old one published.

        During the grace period new leaves chain ``leaf -> new-root-by-old-root -> old
        root``, so relying parties that trust only the old root keep verifying; after it
        the old root is retired and leaves chain straight to the new root. Relying
        parties should add the new root (see :meth:`trust_bundle`) during the grace
        period.

        Raises:
            ConfigError: no key store, or a rotation is already in its grace period.
            KeyExistsError: ``new_label`` is taken.
            LedgerError, ProfileError, SignerError.
        """
        if self.key_store is None:
            raise ConfigError("rotation needs the key store the hold was opened with")
        grace = self.grace if grace is None else grace
        with self._lock:
            state = self._state
            if state.published:
                raise ConfigError(
                    "a rotation is still in its grace period (until "
                    f"{state.published[0].retire_at}); retire it first"
                )
            old = state.active
            if old.parent_id is not None:
                raise ConfigError(
                    "rotating a hold that issues from an intermediate CA is not supported; "
                    "issue a new intermediate under the root instead"
                )
            algo = algorithm or old.signer.algorithm
            new_signer = self.key_store.generate(new_label, algo)
            generation = len(self.ledger.cas()) + 1
            new_root = issue_root(
                new_signer,
                hold_did=self.hold_did,
                subject=self.subject,
                now=now,
                common_name=f"ATCR Hold CA G{generation} - {self.hold_did}",
            )
            new_by_old = cross_sign(old.signer, old.certificate, new_root, now=now)
            old_by_new = cross_sign(new_signer, new_root, old.certificate, now=now)
            retire_at = now + grace
            new_record = CARecord(
                ca_id_of(new_root),
                new_label,
                _der(new_root),
                now,
                "active",
                None,
                (_der(new_by_old),),
            )
            old_record = CARecord(
                old.ca_id,
                old.key_label,
                _der(old.certificate),
                now - timedelta(microseconds=1),
                "published",
                retire_at,
                (_der(old_by_new),),
            )
            self.ledger.put_cas([old_record, new_record])  # one transaction
            self._state = _load_state(self.key_store, self.ledger.cas())
        self.audit.rotated(old_id=old.ca_id, new_id=new_record.ca_id, retire_at=retire_at, now=now)
        return RotationResult(old.certificate, new_root, new_by_old, old_by_new, retire_at)

    def retire(self, now: datetime) -> list[str]:
        """Retire every published CA now (ending the grace period early); returns their ids."""
        with self._lock:
            ids = [ca.ca_id for ca in self._state.published]
        self._retire(now, force=True)
        return ids

    def _retire(self, now: datetime, *, force: bool = False) -> CAState:
        with self._lock:
            state = self._state
            done = [
                ca
                for ca in state.published
                if force or (ca.retire_at is not None and ca.retire_at <= now)
            ]
            if not done:
                return state
            self.ledger.put_cas(
                [
                    CARecord(
                        ca.ca_id,
                        ca.key_label,
                        _der(ca.certificate),
                        now,
                        "retired",
                        ca.retire_at,
                        tuple(_der(c) for c in ca.cross),
                        ca.parent_id,
                    )
                    for ca in done
                ]
            )
            assert self.key_store is not None
            self._state = _load_state(self.key_store, self.ledger.cas())
            new_state = self._state
        for ca in done:
            self.audit.rotated(
                old_id=ca.ca_id,
                new_id=new_state.active.ca_id,
                retire_at=now,
                now=now,
                step="retired",
            )
        return new_state

    def __repr__(self) -> str:
        return f"<HoldCA {self.hold_did} ca={self.ca_id[:16]}>"


def _check_match(signer: Signer, certificate: x509.Certificate, label: str) -> None:
    if spki_der(signer.public_key) != spki_der(certificate.public_key()):
        raise ConfigError(
            f"the CA key {label!r} does not match the CA certificate "
            f"(certificate SHA-256 {ca_id_of(certificate)[:16]}...): refusing to start"
        )


def _load_state(key_store: KeyStore, records: Sequence[CARecord]) -> CAState:
    cas: list[_CA] = []
    for rec in records:
        if rec.state == "retired":
            continue
        cert = x509.load_der_x509_certificate(rec.certificate_der)
        signer = key_store.load(rec.key_label)
        _check_match(signer, cert, rec.key_label)
        cross = tuple(x509.load_der_x509_certificate(c) for c in rec.cross_certificates_der)
        cas.append(
            _CA(
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
    by_id = {ca.ca_id: ca for ca in cas}
    suffix: list[x509.Certificate] = [issuing.certificate]
    roots: list[_CA] = []
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
    return CAState(issuing, published, tuple(suffix), tuple(roots))


def _ca_for_ocsp(state: CAState, request_der: bytes) -> _CA:
    """The CA whose name and key hashes the request's first CertID carries (default: active)."""
    try:
        info = parse_ocsp_request(request_der)
    except MalformedInputError:
        return state.active  # respond_ocsp answers malformedRequest itself
    first = info.cert_ids[0]
    for ca in (state.active, *state.published, *state.roots):
        der = _der(ca.certificate)
        tbs = asn1_x509.Certificate.load(der)["tbs_certificate"]
        name = tbs["subject"].dump()
        key_bits = bytes(tbs["subject_public_key_info"]["public_key"].contents[1:])
        try:
            hashes = (
                hashlib.new(first.hash_algorithm, name).digest(),
                hashlib.new(first.hash_algorithm, key_bits).digest(),
            )
        except ValueError:
            break
        if hashes == (first.issuer_name_hash, first.issuer_key_hash):
            return ca
    return state.active
