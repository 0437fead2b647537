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
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.atproto.identity import Resolver
from holdca.atproto.verify import VerifiedRecord
from holdca.errors import (
    ConfigError,
    DeniedDIDError,
    DuplicateSerialError,
    HoldCAError,
    KeyNotFoundError,
    KeyStoreError,
    LedgerError,
    MalformedInputError,
    PolicyError,
    ProfileError,
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
from holdca.hold.gate import GateResult, TrustGate
from holdca.hold.ledger import CARecord, IssuanceLedger, IssuanceRecord
from holdca.hold.policy import Authorizer, IssuancePolicy, SameDIDAuthorizer
from holdca.hold.revocation import RevocationMixin
from holdca.hold.rotation import RotationMixin, RotationResult
from holdca.hold.status import StatusMixin
from holdca.hold.watch import DEFAULT_CONCURRENCY, DIDWatch, OnChange, SweepReport
from holdca.keys import KeyStore, MemorySigner, SignatureAlgorithm
from holdca.notation import (
    Descriptor,
    SigningScheme,
    sign_envelope,
    signature_manifest,
)
from holdca.pki import (
    LeafTemplate,
    SubjectInfo,
    issue_intermediate,
    issue_root,
    random_serial,
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

ANNOTATION_REPOSITORY = "io.atcr.repository"
"""Signed annotation (notation user metadata): the repository the user's record names.

A relying party can require it: ``notation verify -m io.atcr.repository=alice/app``."""

ANNOTATION_RECORD = "io.atcr.record"
"""Signed annotation (notation user metadata): the ``at://`` URI of the manifest record."""

_MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)


@dataclass(frozen=True)
class CosignRequest:
    """A coSignManifest / reSignManifest request, already decoded from the transport.

    Nothing in a request decides which key is checked: the hold resolves ``did`` and
    fetches the proof itself (see :class:`~holdca.hold.gate.TrustGate`).

    Attributes:
        did: the user DID the certificate is for.
        descriptor: the image manifest (mediaType, digest, size) to sign.
        record_uri: ``at://<did>/io.atcr.manifest/<rkey>`` of the manifest record.
        proof_hint: optionally, the caller's ``com.atproto.sync.getRecord`` CAR; it saves
            the hold a fetch only if it verifies and is current (the gate checks both).
        caller: the identity the embedder authenticated, or ``None``.
        validity: requested leaf lifetime (default: the hold's).
    """

    did: str
    descriptor: Descriptor
    record_uri: str
    proof_hint: bytes | None = field(default=None, repr=False)
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
            "repository": self.record.repository,
            "recordUri": self.record.record_uri,
            "proofSource": self.record.proof_source,
        }


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check: what signing (and re-signing) it needs."""

    did: str
    descriptor: Descriptor
    proof: GateResult
    validity: timedelta
    kind: str
    record_uri: str


@dataclass(frozen=True)
class _IssuingKit:
    """What every leaf of one CA state reuses: the leaf template and the chain's DER."""

    state: CAState
    settings: tuple[SubjectInfo, str | None, str | None]
    template: LeafTemplate
    suffix_der: tuple[bytes, ...]
    suffix_valid: tuple[datetime, datetime]  # when every suffix certificate is valid


def _within_chain(state: CAState, validity: timedelta, now: datetime) -> timedelta:
    """``validity`` shortened so that a leaf issued at ``now`` expires with its chain.

    Raises:
        ProfileError: a certificate of the chain has expired (or expires within a minute).
    """
    left = state.chain_not_after - now
    if left < timedelta(minutes=1):
        raise ProfileError(
            f"the hold's CA chain expires at {state.chain_not_after.isoformat()}: rotate "
            "the CA (holdca rotate) before issuing"
        )
    return min(validity, left)


class HoldCA(RevocationMixin, StatusMixin, RotationMixin, CompromiseMixin):
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
        grace: timedelta = DEFAULT_GRACE,
        resolver: Resolver | None = None,
        proof_max_age: timedelta = timedelta(0),
        reuse_identities: bool = False,
        ocsp_validity: timedelta = timedelta(hours=24),
        on_did_change: OnChange | str | None = None,
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

        Raises:
            ValueError: an unknown ``on_did_change``.
        """
        self._state = state
        self._ca_version = ledger.ca_version()
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
        self.root_crl_next_update = root_crl_next_update
        self.crl_refresh = crl_refresh
        self.crl_retention = crl_retention
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

    # ------------------------------------------------------------------ issuance

    def cosign(self, request: CosignRequest, *, now: datetime) -> CosignResponse:
        """Co-sign an image manifest for the DID that committed it to its ATProto repo.

        Steps: cosign enabled? -> authorise the caller -> check the DID and validity
        against the policy -> the deny list -> the trust gate (the hold resolves the DID
        and fetches the proof itself, or checks the caller's hint is current; CAR hashes,
        commit signature by the DID's current key, MST inclusion, record digest, media
        type and size == the descriptor's, ``holdDid`` == this hold, commit DID) -> rate
        limit -> ephemeral P-256 key -> leaf -> envelope (the record's repository and URI
        as signed annotations) -> signature manifest -> ledger commit -> audit -> return.

        Raises:
            PolicyError: co-signing is disabled.
            ConfigError: the hold has no resolver.
            AuthorizationError: the caller may not act for the DID.
            IssuancePolicyError: the policy refuses (method, allow-list, validity, rate);
                DeniedDIDError: the DID is on the deny list.
            RecordAbsentError, SignatureInvalidError, ResolutionError, DIDDeactivatedError,
            MalformedInputError, VerificationError: the gate refused (see
                :meth:`holdca.hold.gate.TrustGate.verify`).
            ProfileError, SignerError: issuing or signing failed.
            LedgerError: the issuance could not be recorded (then nothing is returned).
        """
        return self._sign_request(request, now=now, kind="cosign")

    def resign(self, request: CosignRequest, *, now: datetime) -> CosignResponse:
        """Re-sign an older image: re-verify its record proof and issue a fresh signature.

        The seed's ``reSignManifest``: used when an earlier 24-hour certificate has
        expired and a verifier without a timestamp needs a currently valid chain. Same
        checks and errors as :meth:`cosign`, except that the record must be present at
        the repo's current commit (no age allowance for a hint); the ledger entry has
        kind ``resign``.
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
                self.audit.issued(
                    response.record, now=now, pds_host=checked.proof.identity.pds_host
                )
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
        """Policy, authorisation, deny list, the trust gate and the rate limit, in order."""
        if not self.cosign_enabled:
            raise PolicyError("co-signing is disabled on this hold (HOLD_COSIGN_ENABLED)")
        if self.gate is None:
            raise ConfigError("this hold has no resolver: it cannot verify record proofs")
        self.authorizer.authorize(request.caller, request.did)
        did = self.policy.check_did(request.did)
        self._check_not_denied(did)
        validity = request.validity if request.validity is not None else self.leaf_validity
        self.policy.check_validity(validity)
        descriptor = request.descriptor
        if descriptor.media_type not in _MANIFEST_TYPES:
            raise MalformedInputError(
                f"descriptor media type {descriptor.media_type!r} is not an image manifest"
            )
        proof = self.gate.verify(
            did,
            request.record_uri,
            descriptor,
            now=now,
            hint=request.proof_hint,
            mode="resign" if kind == "resign" else "cosign",
        )
        limiter = self.policy.rate_limit
        if limiter is not None:
            recorded = self.ledger.count_since(did, now - limiter.window)
            limiter.acquire(did, now, recorded=recorded)
        return _Checked(did, descriptor, proof, validity, kind, request.record_uri)

    def _check_not_denied(self, did: str) -> None:
        entry = self.ledger.denial(did)
        if entry is not None:
            raise DeniedDIDError(
                f"{did} is on this hold's deny list since {entry.since.isoformat()} "
                f"({entry.reason[:200]}); an operator lifts it with `holdca allow`"
            )

    def _sign(self, checked: _Checked, *, now: datetime) -> CosignResponse:
        """Ephemeral key, leaf, envelope and signature manifest; not recorded in the ledger."""
        did, descriptor, verified = checked.did, checked.descriptor, checked.proof.verified
        repository = verified.manifest.repository
        state = self.state(now)
        kit = self._kit(state)
        leaf_key = MemorySigner.generate(SignatureAlgorithm.ES256)
        leaf_der = kit.template.issue_der(
            did=did,
            public_key=leaf_key.public_key,
            now=now,
            validity=_within_chain(state, checked.validity, now),
            serial=random_serial(),
        )
        leaf = x509.load_der_x509_certificate(leaf_der)
        chain_der = (leaf_der, *kit.suffix_der)
        signed = replace(
            descriptor,
            annotations={
                **(descriptor.annotations or {}),
                ANNOTATION_REPOSITORY: repository,
                ANNOTATION_RECORD: checked.record_uri,
            },
        )
        envelope = sign_envelope(
            leaf_key,
            chain_der,
            signed,
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
            commit_cid=str(verified.commit_cid),
            rev=verified.rev,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            certificate_der=leaf_der,
            issuer_id=state.active.ca_id,
            issued_at=now,
            kind=checked.kind,
            repository=repository,
            record_uri=checked.record_uri,
            proof_source=checked.proof.source,
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
            self.audit.issued(response.record, now=now, pds_host=checked.proof.identity.pds_host)
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
                    state.active.key("issuing"),
                    state.active.certificate,
                    subject=self.subject,
                    crl_url=crl_url_for(self.crl_url, state.active.ca_id),
                    ocsp_url=self.ocsp_url,
                ),
                suffix_der=tuple(certificate_der(c) for c in state.chain_suffix),
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
                did=did,
                public_key=public_key,
                now=now,
                validity=_within_chain(state, validity, now),
            )
            record = IssuanceRecord(
                serial=leaf.serial_number,
                did=did,
                manifest_digest=manifest_digest,
                commit_cid=None,
                rev=None,
                not_before=leaf.not_valid_before_utc,
                not_after=leaf.not_valid_after_utc,
                certificate_der=certificate_der(leaf),
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
