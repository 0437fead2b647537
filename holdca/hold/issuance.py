"""Issuance for :class:`~holdca.hold.HoldCA`: :class:`IssuanceMixin` checks a request
(co-signing enabled, the caller, the policy, the deny list, the trust gate, the rate limit),
issues the leaf from the current CA state's template, signs the envelope (JWS or COSE,
optionally timestamped) and the signature manifest, commits the issuance to the ledger and
audits it, then (with a transparency log) publishes its log entry and returns the receipt,
in that order; :meth:`~IssuanceMixin.issue` is the operator's proof-less path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509

from holdca.errors import (
    ConfigError,
    DeniedDIDError,
    DuplicateSerialError,
    HoldCAError,
    LedgerError,
    MalformedInputError,
    PolicyError,
    ProfileError,
    RateLimitError,
)
from holdca.hold.audit import AuditLog
from holdca.hold.castate import (
    CAState,
    certificate_der,
    crl_url_for,
)
from holdca.hold.crlparts import leaf_not_before, period_of
from holdca.hold.gate import GateResult, TrustGate
from holdca.hold.ledger import IssuanceLedger, IssuanceRecord
from holdca.hold.policy import Authorizer, IssuancePolicy
from holdca.hold.requests import (
    ANNOTATION_RECORD,
    ANNOTATION_REPOSITORY,
    MANIFEST_TYPES,
    CosignRequest,
    CosignResponse,
)
from holdca.hold.translog import IssuanceLog
from holdca.keys import MemorySigner, SignatureAlgorithm
from holdca.notation import (
    Descriptor,
    SigningScheme,
    signature_manifest,
)
from holdca.notation.formats import SignatureFormat, sign_in_format
from holdca.notation.timestamp import Timestamper
from holdca.pki import (
    LeafTemplate,
    SubjectInfo,
    random_serial,
)
from holdca.pki.rules import DEFAULT_BACKDATE

_log = logging.getLogger("holdca.hold")

__all__ = ["IssuanceMixin"]


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check: what signing (and re-signing) it needs."""

    did: str
    descriptor: Descriptor
    proof: GateResult
    validity: timedelta
    kind: str
    record_uri: str
    signature_format: SignatureFormat


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


class IssuanceMixin:
    """Issuance for :class:`~holdca.hold.HoldCA` (which provides the attributes below)."""

    ledger: IssuanceLedger
    audit: AuditLog
    policy: IssuancePolicy
    authorizer: Authorizer
    gate: TrustGate | None
    cosign_enabled: bool
    leaf_validity: timedelta
    scheme: SigningScheme
    subject: SubjectInfo
    crl_url: str | None
    ocsp_url: str | None
    crl_partition: str | None
    signature_format: SignatureFormat
    timestamper: Timestamper | None
    transparency: IssuanceLog | None
    _issuing_kit: _IssuingKit | None
    _period_template: tuple[_IssuingKit, str, datetime, datetime, LeafTemplate] | None
    _linted_suffixes: set[tuple[bytes, ...]]

    if TYPE_CHECKING:  # provided by HoldCA and StatusMixin

        def state(self, now: datetime | None = None) -> CAState: ...

        def leaf_crl_url(self, ca_id: str, not_before: datetime) -> str | None: ...

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
            LedgerError: the issuance could not be recorded, or (with a transparency log)
                its entry could not be published: then nothing is returned (a recorded
                entry is published by the next integration).
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
            response = self._record_and_audit(checked, self._sign(checked, now=now), now=now)
            return self._logged([(checked, response)], now=now)[0]
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
        done = [(i, c, r) for i, c, _ in signed if isinstance(r := results[i], CosignResponse)]
        try:
            logged = self._logged([(c, r) for _, c, r in done], now=now)
        except LedgerError as exc:
            for i, _, _ in done:
                self._refused(requests[i], kind, exc, now)
                results[i] = exc
            return results
        for (i, _, _), response in zip(done, logged, strict=True):
            results[i] = response
        return results

    def _logged(
        self, issued: Sequence[tuple[_Checked, CosignResponse]], *, now: datetime
    ) -> list[CosignResponse]:
        """With a transparency log: publish the entries of ``issued`` (recorded in the
        ledger) and return them with their receipts and the log annotations on their
        signature manifests. Without one: ``issued``'s responses unchanged.

        Raises:
            LedgerError: an entry is not sequenced or the log could not be published.
        """
        responses = [r for _, r in issued]
        if self.transparency is None or not responses:
            return responses
        receipts = self.transparency.receipts(self.ledger, [r.serial for r in responses])
        out = []
        for (checked, response), receipt in zip(issued, receipts, strict=True):
            chain = (response.record.certificate_der, *self._kit(self.state(now)).suffix_der)
            manifest = signature_manifest(
                response.envelope,
                checked.descriptor,
                chain=chain,
                created=now.replace(microsecond=0),
                media_type=response.signature_format.value,
                annotations=receipt.annotations(),
            )
            out.append(replace(response, signature_manifest=manifest, log=receipt))
        return out

    def publish_log(self) -> None:
        """Publish every entry the ledger sequenced (revocations, or entries a failed
        publication left); a failure is logged, not raised (the entries stay sequenced).
        """
        if self.transparency is None:
            return
        try:
            self.transparency.integrate(self.ledger)
        except LedgerError as exc:
            _log.warning("transparency log not published: %s", exc)

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
        if descriptor.media_type not in MANIFEST_TYPES:
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
        if limiter is not None:  # the ledger's slots: shared by every replica, taken atomically
            free_at = self.ledger.take_rate_slot(
                did, now=now, window=limiter.window, limit=limiter.max_issuances
            )
            if free_at is not None:
                retry = max(int((free_at - now).total_seconds()), 1)
                raise RateLimitError(
                    f"rate limit: {did} had {limiter.max_issuances} certificates in the last "
                    f"{limiter.window}; retry in {retry} s"
                )
        return _Checked(
            did,
            descriptor,
            proof,
            validity,
            kind,
            request.record_uri,
            request.signature_format or self.signature_format,
        )

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
        leaf_der = self._template_at(kit, now).issue_der(
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
        envelope_format = checked.signature_format
        envelope = sign_in_format(
            envelope_format,
            leaf_key,
            chain_der,
            signed,
            now=now,
            scheme=self.scheme,
            check_chain=self._needs_lint(kit, now),
            **({} if self.timestamper is None else {"timestamper": self.timestamper}),
        )
        self._linted_suffixes.add(kit.suffix_der)
        manifest = signature_manifest(
            envelope,
            descriptor,
            chain=chain_der,
            created=now.replace(microsecond=0),
            media_type=envelope_format.value,
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
        return CosignResponse(
            envelope, manifest, (leaf, *state.chain_suffix), record, verified, envelope_format
        )

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

    def _template_at(self, kit: _IssuingKit, now: datetime) -> LeafTemplate:
        """The template whose CDP names the CRL partition of a leaf ``kit`` issues at ``now``.

        One template per period, derived from ``kit.template`` when the period changes
        (:meth:`~holdca.pki.LeafTemplate.with_crl_url`); within a period this is two
        comparisons.
        """
        unit = self.crl_partition
        if unit is None or self.crl_url is None:
            return kit.template
        current = self._period_template
        if (
            current is not None
            and current[0] is kit
            and current[1] == unit
            and current[2] <= now - DEFAULT_BACKDATE < current[3]
        ):
            return current[4]
        ca = kit.state.active
        not_before = leaf_not_before(now, ca.certificate)
        period = period_of(not_before, unit)
        template = kit.template.with_crl_url(self.leaf_crl_url(ca.ca_id, not_before))
        # reusable while the notBefore written (now - backdate, whole seconds, unless
        # clamped to the CA's notBefore) stays in the period
        start = max(period.start, ca.certificate.not_valid_before_utc)
        self._period_template = (kit, unit, start, period.end, template)
        return template

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
            IssuancePolicyError, DIDSyntaxError, ProfileError, SignerError, LedgerError (also
            when the transparency log could not be published).
        """
        validity = validity if validity is not None else self.leaf_validity
        try:
            did = self.policy.check_did(did)
            self.policy.check_validity(validity)
            state = self.state(now)
            leaf = self._template_at(self._kit(state), now).issue(
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
        if self.transparency is not None:  # logged (without a record) before it is returned
            self.transparency.receipts(self.ledger, [record.serial])
        return (leaf, *state.chain_suffix)
