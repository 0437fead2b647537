"""Child process for the PKCS#11 tests: what could crash, or needs a fresh process.

Run as ``python tests/keys/p11_child.py MODE OUT`` with HOLDCA_P11_MODULE,
HOLDCA_P11_TOKEN, HOLDCA_P11_PIN and SOFTHSM2_CONF in the environment. Writes a JSON
result to OUT (never the PIN). A SIGSEGV shows up as the parent's test failure.

Modes:
  threads THREADS COUNT  THREADS threads sign COUNT messages each through one signer
  preloaded              python-pkcs11 loads the module first: holdca must serialise
  no-os-locking          PKCS11KeyStore(..., os_locking=False) then threads
  wrong-pin              a fresh process logs in with a wrong PIN
  lazy-import            import holdca.keys.pkcs11 does not import python-pkcs11
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import uuid
from typing import Any


def _store(**kwargs: Any) -> Any:
    from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415

    return PKCS11KeyStore(
        os.environ["HOLDCA_P11_MODULE"],
        os.environ["HOLDCA_P11_TOKEN"],
        os.environ["HOLDCA_P11_PIN"],
        **kwargs,
    )


def _threads(store: Any, threads: int, count: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    label = f"child-{uuid.uuid4().hex[:12]}"
    signer = store.generate(label)
    results: dict[int, list[tuple[str, str]]] = {n: [] for n in range(threads)}
    errors: list[str] = []
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        try:
            start.wait()
            out = results[n]
            for i in range(count):
                message = f"thread {n} message {i}".encode()
                out.append((message.hex(), signer.sign(message).hex()))
        except BaseException as exc:  # reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    public = signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    store.delete(label)
    return {
        "os_locking": store.os_locking,
        "errors": errors,
        "public_key": public,
        "signatures": [pair for n in range(threads) for pair in results[n]],
    }


def main(argv: list[str]) -> int:
    mode, out = argv[1], argv[-1]
    result: dict[str, Any]
    if mode == "threads":
        result = _threads(_store(), int(argv[2]), int(argv[3]))
    elif mode == "preloaded":
        import pkcs11  # noqa: PLC0415

        pkcs11.lib(os.path.realpath(os.environ["HOLDCA_P11_MODULE"]))
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("holdca").addHandler(handler)
        result = _threads(_store(), 4, 200)
        result["log"] = records
    elif mode == "no-os-locking":
        result = _threads(_store(os_locking=False), 4, 200)
    elif mode == "wrong-pin":
        from holdca.errors import PINIncorrectError  # noqa: PLC0415
        from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415

        try:
            PKCS11KeyStore(os.environ["HOLDCA_P11_MODULE"], os.environ["HOLDCA_P11_TOKEN"], "0" * 8)
        except PINIncorrectError as exc:
            result = {"error": type(exc).__name__, "message": str(exc)}
        else:
            result = {"error": None}
        result["then_right_pin_works"] = _store().labels() is not None
    elif mode == "lazy-import":
        import holdca.keys.pkcs11  # noqa: F401, PLC0415

        result = {"pkcs11_imported": "pkcs11" in sys.modules}
    else:
        raise SystemExit(f"unknown mode {mode}")
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
