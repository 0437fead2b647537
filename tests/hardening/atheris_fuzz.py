"""Coverage-guided fuzzing of holdca's parsers with atheris (libFuzzer), one target per run.

Usage (from the repository root; needs ``pip install -e '.[fuzz]'``)::

    python -m tests.hardening.atheris_fuzz TARGET [SECONDS]
    python -m tests.hardening.atheris_fuzz --list

The oracle is the one of the hypothesis fuzz tests (tests/hardening/test_fuzz_parsers.py):
an input parses or raises a :class:`~holdca.errors.HoldCAError`; any other exception is a
crash, and libFuzzer's ``-timeout`` (20 s per input) and ``-rss_limit_mb`` (2 GiB) catch
hangs and memory blow-ups. The corpus starts from valid samples made by holdca. holdca is
instrumented for coverage. Inputs tried are written to ``$HOLDCA_TALLY_DIR`` (as
``atheris.<target>`` counters) every 256 inputs, for scripts/reliability.py.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["holdca"]):
    from holdca.atproto import dagcbor
    from holdca.atproto.car import read_car
    from holdca.atproto.cid import CID
    from holdca.atproto.diddoc import parse_did_document
    from holdca.atproto.didkey import parse_did_key
    from holdca.atproto.mst import lookup
    from holdca.atproto.verify import verify_record_proof
    from holdca.errors import HoldCAError
    from holdca.notation import parse_envelope, validate_trust_policy
    from holdca.pki import CertStatus, parse_ocsp_get, parse_ocsp_request, respond_ocsp

from tests.hardening import test_fuzz_parsers as seeds

__all__ = ["TARGETS", "main"]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _record_proof(data: bytes) -> Any:
    _, uri, digest, _, doc = seeds.repo_seed()
    return verify_record_proof(data, doc, uri, digest)


def _mst(data: bytes) -> Any:
    cid = CID.for_dag_cbor(data)
    return lookup({cid: data}, cid, b"io.atcr.manifest/3kabc")


def _did_document(data: bytes) -> Any:
    doc = parse_did_document(data, seeds.repo_seed()[0].did)
    return doc.atproto_key(), doc.pds_endpoint


def _ocsp_respond(data: bytes) -> Any:
    signer, root = seeds.ca()
    out = respond_ocsp(
        data, status_of=lambda _: CertStatus.good(), issuer_cert=root, signer=signer, now=seeds.NOW
    )
    if not out:
        raise AssertionError("respond_ocsp returned no response")
    return out


TARGETS: dict[str, tuple[Callable[[bytes], Any], Callable[[], list[bytes]]]] = {
    "jws_envelope": (parse_envelope, lambda: [seeds.envelope_seed()[0]]),
    "trust_policy": (validate_trust_policy, lambda: [seeds.TRUST_POLICY_SEED]),
    "car": (read_car, lambda: [seeds.repo_seed()[3]]),
    "dag_cbor": (dagcbor.decode, lambda: seeds.blocks_seed()["commit"]),
    "mst_node": (_mst, lambda: seeds.blocks_seed()["other"][:8]),
    "record_proof": (_record_proof, lambda: [seeds.repo_seed()[3]]),
    "did_document": (_did_document, lambda: [seeds.repo_seed()[4]]),
    "did_key": (lambda d: parse_did_key(_text(d)),
                lambda: [seeds.repo_seed()[0].public_key.did_key.encode()]),
    "ocsp_request": (parse_ocsp_request, lambda: [seeds.ocsp_seed()]),
    "ocsp_respond": (_ocsp_respond, lambda: [seeds.ocsp_seed()]),
    "ocsp_get": (lambda d: parse_ocsp_get(_text(d)),
                 lambda: [base64.b64encode(seeds.ocsp_seed())]),
}  # fmt: skip


def main(argv: list[str]) -> int:
    """Fuzz one target for ``SECONDS`` (default 30)."""
    if not argv or argv[0] == "--list":
        print("\n".join(TARGETS))
        return 0
    name = argv[0]
    seconds = int(argv[1]) if len(argv) > 1 else 30
    parse, make_seeds = TARGETS[name]
    tally: Counter[str] = Counter()
    tally_dir = os.environ.get("HOLDCA_TALLY_DIR")
    out = Path(tally_dir) / f"tally-atheris-{name}-{os.getpid()}.json" if tally_dir else None

    def flush() -> None:
        if out is not None:
            out.write_text(json.dumps(dict(tally)))

    def one(data: bytes) -> None:
        tally[f"atheris.{name}"] += 1
        try:
            parse(data)
        except HoldCAError as exc:
            tally[f"atheris.{name}.refused"] += 1
            if not str(exc):
                raise AssertionError(f"{type(exc).__name__} without a message") from exc
        if tally[f"atheris.{name}"] % 256 == 0:
            flush()

    corpus = Path(tempfile.mkdtemp(prefix=f"holdca-atheris-{name}-"))  # crashes are kept here
    for i, seed in enumerate(make_seeds()):
        (corpus / f"seed-{i}").write_bytes(seed)
    args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={seconds}",
        "-timeout=20",
        "-rss_limit_mb=2048",
        "-max_len=16384",
        "-print_final_stats=1",
        f"-artifact_prefix={corpus}/",
    ]
    started = time.monotonic()
    atheris.Setup(args, one)
    try:
        atheris.Fuzz()
    finally:  # libFuzzer usually exits the process itself; counters are flushed as we go
        flush()
        print(f"{name}: {tally[f'atheris.{name}']} inputs in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
