"""Shared test configuration: hypothesis profiles, external-tool gates, the SoftHSM token."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from tests.tools import missing, require_softhsm

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "fuzz", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- SoftHSM: a throwaway token per test process (owned by the keys tests) -----------

if TYPE_CHECKING:
    from holdca.keys.pkcs11 import PKCS11KeyStore


@dataclass(frozen=True)
class SoftHSM:
    """A SoftHSM token initialised for this test process.

    ``SOFTHSM2_CONF`` points at a config under a temporary directory (its own
    ``directories.tokendir``, ``objectstore.backend = file``): nothing touches the
    machine's default token store. The PINs are random per run, so that the secrets
    tests can grep for them.
    """

    module: str
    util: str
    conf: Path
    token_label: str
    pin: str = field(repr=False)
    so_pin: str = field(repr=False)

    def keystore(self, **kwargs: Any) -> PKCS11KeyStore:
        """A PKCS11KeyStore on the token (stores share the process's login)."""
        from holdca.keys.pkcs11 import PKCS11KeyStore  # noqa: PLC0415

        return PKCS11KeyStore(self.module, self.token_label, self.pin, **kwargs)

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ for a subprocess that uses this token."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf), **extra}


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    """A fresh SoftHSM token (session scope; one per xdist worker, each its own process).

    Skips on a laptop without SoftHSM, fails under CI=true (tests/tools.py).
    """
    module, util = require_softhsm()
    try:
        import pkcs11  # noqa: PLC0415
    except ImportError:
        missing("python-pkcs11 (pip install -e '.[pkcs11]')")
        raise

    if getattr(pkcs11, "_loaded", {}):  # SoftHSM reads SOFTHSM2_CONF in C_Initialize
        pytest.fail("a PKCS#11 module was loaded before the softhsm fixture set SOFTHSM2_CONF")
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir(mode=0o700)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    hsm = SoftHSM(
        module=module,
        util=util,
        conf=conf,
        token_label=f"holdca-{worker}",
        pin=secrets.token_hex(6),
        so_pin=secrets.token_hex(6),
    )
    init = [util, "--init-token", "--free", "--label", hsm.token_label]
    done = subprocess.run(
        [*init, "--so-pin", hsm.so_pin, "--pin", hsm.pin],
        env=hsm.env(),
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # not CalledProcessError: its message would show the PINs
        pytest.fail(f"{' '.join(init)} failed ({done.returncode}): {done.stderr.strip()}")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        yield hsm
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


# --- PostgreSQL: a throwaway server per test process (the ledger tests) ---------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server on a unix socket in a temporary directory (tests/postgres.py),
    one per xdist worker; stopped and removed at the end of the session.

    Skips without PostgreSQL or psycopg, fails under CI=true.
    """
    from tests.postgres import PostgresServer  # noqa: PLC0415

    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        missing("psycopg (pip install -e '.[postgres]')")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    server = PostgresServer(port=55432 + (int(worker) if worker.isdigit() else 0))
    try:
        yield server
    finally:
        server.stop()
