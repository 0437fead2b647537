"""Fixtures of the key tests: one key store per backend, fresh labels."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from holdca.keys import KeyStore, MemoryKeyStore
from holdca.keys.pem import PEMKeyStore

BACKENDS = ["memory", "pem", pytest.param("pkcs11", marks=pytest.mark.hsm)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    """A key store of each backend (pkcs11: a store on the session's SoftHSM token)."""
    if request.param == "memory":
        return MemoryKeyStore()
    if request.param == "pem":
        return PEMKeyStore(tmp_path_factory.mktemp("pem") / "keys")
    return request.getfixturevalue("softhsm").keystore()  # type: ignore[no-any-return]


@pytest.fixture
def fresh(store: KeyStore) -> Iterator[Callable[[], str]]:
    """A factory of unused labels; keys under them are deleted after the test.

    The SoftHSM token is shared by all tests of a process, hence unique labels.
    """
    made: list[str] = []

    def new() -> str:
        label = f"t-{uuid.uuid4().hex[:16]}"
        made.append(label)
        return label

    yield new
    existing = set(store.labels())
    for label in made:
        if label in existing:
            store.delete(label)
