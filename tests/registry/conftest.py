"""Fixtures for the registry tests: one hold and one registry of each kind per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hold.served import Served, serve_hold
from tests.registry.servers import Registry, distribution, referrers_registry


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """A hold served on 127.0.0.1 (its CRL and OCSP URLs are real)."""
    with serve_hold() as s:
        yield s


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """distribution v3.0.0 (no referrers API), no auth, deletes enabled."""
    with distribution(tmp_path_factory.mktemp("distribution")) as r:
        yield r


@pytest.fixture(scope="module")
def api_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """go-containerregistry's registry with the referrers API."""
    with referrers_registry(tmp_path_factory.mktemp("ggcr")) as r:
        yield r
