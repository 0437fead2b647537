"""An in-process ATProto "network" of :class:`~holdca.testing.atproto.TestRepo` objects.

:class:`TestNetwork` implements the :class:`~holdca.atproto.identity.Resolver` Protocol
over repos held in memory: ``resolve`` returns the identity a repo's DID document states,
``get_record`` the repo's current getRecord CAR, ``get_latest_commit`` its current commit.
It stands in for the PLC directory and the PDS in unit tests, benchmarks and the demo; the
real reference implementation runs in holdca's integration tests.

Like a real resolver it caches identities until asked for a fresh one, so a test can rotate
a repo's key and watch the hold re-resolve. Every call is recorded in :attr:`calls`.

Example::

    repo = TestRepo.create()
    net = TestNetwork([repo])
    ca = HoldCA.open(..., resolver=net)

Not for production: nothing here is fetched or verified against any outside party.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from holdca.atproto.identity import Identity, LatestCommit
from holdca.atproto.syntax import mst_key
from holdca.errors import DIDDeactivatedError, ResolutionError
from holdca.testing.atproto import TestRepo

__all__ = ["TestNetwork"]


class TestNetwork:
    """A :class:`~holdca.atproto.identity.Resolver` over in-memory repos (see the module).

    Attributes:
        calls: ``(method, did)`` of every call, in order (``resolve``, ``resolve-fresh``,
            ``get_record``, ``get_latest_commit``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, repos: Iterable[TestRepo] = ()) -> None:
        """A network serving ``repos``."""
        self._lock = threading.Lock()
        self._repos: dict[str, TestRepo] = {}
        self._cache: dict[str, Identity] = {}
        self._deactivated: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        for repo in repos:
            self.add(repo)

    def add(self, repo: TestRepo) -> TestRepo:
        """Serve ``repo`` (replacing any repo with its DID); returns it."""
        with self._lock:
            self._repos[repo.did] = repo
            self._cache.pop(repo.did, None)
            self._deactivated.discard(repo.did)
        return repo

    def deactivate(self, did: str) -> None:
        """Make ``did`` resolve as deactivated (a PLC tombstone, a did:web document gone)."""
        with self._lock:
            self._deactivated.add(did)
            self._cache.pop(did, None)

    def _repo(self, did: str) -> TestRepo:
        repo = self._repos.get(did)
        if repo is None:
            raise ResolutionError(f"{did} is not registered on this test network")
        return repo

    def resolve(self, did: str, *, fresh: bool = False) -> Identity:
        """The identity ``did``'s repo states (cached until ``fresh``).

        Raises:
            ResolutionError: no repo with that DID.
            DIDDeactivatedError: :meth:`deactivate` was called for it.
            DIDDocumentError: the repo's document has no usable key.
        """
        with self._lock:
            self.calls.append(("resolve-fresh" if fresh else "resolve", did))
            if did in self._deactivated:
                raise DIDDeactivatedError(f"{did} is deactivated")
            cached = None if fresh else self._cache.get(did)
            if cached is not None:
                return cached
            repo = self._repo(did)
            identity = Identity.from_document(repo.did_document(), did, source="test")
            self._cache[did] = identity
            return identity

    def get_record(self, identity: Identity, collection: str, rkey: str) -> bytes:
        """The current getRecord CAR of the record (a proof of absence when it is gone)."""
        with self._lock:
            self.calls.append(("get_record", identity.did))
            repo = self._repo(identity.did)
        mst_key(collection, rkey)  # the same syntax checks a PDS makes
        return repo.get_record_car(f"at://{identity.did}/{collection}/{rkey}")

    def get_latest_commit(self, identity: Identity) -> LatestCommit:
        """The repo's current commit."""
        with self._lock:
            self.calls.append(("get_latest_commit", identity.did))
            repo = self._repo(identity.did)
        return LatestCommit(str(repo.commit_cid), repo.rev)

    def __repr__(self) -> str:
        return f"<TestNetwork {len(self._repos)} repos>"
