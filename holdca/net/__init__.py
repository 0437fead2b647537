"""The hold's outbound network: one address policy, and an HTTP fetcher that enforces it.

Optional (extra ``http``: ``pip install -e '.[http]'`` in a holdca checkout): nothing in
holdca's core imports this package.

* :class:`AddressPolicy` decides which URLs and addresses the hold may reach: globally
  routable unicast over https, plus explicit allow rules (``HOLD_NETWORK_ALLOW``);
  :func:`origin` reduces a URL to ``scheme://host[:port]``.
* :class:`Fetcher` performs GETs through that policy, checking the addresses of every
  connection after DNS resolution and connecting to exactly those, within one deadline.
"""

from __future__ import annotations

from holdca.net.fetch import ERROR_BODY_LIMIT, Fetcher, FetchResponse
from holdca.net.policy import (
    AddressPolicy,
    AllowRule,
    CheckedURL,
    HostPortRule,
    NetworkRule,
    Resolve,
    is_public_address,
    origin,
    system_resolve,
)

__all__ = [
    "ERROR_BODY_LIMIT",
    "AddressPolicy",
    "AllowRule",
    "CheckedURL",
    "FetchResponse",
    "Fetcher",
    "HostPortRule",
    "NetworkRule",
    "Resolve",
    "is_public_address",
    "origin",
    "system_resolve",
]
