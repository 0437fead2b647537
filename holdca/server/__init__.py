"""The reference XRPC server (extra ``server``); holdca's core never imports it.

Install the extra from a checkout of the holdca repository: ``pip install -e '.[server]'``.

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
