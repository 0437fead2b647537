"""Pure PKI core: notation-compliant certificate profiles, issuance, CRLs, OCSP and lint.

Everything here is a pure function of its inputs (signers, certificates, an explicit
``now``, data) returning cryptography objects or DER bytes; there is no I/O and no clock
(except the producedAt cryptography's OCSP builder stamps, see :mod:`holdca.pki.ocsp`).
Signing goes through :func:`holdca.keys.as_private_key` (or, for user leaves,
:meth:`Signer.sign <holdca.keys.Signer.sign>` directly), so HSM keys work unchanged.

Modules: :mod:`~holdca.pki.names` (subjects), :mod:`~holdca.pki.rules` (the profile rules
issuance and templates share: validity windows, issuer, key, URL and serial checks),
:mod:`~holdca.pki.issue` (root, intermediate, leaf, OCSP responder, cross-certificates),
:mod:`~holdca.pki.template` (:class:`LeafTemplate`, the fast path for many leaves under one
CA), :mod:`~holdca.pki.lint` (:func:`check_notation_profile`), :mod:`~holdca.pki.crl` and
:mod:`~holdca.pki.ocsp`, :mod:`~holdca.pki.tsa` (the built-in time-stamping authority's
root and certificate).
See docs/pki.md.
"""

from __future__ import annotations

from holdca.pki.crl import (
    MAX_CRL_BYTES,
    RevokedEntry,
    build_crl,
    estimate_crl_bytes,
    select_for_crl,
)
from holdca.pki.issue import (
    check_http_url,
    cross_sign,
    issue_intermediate,
    issue_leaf,
    issue_ocsp_responder,
    issue_root,
    random_serial,
)
from holdca.pki.lint import ProfileRuleError, check_notation_profile
from holdca.pki.names import SubjectInfo
from holdca.pki.ocsp import (
    MAX_OCSP_RESPONSE_BYTES,
    CertID,
    CertStatus,
    OCSPRequestInfo,
    OCSPResponseCache,
    decode_ocsp_get,
    issuer_hashes,
    ocsp_error_response,
    parse_ocsp_get,
    parse_ocsp_request,
    respond_ocsp,
    respond_ocsp_get,
)
from holdca.pki.template import LeafTemplate
from holdca.pki.tsa import (
    TSA_KEY_LABEL,
    TSA_ROOT_KEY_LABEL,
    check_tsa_certificate,
    issue_tsa_certificate,
    issue_tsa_root,
)

__all__ = [
    "MAX_CRL_BYTES",
    "MAX_OCSP_RESPONSE_BYTES",
    "CertID",
    "CertStatus",
    "LeafTemplate",
    "OCSPRequestInfo",
    "OCSPResponseCache",
    "ProfileRuleError",
    "RevokedEntry",
    "SubjectInfo",
    "TSA_KEY_LABEL",
    "TSA_ROOT_KEY_LABEL",
    "build_crl",
    "check_http_url",
    "check_notation_profile",
    "check_tsa_certificate",
    "cross_sign",
    "decode_ocsp_get",
    "issuer_hashes",
    "estimate_crl_bytes",
    "issue_intermediate",
    "issue_leaf",
    "issue_ocsp_responder",
    "issue_root",
    "issue_tsa_certificate",
    "issue_tsa_root",
    "ocsp_error_response",
    "parse_ocsp_get",
    "parse_ocsp_request",
    "random_serial",
    "respond_ocsp",
    "respond_ocsp_get",
    "select_for_crl",
]
