"""holdca: a hold of the ATProto container registry (ATCR) acting as an X.509 CA.

The hold verifies that a user's DID signed an ``io.atcr.manifest`` record, issues a
short-lived P-256 certificate to that DID, signs the image manifest and emits a
Notation JWS envelope that ``notation verify`` accepts unchanged.

Entry points by package:

* :mod:`holdca.keys`: Signer and KeyStore Protocols; memory, PEM and PKCS#11 backends.
* :mod:`holdca.pki`: certificate profiles, issuance, CRL and OCSP (pure functions).
* :mod:`holdca.atproto`: DID, DAG-CBOR, CAR, MST and commit verification (sans-I/O).
* :mod:`holdca.notation`: JWS envelopes, OCI signature artifacts, trust policies.
* :mod:`holdca.hold`: the HoldCA service object, the trust gate, service auth, ledger,
  audit and configuration.
* :mod:`holdca.net` (extra ``http``): the outbound address policy and fetcher.
* :mod:`holdca.server` (extra ``server``): the reference XRPC server.
* :mod:`holdca.errors`: the one error hierarchy.

As a library, holdca logs to the ``holdca`` logger tree and adds only a
:class:`logging.NullHandler`: where audit events go is the embedder's choice
(``holdca serve`` writes them to ``HOLD_AUDIT_LOG``).
"""

from __future__ import annotations

import logging

from holdca.errors import HoldCAError
from holdca.keys import KeyStore, SignatureAlgorithm, Signer

__all__ = ["HoldCAError", "KeyStore", "SignatureAlgorithm", "Signer", "__version__"]

__version__ = "0.1.0"

logging.getLogger("holdca").addHandler(logging.NullHandler())
