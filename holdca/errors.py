"""The one error hierarchy of holdca.

Every error holdca raises on bad input, failed verification or backend trouble is a
:class:`HoldCAError`. Misuse of holdca's own API (wrong argument types, an invalid
keyword combination) raises plain :class:`TypeError` / :class:`ValueError`, as
cryptography's builders do.

The branches:

* :class:`MalformedInputError` (also a :class:`ValueError`): bytes or text that do not
  parse: DER, DAG-CBOR, CAR, JWS, JSON, DIDs, OCSP requests. Their mistake.
* :class:`VerificationError`: well-formed input that does not prove what it claims:
  bad signatures, wrong DID, record absent from the repo, untrusted chain.
* :class:`SignerError` and :class:`KeyStoreError`: trouble in a key backend (PKCS#11
  token, PEM files, memory), raised ``from`` the backend's own exception.
* :class:`ProfileError`: a certificate or chain that notation would reject.
* :class:`PolicyError`: a trust policy or issuance policy that is invalid or refuses.
* :class:`ConfigError`: invalid configuration, naming the setting.
* :class:`LedgerError`: the issuance ledger could not record or read.
* :class:`RegistryError`: an OCI registry refused, failed or answered out of protocol.

Verification functions raise; they never return ``False``. Messages never contain
secrets (PINs, passphrases, key material).
"""

from __future__ import annotations

__all__ = [
    "AddressRefusedError",
    "AuthenticationError",
    "DIDDeactivatedError",
    "DeniedDIDError",
    "PLCLogError",
    "PLCOperationError",
    "ReplayError",
    "ArtifactMismatchError",
    "AuthenticTimestampError",
    "AuthenticityError",
    "ExpiredSignatureError",
    "IntegrityError",
    "NotationVerificationError",
    "RevocationError",
    "RevocationUnknownError",
    "RevokedError",
    "TrustStoreError",
    "TrustedIdentityError",
    "VerificationInconclusiveError",
    "AuthorizationError",
    "ATURIError",
    "CARError",
    "CommitError",
    "CIDError",
    "CRLError",
    "ConfigError",
    "DAGCBORError",
    "DIDDocumentError",
    "DIDSyntaxError",
    "DuplicateSerialError",
    "HoldCAError",
    "IncompleteProofError",
    "InsecureKeyFileError",
    "IssuancePolicyError",
    "JWSFormatError",
    "KeyExistsError",
    "KeyFileCorruptError",
    "KeyNotFoundError",
    "KeyStoreError",
    "LedgerError",
    "MSTError",
    "MalformedInputError",
    "OCSPRequestError",
    "PINIncorrectError",
    "PolicyError",
    "ProfileError",
    "RateLimitError",
    "RecordAbsentError",
    "RecordMismatchError",
    "RegistryError",
    "ResolutionError",
    "SignatureInvalidError",
    "SignerError",
    "TimestampError",
    "TlogError",
    "TokenNotFoundError",
    "TrustPolicyError",
    "UnsupportedAlgorithmError",
    "VerificationError",
    "WrongPassphraseError",
]


class HoldCAError(Exception):
    """Root of every error holdca raises on bad input or backend failure."""


# --- malformed input -------------------------------------------------------------


class MalformedInputError(HoldCAError, ValueError):
    """Input bytes or text that do not parse as what they should be."""


class DIDSyntaxError(MalformedInputError):
    """A DID that is not a syntactically valid did:plc / did:web / did:key."""


class DIDDocumentError(MalformedInputError):
    """A DID document that is malformed or lacks the #atproto key / PDS endpoint."""


class DAGCBORError(MalformedInputError):
    """Bytes that are not strict DAG-CBOR (floats, non-minimal ints, bad key order, ...)."""


class CIDError(MalformedInputError):
    """A CID that is not a supported CIDv1 (dag-cbor or raw codec, sha2-256)."""


class CARError(MalformedInputError):
    """A CARv1 file that is malformed, over a limit, or whose block fails its hash."""


class CommitError(MalformedInputError):
    """A repo commit object that is malformed (field set, types, version, ``rev`` syntax)."""


class MSTError(MalformedInputError):
    """An MST node that breaks the tree invariants (shape, key order, compression, heights)."""


class ATURIError(MalformedInputError):
    """An ``at://`` URI, NSID, record key or TID that is not valid atproto syntax."""


class JWSFormatError(MalformedInputError):
    """A JWS envelope that does not parse as a Notation JWS envelope."""


class OCSPRequestError(MalformedInputError):
    """An OCSP request that is not valid DER / base64 / a supported CertID."""


class PLCOperationError(MalformedInputError):
    """A did:plc operation or audit log that does not parse (fields, types, encodings)."""


# --- verification ----------------------------------------------------------------


class VerificationError(HoldCAError):
    """Well-formed input that does not prove what it claims."""


class SignatureInvalidError(VerificationError):
    """A signature that does not verify (wrong key, tampered data, high-S, DER form)."""


class RecordAbsentError(VerificationError):
    """The MST proves that the requested record is not in the repository."""


class IncompleteProofError(VerificationError):
    """The proof lacks a block needed to decide inclusion or absence."""


class RecordMismatchError(VerificationError):
    """The record exists but does not match (wrong $type, digest, DID, ...)."""


class AuthorizationError(VerificationError):
    """The caller is not allowed to act for the requested DID."""


class ResolutionError(VerificationError):
    """A DID document or record proof could not be fetched (network, status, timeout, size)."""


class AddressRefusedError(ResolutionError):
    """The hold refused to connect: an internal or IP-literal address, or plain http.

    The message names the host, never which addresses or ports answered.
    """


class TimestampError(VerificationError):
    """An RFC 3161 timestamp that could not be obtained or does not check out.

    Raised for a malformed TimeStampReq/TimeStampResp/token (DER, size, fields), a TSA
    reply that fails its checks (status, nonce, messageImprint, token signature, ESS
    signingCertificateV2, TSA chain and EKU), and a TSA that cannot be reached in time
    or that the hold's address policy refuses.
    """


class TlogError(VerificationError):
    """A transparency log artefact that is malformed or does not verify.

    Raised for a malformed entry, entry bundle, tile, signed note or checkpoint, a tile
    whose hashes do not lead to the signed root, an inclusion or consistency proof that
    fails, a log that went backwards or forked (two roots for one size), and a missing
    or unreadable log file. A checkpoint signature that does not verify under a known
    key raises :class:`SignatureInvalidError` instead.
    """


class DIDDeactivatedError(VerificationError):
    """The DID is tombstoned (did:plc) or its document is gone (did:web)."""


class PLCLogError(VerificationError):
    """A did:plc operation log that does not verify: genesis hash, chain, signatures,
    nullification rules."""


class AuthenticationError(VerificationError):
    """The caller did not prove who it is (missing, malformed, expired or forged token).

    ``error`` is the XRPC error name the server answers with (HTTP 401).
    """

    error = "AuthenticationRequired"

    def __init__(self, message: str, *, error: str | None = None) -> None:
        """Describe the failure; ``error`` overrides the XRPC error name."""
        super().__init__(message)
        if error is not None:
            self.error = error


class ReplayError(AuthenticationError):
    """A service-auth token (its ``jti``) was already used."""

    error = "TokenReplayed"


class NotationVerificationError(VerificationError):
    """A Notation signature failed one of notation's checks; ``check`` names it."""

    check = "integrity"


class IntegrityError(NotationVerificationError, SignatureInvalidError):
    """Envelope integrity: unparsable, bad signature, bad chain shape, wrong cty or alg."""

    check = "integrity"


class AuthenticityError(NotationVerificationError):
    """The signature's chain holds no certificate from the policy's trust stores."""

    check = "authenticity"


class TrustedIdentityError(AuthenticityError):
    """The signing certificate's subject matches none of the policy's trusted identities."""


class ExpiredSignatureError(NotationVerificationError):
    """The signature's ``io.cncf.notary.expiry`` has passed."""

    check = "expiry"


class AuthenticTimestampError(NotationVerificationError):
    """A certificate was not valid at the verification or authentic signing time."""

    check = "authenticTimestamp"


class RevocationError(NotationVerificationError):
    """Revocation checking failed (a certificate is revoked or its status unknown)."""

    check = "revocation"


class RevokedError(RevocationError):
    """A certificate of the signature's chain is revoked."""


class RevocationUnknownError(RevocationError):
    """The revocation status of a certificate could not be determined."""


class ArtifactMismatchError(NotationVerificationError):
    """The signed target artifact is not the artifact being verified."""

    check = "artifact"


class VerificationInconclusiveError(NotationVerificationError):
    """Notation could not reach a verdict (a verification plugin is required, no anchors)."""


# --- keys ------------------------------------------------------------------------


class SignerError(HoldCAError):
    """A signer could not produce a signature."""


class UnsupportedAlgorithmError(SignerError):
    """A key type, curve, mechanism or signature algorithm holdca does not support."""


class KeyStoreError(HoldCAError):
    """A key store could not generate, load, list or delete a key."""


class KeyNotFoundError(KeyStoreError, KeyError):
    """No key with the requested label exists in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "key not found"


class KeyExistsError(KeyStoreError):
    """``generate`` refused to overwrite an existing key."""


class KeyFileCorruptError(KeyStoreError):
    """A key file is truncated, corrupted or not a private key."""


class WrongPassphraseError(KeyStoreError):
    """The passphrase does not decrypt the key file."""


class InsecureKeyFileError(KeyStoreError):
    """A key file is readable or writable by group or others."""


class TokenNotFoundError(KeyStoreError):
    """The PKCS#11 module has no token with the requested label."""


class PINIncorrectError(KeyStoreError):
    """The PKCS#11 token rejected the PIN (the PIN itself is never shown)."""


# --- profiles, policies, configuration, ledger ----------------------------------------


class ProfileError(HoldCAError):
    """A certificate or chain that violates the profile notation enforces."""


class CRLError(ProfileError):
    """A CRL that cannot be built as notation requires (CRL number, update times, size)."""


class PolicyError(HoldCAError):
    """A policy (trust policy, issuance policy) is invalid or refuses the request."""


class TrustPolicyError(PolicyError):
    """A notation trust policy document that notation itself would reject."""


class IssuancePolicyError(PolicyError):
    """The hold's issuance policy refuses (rate limit, DID method, validity, ...)."""


class RateLimitError(IssuancePolicyError):
    """A DID asked for more certificates than the hold's rate limit allows; retry later."""


class DeniedDIDError(IssuancePolicyError):
    """The DID is on the hold's deny list (a keyCompromise revocation, ``holdca deny``)."""


class ConfigError(HoldCAError, ValueError):
    """Invalid configuration; the message names the setting or variable."""


class TrustStoreError(ConfigError):
    """A notation trust store directory notation would refuse to load."""


class LedgerError(HoldCAError):
    """The issuance ledger could not record or read; nothing was issued."""


class DuplicateSerialError(LedgerError):
    """The ledger already holds a certificate with this serial (the database refused it)."""


# --- OCI registries ----------------------------------------------------------------------


class RegistryError(HoldCAError):
    """An OCI registry refused, failed or answered out of protocol.

    Raised for: connection failures and timeouts (the deadline included), a refused
    authentication (Basic or the Bearer token challenge), an error status (the message
    carries the registry's error code, e.g. ``MANIFEST_INVALID``, never a credential or
    token), a response over its size limit, content that does not match its digest, and
    a referrers index that could not be updated without losing a concurrent writer's
    entry. ``status`` is the HTTP status when there was one, else ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        """Describe the failure; ``status`` is the registry's HTTP status if any."""
        super().__init__(message)
        self.status = status
