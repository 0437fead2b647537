"""Notation (Notary Project) signatures that ``notation verify`` v1.3.2 accepts.

* :mod:`holdca.notation.envelope`: JWS envelopes (build with :func:`sign_envelope`, parse
  strictly with :func:`parse_envelope`), :class:`Descriptor`, :class:`SigningScheme`.
* :mod:`holdca.notation.cose`: COSE envelopes (``application/cose``; the ``cose`` extra),
  :mod:`holdca.notation.formats`: :class:`SignatureFormat` and :func:`sign_in_format`.
* :mod:`holdca.notation.verify`: :func:`verify_envelope`, notation's verification
  semantics in Python (levels, overrides, trust stores, identities, expiry, revocation).
* :mod:`holdca.notation.oci`: the signature manifest, referrers tag index and
  :class:`OCILayout` (attach and list signatures in an OCI image layout).
* :mod:`holdca.notation.trustpolicy`: generate and validate ``trustpolicy.json``.
* :mod:`holdca.notation.truststore`: in-memory and on-disk trust stores.

Everything is pure except :class:`OCILayout`, :class:`DirectoryTrustStore`,
:func:`write_trust_store` and :func:`write_trust_policy`, which read or write files.
"""

from __future__ import annotations

from holdca.notation.envelope import (
    MEDIA_TYPE_JWS,
    PAYLOAD_CONTENT_TYPE,
    Descriptor,
    Envelope,
    SigningScheme,
    parse_envelope,
    sign_envelope,
)
from holdca.notation.formats import SignatureFormat, sign_in_format
from holdca.notation.oci import (
    ARTIFACT_TYPE_NOTATION,
    AttachedSignature,
    ManifestForm,
    OCILayout,
    referrers_index,
    referrers_tag,
    signature_manifest,
)
from holdca.notation.trustpolicy import (
    Action,
    Check,
    SignatureVerification,
    TrustPolicy,
    TrustPolicyStatement,
    hold_trust_policy,
    parse_distinguished_name,
    validate_trust_policy,
    x509_subject_identity,
)
from holdca.notation.truststore import (
    DirectoryTrustStore,
    TrustStore,
    trust_store_dir,
    write_trust_policy,
    write_trust_store,
)
from holdca.notation.verify import (
    CheckResult,
    RevocationChecker,
    RevocationStatus,
    VerificationOutcome,
    revocation_from_crls,
    verify_envelope,
)

__all__ = [
    "ARTIFACT_TYPE_NOTATION",
    "MEDIA_TYPE_JWS",
    "PAYLOAD_CONTENT_TYPE",
    "Action",
    "AttachedSignature",
    "Check",
    "CheckResult",
    "Descriptor",
    "DirectoryTrustStore",
    "Envelope",
    "ManifestForm",
    "OCILayout",
    "RevocationChecker",
    "RevocationStatus",
    "SignatureFormat",
    "SignatureVerification",
    "SigningScheme",
    "TrustPolicy",
    "TrustPolicyStatement",
    "TrustStore",
    "VerificationOutcome",
    "hold_trust_policy",
    "sign_in_format",
    "parse_distinguished_name",
    "parse_envelope",
    "referrers_index",
    "referrers_tag",
    "revocation_from_crls",
    "sign_envelope",
    "signature_manifest",
    "trust_store_dir",
    "validate_trust_policy",
    "verify_envelope",
    "write_trust_policy",
    "write_trust_store",
    "x509_subject_identity",
]
