"""The operating guide's "From start to finish" block, run verbatim with bash (issue 17):
init with an intermediate, the root key offline, serve, trust add and pin, issue, rotate
beside the running server, retire, revoke; openssl and notation's files as oracles."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.tools import require_tool

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operating.md"


def _block() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## From start to finish") :]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found is not None, "the guide lost its start-to-finish block"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_start_to_finish_block_runs_as_written(tmp_path: Path) -> None:
    for tool in ("openssl", "curl", "python3"):
        require_tool(tool)
    script = tmp_path / "guide.sh"
    script.write_text(_block(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp_path),
        PORT=str(_free_port()),
    )
    # its own process group: a failure or a timeout must not leave the block's background
    # `holdca serve` running
    with subprocess.Popen(
        ["bash", "-euo", "pipefail", str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    # the running server followed the rotation made by another process
    assert re.search(r"issuer=.*CN ?= ?ATCR Hold Issuing CA G\d", out), out
    # openssl asked the running server: the earlier leaf is revoked, the answer verifies
    assert "Cert Status: revoked" in out, out
    assert "Response verify OK" in out, out
    # the relying party's notation config: the hold's root, and a statement for one DID
    stores = list((tmp_path / "notation" / "truststore" / "x509" / "ca" / "hold").glob("*.crt"))
    assert len(stores) == 1
    assert stores[0].read_bytes() == (tmp_path / "hold" / "ca.crt").read_bytes()
    policy = json.loads((tmp_path / "notation" / "trustpolicy.json").read_text())
    [statement] = policy["trustPolicies"]
    assert statement["registryScopes"] == ["atcr.io/alice/app"]
    assert statement["trustedIdentities"] == [
        "x509.subject: C=US, ST=CA, O=Example Hold, CN=did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    ]
    # the root key ended offline, and the root CRL was re-signed by it
    assert not (tmp_path / "hold" / "keys" / "hold-root.pem").exists()
    crl = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "root.crl"),
         "-CAfile", str(tmp_path / "hold" / "ca.crt"), "-noout"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "verify OK" in crl.stdout + crl.stderr
