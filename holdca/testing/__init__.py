"""Test helpers for holdca and its embedders.

* :mod:`holdca.testing.atproto`: :class:`~holdca.testing.atproto.TestRepo`, signed repos and
  getRecord proofs for a fresh did:plc / did:web with a K-256 or P-256 key.
* :mod:`holdca.testing.strategies`: hypothesis strategies (needs ``hypothesis`` installed).
* :mod:`holdca.testing.tls`: :class:`~holdca.testing.tls.TestPKI`, a throwaway CA and TLS
  server certificates for local listeners.
"""

from __future__ import annotations

__all__: list[str] = []
