"""Fixtures for the PKI tests: one root CA world per module."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.pki.helpers import CA, make_root, utcnow


@pytest.fixture(scope="module")
def now() -> datetime:
    """The real time at module start (openssl checks against the real clock)."""
    return utcnow()


@pytest.fixture(scope="module")
def root(now: datetime) -> CA:
    """A fresh P-256 root CA."""
    return make_root(now)
