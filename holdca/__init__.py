"""holdca: a hold of the ATProto container registry (ATCR) acting as an X.509 CA.

The hold verifies that a user's DID signed an ``io.atcr.manifest`` record, issues a
short-lived P-256 certificate to that DID, signs the image manifest and emits a
Notation JWS envelope that ``notation verify`` accepts unchanged.

Entry points by package:

* :mod:`holdca.keys`: Signer and KeyStore Protocols; memory, PEM and PKCS#11 backends.
* :mod:`holdca.pki`: certificate profiles, issuance, CRL and OCSP (pure functions).
* :mod:`holdca.atproto`: DID, DAG-CBOR, CAR, MST and commit verification (sans-I/O).
* :mod:`holdca.notation`: JWS envelopes, OCI signature artifacts, trust policies.
* :mod:`holdca.hold`: the HoldCA service object, ledger, audit and configuration.
* :mod:`holdca.errors`: the one error hierarchy.
"""

from __future__ import annotations

from holdca.errors import HoldCAError
from holdca.keys import KeyStore, SignatureAlgorithm, Signer

__all__ = ["HoldCAError", "KeyStore", "SignatureAlgorithm", "Signer", "__version__"]

__version__ = "0.1.0"
