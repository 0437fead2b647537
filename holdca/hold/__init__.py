"""The hold as a CA: the :class:`HoldCA` service object, its ledger, audit log and config.

* :class:`HoldCA` (:mod:`holdca.hold.service`): init/load, cosign, resign, issue, revoke,
  CRL, OCSP, rotation.
* :class:`IssuanceLedger` with :class:`SQLiteLedger` (default) and :class:`MemoryLedger`
  (:mod:`holdca.hold.ledger`).
* :class:`AuditLog` (:mod:`holdca.hold.audit`): JSON events to ``holdca.audit``.
* :class:`HoldConfig` (:mod:`holdca.hold.config`): keywords or ``HOLD_*`` variables;
  :func:`open_hold` turns one into a running HoldCA.
* :class:`IssuancePolicy`, :class:`RateLimiter` and the :class:`Authorizer` hook
  (:mod:`holdca.hold.policy`).
* :class:`TrustGate` (:mod:`holdca.hold.gate`): what must be true before the hold signs;
  :class:`ServiceAuth` (:mod:`holdca.hold.auth`): callers prove who they are.
* :class:`DIDWatch` (:mod:`holdca.hold.watch`): key changes, PDS moves and deactivations
  seen by the hold's fresh resolutions and by :meth:`HoldCA.sweep`, revoked or flagged.

Example::

    from datetime import UTC, datetime
    from holdca.hold import HoldConfig, open_hold

    ca = open_hold(HoldConfig.from_env(), now=datetime.now(UTC), create=True)
"""

from __future__ import annotations

from holdca.hold.audit import AUDIT_LOGGER, AuditLog
from holdca.hold.auth import ServiceAuth
from holdca.hold.config import HoldConfig, Secret
from holdca.hold.gate import GateResult, TrustGate
from holdca.hold.ledger import (
    CARecord,
    DenyEntry,
    IssuanceLedger,
    IssuanceRecord,
    MemoryLedger,
    Revocation,
    SQLiteLedger,
)
from holdca.hold.policy import (
    AllowAllAuthorizer,
    Authorizer,
    IssuancePolicy,
    RateLimiter,
    SameDIDAuthorizer,
)
from holdca.hold.service import (
    CosignRequest,
    CosignResponse,
    HoldCA,
    RotationResult,
    ca_id_of,
)
from holdca.hold.setup import key_store_from_config, open_hold
from holdca.hold.watch import DIDWatch, Observation, SweepReport

__all__ = [
    "AUDIT_LOGGER",
    "AllowAllAuthorizer",
    "AuditLog",
    "Authorizer",
    "CARecord",
    "DenyEntry",
    "GateResult",
    "CosignRequest",
    "CosignResponse",
    "DIDWatch",
    "HoldCA",
    "HoldConfig",
    "IssuanceLedger",
    "IssuancePolicy",
    "IssuanceRecord",
    "MemoryLedger",
    "Observation",
    "RateLimiter",
    "Revocation",
    "RotationResult",
    "SQLiteLedger",
    "SameDIDAuthorizer",
    "Secret",
    "ServiceAuth",
    "SweepReport",
    "TrustGate",
    "ca_id_of",
    "key_store_from_config",
    "open_hold",
]
