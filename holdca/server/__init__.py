"""The reference XRPC server (``pip install 'holdca[server]'``); holdca's core never imports it.

* :func:`create_app` (:mod:`holdca.server.app`): the Starlette app around a
  :class:`~holdca.hold.HoldCA`: co-sign and re-sign with service auth, CA certificates,
  CRL and OCSP;
* :mod:`holdca.server.limits`: bodies, JSON depth, stalled uploads, per-client budgets;
* :func:`serve` (:mod:`holdca.server.run`): uvicorn with connection limits and timeouts.
"""

from __future__ import annotations

from holdca.server.app import (
    COSIGN_NSID,
    DEFAULT_MAX_BODY,
    RESIGN_NSID,
    Authenticate,
    create_app,
    error_for,
)
from holdca.server.limits import ClientBudget, XRPCError
from holdca.server.run import ServerLimits, serve

__all__ = [
    "COSIGN_NSID",
    "DEFAULT_MAX_BODY",
    "RESIGN_NSID",
    "Authenticate",
    "ClientBudget",
    "ServerLimits",
    "XRPCError",
    "create_app",
    "error_for",
    "serve",
]
