"""Hypothesis strategies for atproto data: DIDs, TIDs, digests, DAG-CBOR values, records, repos.

Needs ``hypothesis`` (a test dependency). Example::

    @given(repos(max_records=50))
    def test_every_record_proves(repo_and_uris):
        repo, uris = repo_and_uris
        ...
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

from holdca.atproto.cid import CID
from holdca.testing.atproto import TestRepo, make_tid

__all__ = [
    "cids",
    "data_model_values",
    "manifest_digests",
    "manifest_records",
    "plc_dids",
    "repos",
    "tids",
    "web_dids",
]

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)


def plc_dids() -> st.SearchStrategy[str]:
    """Syntactically valid did:plc identifiers."""
    return st.text(alphabet=_B32, min_size=24, max_size=24).map(lambda s: "did:plc:" + s)


def web_dids() -> st.SearchStrategy[str]:
    """Syntactically valid atproto did:web identifiers (hostname only, allowed TLDs)."""
    return st.lists(_LABEL, min_size=1, max_size=3).map(
        lambda labels: "did:web:" + ".".join([*labels, "com"])
    )


def tids() -> st.SearchStrategy[str]:
    """Valid TIDs (record keys / revisions)."""
    return st.builds(make_tid, st.integers(0, (1 << 53) - 1), st.integers(0, 1023))


def manifest_digests() -> st.SearchStrategy[str]:
    """``sha256:<64 lowercase hex>`` digests."""
    return st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


def cids() -> st.SearchStrategy[CID]:
    """dag-cbor and raw CIDs over random content."""
    return st.builds(
        lambda raw, data: CID.for_raw(data) if raw else CID.for_dag_cbor(data),
        st.booleans(),
        st.binary(max_size=16),
    )


def data_model_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Values of the atproto data model (no floats): null, bool, int64, str, bytes, CID,
    lists and string-keyed maps."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.text(max_size=20)
        | st.binary(max_size=20)
        | cids()
    )
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def manifest_records() -> st.SearchStrategy[dict[str, Any]]:
    """``io.atcr.manifest`` records satisfying the ATCR lexicon's required fields."""
    return st.fixed_dictionaries(
        {
            "$type": st.just("io.atcr.manifest"),
            "repository": st.from_regex(r"[a-z0-9]{1,12}(/[a-z0-9]{1,12})?", fullmatch=True),
            "digest": manifest_digests(),
            "mediaType": st.sampled_from(
                [
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json",
                ]
            ),
            "schemaVersion": st.just(2),
            "createdAt": st.just("2026-01-01T00:00:00.000Z"),
        },
        optional={"holdDid": web_dids(), "annotations": st.dictionaries(_LABEL, _LABEL)},
    )


@st.composite
def repos(
    draw: st.DrawFn, min_records: int = 1, max_records: int = 50
) -> tuple[TestRepo, list[str]]:
    """A signed :class:`TestRepo` (random method and curve) and the URIs of its manifests.

    The record count is drawn from ``min_records..max_records``; record contents and TID keys
    come from a PRNG seeded by hypothesis so that large repos stay cheap to generate.
    """
    repo = TestRepo.create(
        method=draw(st.sampled_from(["plc", "web"])), curve=draw(st.sampled_from(["k256", "p256"]))
    )
    count = draw(st.integers(min_records, max_records))
    rng = random.Random(draw(st.integers(0, 2**64 - 1)))  # noqa: S311 - test data, not secrets
    rkeys: set[str] = set()
    while len(rkeys) < count:
        rkeys.add(make_tid(rng.getrandbits(53), rng.getrandbits(10)))
    uris = [
        repo.put_manifest(
            "sha256:" + rng.randbytes(32).hex(),
            repository=f"r{rng.randrange(100)}/app",
            rkey=rkey,
        )
        for rkey in sorted(rkeys, key=lambda _: rng.random())
    ]
    return repo, uris
