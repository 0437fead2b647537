"""The everyday command line (issue 17): --version, help that states defaults, --json on
every command that prints data, one serial form, ``holdca certs``, quiet broken pipes,
clear ``serve`` address errors, the audit trail kept out of stderr, ``crl --out -``.

Oracles: pyproject.toml and the installed metadata (version), holdca.server's own defaults
(help), openssl (serials, CRLs, OCSP), the certificate files and OCI layout (certs), the
filesystem (audit file and its mode), real subprocess pipes (broken pipe).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from holdca.cli import main, parser
from holdca.errors import ConfigError
from holdca.notation.oci import OCILayout
from holdca.testing.atproto import TestRepo
from holdca.testing.oci import build_test_image
from tests.cli_helpers import clean_environment, run, run_json
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
HOLD_DID = "did:web:hold.everyday-test.example.com"
HOLD = ["--did", HOLD_DID, "--country", "US", "--state", "CA", "--org", "Everyday Hold"]
ALICE, BOB = "did:web:alice.example.com", "did:web:bob.example.com"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clean_environment(monkeypatch)


def holdca(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HOLD")}
    return subprocess.run(
        [sys.executable, "-m", "holdca", *argv],
        capture_output=True,
        env={**base, **(env or {})},
        check=False,
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    h = tmp_path / "hold"
    assert run_json(capsys, "init", "--home", str(h), *HOLD)["created"] is True
    return h


def public_key(tmp_path: Path, name: str = "pub.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def issue(home: Path, tmp_path: Path, did: str, name: str) -> x509.Certificate:
    """Issue a leaf with the CLI; the certificate as read back from the chain file."""
    chain = tmp_path / f"{name}.pem"
    argv = ["issue", "--home", str(home), "--did", did, "--public-key", str(public_key(tmp_path))]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main([*argv, "--out", str(chain)])
    assert code == 0, out.getvalue()
    return x509.load_pem_x509_certificates(chain.read_bytes())[0]


def openssl_serial(cert_file: Path) -> str:
    """The serial as openssl prints it (upper-case hex, possibly a leading zero)."""
    out = subprocess.run(
        [require_tool("openssl"), "x509", "-in", str(cert_file), "-noout", "-serial"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip().split("=", 1)[1]


def help_entries(text: str) -> dict[str, str]:
    """Each option of an argparse help text -> its description (wrapped lines joined)."""
    entries: dict[str, str] = {}
    names: list[str] = []
    for line in text.splitlines():
        if re.match(r"^  -\S", line):
            spec, _, description = line.strip().partition("  ")
            names = [n.split(" ")[0] for n in spec.split(", ")]
            for name in names:
                entries[name] = description.strip()
        elif names and line.startswith("    "):
            for name in names:
                entries[name] = (entries[name] + " " + line.strip()).strip()
        else:
            names = []
    return entries


def commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser, with its name (``trust list``)."""

    def walk(
        p: argparse.ArgumentParser, prefix: str
    ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        for action in p._actions:  # argparse keeps subcommands only there
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{prefix} {name}".strip())
        if prefix:
            yield prefix, p

    yield from walk(parser(), "")


# ------------------------------------------------------------------ 1. --version


def test_version_is_the_installed_distribution_s(capsys: pytest.CaptureFixture[str]) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert importlib.metadata.version("holdca") == declared
    code, out, err = run(capsys, "--version")
    assert (code, out, err) == (0, f"holdca {declared}\n", "")
    proc = holdca("--version")
    assert (proc.returncode, proc.stdout.decode()) == (0, f"holdca {declared}\n")


# ------------------------------------------------------------------ 2. help


def test_serve_help_describes_every_option_with_the_server_s_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = pytest.importorskip("holdca.server")
    limits_module = pytest.importorskip("holdca.server.limits")
    limits = server.ServerLimits()
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    entries = help_entries(out)
    assert {"--host", "--port", "--max-body", "--insecure-no-auth"} <= set(entries)
    for option, description in entries.items():
        if option not in ("-h", "--help", "--home"):
            assert "default" in description, (option, description)
    expected = {
        "--host": "127.0.0.1",
        "--port": "8080",
        "--max-body": f"{server.DEFAULT_MAX_BODY // 1024} KiB",
        "--max-connections": str(limits.max_connections),
        "--header-timeout": f"{limits.header_timeout:g} seconds",
        "--body-timeout": f"{limits_module.DEFAULT_BODY_TIMEOUT:g} seconds",
    }
    for option, value in expected.items():
        assert value in entries[option], (option, entries[option])
    args = parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)


def test_every_option_of_every_command_is_described_with_its_default() -> None:
    missing = []
    for name, p in commands():
        entries = help_entries(p.format_help())
        for action in p._actions:
            if not action.option_strings or isinstance(action, argparse._SubParsersAction):
                continue
            option = action.option_strings[-1]
            description = entries[option]
            if not description:
                missing.append((name, option))
                continue
            default = action.default
            if default in (None, False, argparse.SUPPRESS) or action.dest == "help":
                continue
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert shown in description, (name, option, description)
    assert not missing, missing


# ------------------------------------------------------------------ 3. --json everywhere


def _user_files(tmp_path: Path) -> tuple[TestRepo, Path, str, Path, Path]:
    repo = TestRepo.create(method="plc", curve="k256")
    layout_dir = tmp_path / "layout"
    image = build_test_image(OCILayout.create(layout_dir), tag="v1", content=b"everyday\n")
    uri = repo.put_manifest(image.digest, repository="alice/everyday", hold_did=HOLD_DID)
    car, doc = tmp_path / "record.car", tmp_path / "did.json"
    car.write_bytes(repo.get_record_car(uri))
    doc.write_bytes(repo.did_document())
    return repo, layout_dir, uri, car, doc


def test_every_command_that_prints_data_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    openssl = require_tool("openssl")
    h = str(tmp_path / "hold")
    at = ["--home", h]
    outputs: dict[str, dict[str, object]] = {}
    outputs["init"] = run_json(capsys, "init", *at, *HOLD)
    root = tmp_path / "root-1.pem"  # rotate replaces ca.crt further down
    root.write_bytes((Path(h) / "ca.crt").read_bytes())
    # before any certificate: these two would otherwise resolve DIDs over the network
    outputs["sweep"] = run_json(capsys, "sweep", *at)
    outputs["recover"] = run_json(capsys, "recover", *at, "--compromised", "--dry-run")
    pub = public_key(tmp_path)
    outputs["issue"] = run_json(capsys, "issue", *at, "--did", ALICE, "--public-key", str(pub))
    chain = tmp_path / "chain.pem"
    chain.write_text(str(outputs["issue"]["chain"]))
    _, layout, uri, car, doc = _user_files(tmp_path)
    proof = ["--did-doc", str(doc), "--car", str(car), "--uri", uri, "--layout", str(layout)]
    outputs["cosign"] = run_json(capsys, "cosign", *at, *proof, "--image", "v1")
    outputs["resign"] = run_json(capsys, "resign", *at, *proof, "--image", "v1")
    serial = str(outputs["issue"]["serial"])
    outputs["ocsp --serial"] = run_json(capsys, "ocsp", *at, "--serial", serial)
    request, response = tmp_path / "req.der", tmp_path / "resp.der"
    subprocess.run(
        [openssl, "ocsp", "-issuer", str(root), "-cert", str(chain),
         "-no_nonce", "-reqout", str(request)],
        check=True, capture_output=True,
    )  # fmt: skip
    outputs["ocsp --request"] = run_json(
        capsys, "ocsp", *at, "--request", str(request), "--out", str(response)
    )
    outputs["revoke"] = run_json(capsys, "revoke", *at, "--serial", serial)
    outputs["crl"] = run_json(capsys, "crl", *at)
    outputs["crl --out"] = run_json(capsys, "crl", *at, "--out", str(tmp_path / "ca.crl"))
    outputs["deny"] = run_json(capsys, "deny", *at, BOB)
    outputs["denied"] = run_json(capsys, "denied", *at)
    outputs["allow"] = run_json(capsys, "allow", *at, BOB)
    outputs["certs"] = run_json(capsys, "certs", *at)
    outputs["rotate"] = run_json(capsys, "rotate", *at, "--new-label", "root-2")
    notation = str(tmp_path / "notation")
    outputs["trust export"] = run_json(capsys, "trust", "export", *at)
    outputs["trust install"] = run_json(
        capsys, "trust", "install", *at, "--notation-config", notation
    )
    outputs["trust list"] = run_json(capsys, "trust", "list", "--notation-config", notation)
    assert {name.split(" -")[0] for name in outputs} <= {name for name, _ in commands()}
    # the OCSP summary agrees with the response file and with openssl's reading of it
    summary = outputs["ocsp --request"]
    assert summary["bytes"] == response.stat().st_size
    assert summary["responses"] == [{"serial": serial, "status": "good"}]
    text = subprocess.run(
        [openssl, "ocsp", "-respin", str(response), "-issuer", str(root),
         "-cert", str(chain), "-CAfile", str(root), "-no_nonce"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert f"{chain}: good" in text.stdout, text.stdout + text.stderr


def test_every_command_but_serve_and_demo_takes_json() -> None:
    """serve and demo narrate on stderr / stdout; every other command prints data."""
    without = sorted(
        name
        for name, p in commands()
        if not any("--json" in a.option_strings for a in p._actions)
        and not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    )
    assert without == ["demo", "serve"]


def test_der_to_stdout_and_json_do_not_mix(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["crl", "--out", "-"], ["ocsp", "--request", "/dev/null", "--out", "-"]):
        code, out, err = run(capsys, *argv, "--home", str(home), "--json")
        assert (code, out) == (2, "")
        assert "--json" in err
        assert len(err.splitlines()) == 1


# ------------------------------------------------------------------ 4. serials


def test_serials_in_any_hex_form_are_echoed_in_one_form(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issue(home, tmp_path, ALICE, "alice")
    printed = openssl_serial(tmp_path / "alice.pem")  # upper case, maybe a leading 0
    canonical = printed.lower().lstrip("0")
    padded = printed if len(printed) % 2 == 0 else "0" + printed
    forms = [
        canonical,
        "0x" + printed,
        "0X" + printed.lower(),
        ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)),
        "00" + printed,
    ]
    at = ["--home", str(home)]
    for form in forms:
        assert run_json(capsys, "ocsp", *at, "--serial", form)["serial"] == canonical, form
        code, out, _ = run(capsys, "ocsp", *at, "--serial", form)
        assert (code, out) == (0, f"{canonical}: good\n")
    revoked = run_json(capsys, "revoke", *at, "--serial", forms[1])
    assert [r["serial"] for r in revoked["revoked"]] == [canonical]  # type: ignore[index,union-attr]
    certs = run_json(capsys, "certs", *at)
    assert [c["serial"] for c in certs["certificates"]] == [canonical]  # type: ignore[index,union-attr]
    status = run_json(capsys, "ocsp", *at, "--serial", forms[3])
    assert (status["serial"], status["status"]) == (canonical, "revoked")


@pytest.mark.parametrize(
    "bad", ["-1", "+1f", "1_0", "0x", "", "zz", "ab::cd", ":ab", "ab:", "1 2", "0x" + "f" * 41]
)
def test_a_serial_that_is_not_plain_hex_is_a_usage_error(
    bad: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "ocsp", "--home", str(home), "--serial", bad)
    assert (code, out) == (2, "")
    assert err.startswith("holdca ocsp: --serial:")
    assert len(err.splitlines()) == 1


# ------------------------------------------------------------------ 5. holdca certs


def test_certs_lists_the_ledger(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    openssl = require_tool("openssl")
    at = ["--home", str(home)]
    assert run(capsys, "certs", *at) == (0, "no certificates issued\n", "")
    first = issue(home, tmp_path, ALICE, "a1")
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    second = issue(home, tmp_path, BOB, "b1")
    third = issue(home, tmp_path, ALICE, "a2")
    assert main(["revoke", *at, "--serial", format(third.serial_number, "x")]) == 0
    capsys.readouterr()
    fingerprint = subprocess.run(
        [openssl, "x509", "-in", str(home / "ca.crt"), "-noout", "-fingerprint", "-sha256"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split("=", 1)[1].replace(":", "").lower()  # fmt: skip

    listed = run_json(capsys, "certs", *at)["certificates"]
    assert isinstance(listed, list)
    by_serial = {c["serial"]: c for c in listed}
    expected = [(first, ALICE, "a1"), (second, BOB, "b1"), (third, ALICE, "a2")]
    assert [c["serial"] for c in listed] == [
        openssl_serial(tmp_path / f"{name}.pem").lower().lstrip("0") for _, _, name in expected
    ]
    for cert, did, _ in expected:
        row = by_serial[format(cert.serial_number, "x")]
        assert row["did"] == did
        assert datetime.fromisoformat(row["notBefore"]) == cert.not_valid_before_utc
        assert datetime.fromisoformat(row["notAfter"]) == cert.not_valid_after_utc
        assert row["issuerId"] == fingerprint
        assert row["revoked"] is (cert is third)
        assert row["status"] == ("revoked" if cert is third else "live")

    def serials(*argv: str) -> list[str]:
        return [c["serial"] for c in run_json(capsys, "certs", *at, *argv)["certificates"]]  # type: ignore[union-attr]

    hexes = [format(c.serial_number, "x") for c in (first, second, third)]
    assert serials("--did", ALICE) == [hexes[0], hexes[2]]
    assert serials("--since", between.isoformat()) == hexes[1:]
    assert serials("--did", ALICE, "--since", between.isoformat()) == [hexes[2]]
    assert serials("--did", "did:web:nobody.example.com") == []
    out = run(capsys, "certs", *at)[1]
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == hexes
    assert "revoked" in lines[2]
    assert "revoked" not in lines[0]


def test_certs_shows_the_signed_image_digest(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, layout, uri, car, doc = _user_files(tmp_path)
    run_json(capsys, "cosign", "--home", str(home), "--did-doc", str(doc), "--car", str(car),
             "--uri", uri, "--layout", str(layout), "--image", "v1")  # fmt: skip
    index = json.loads((layout / "index.json").read_text())
    digest = next(
        m["digest"] for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"
    )  # fmt: skip
    (row,) = run_json(capsys, "certs", "--home", str(home))["certificates"]  # type: ignore[misc]
    assert (row["did"], row["manifestDigest"], row["kind"]) == (repo.did, digest, "cosign")


def test_certs_needs_a_ledger(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "ledger.sqlite3").unlink()
    code, _, err = run(capsys, "certs", "--home", str(home))
    assert code == 2
    assert "no ledger" in err
    assert not (home / "ledger.sqlite3").exists()  # listing creates nothing
    code, _, err = run(capsys, "certs", "--home", str(home), "--since", "yesterday")
    assert (code, len(err.splitlines())) == (2, 1)
    assert "--since" in err


# ------------------------------------------------------------------ 6. broken pipe


@pytest.mark.parametrize("argv", [["crl"], ["certs", "--json"], ["crl", "--out", "-"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(argv: list[str], home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLD")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "holdca", *argv, "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # before the command writes: its first write finds no reader
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert err == ""


# ------------------------------------------------------------------ 7. serve addresses


def test_serve_refuses_a_port_out_of_range(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for port in ("99999", "0", "-1"):
        code, out, err = run(capsys, "serve", "--home", str(home), "--port", port)
        assert (code, out) == (2, "")
        assert err == f"holdca serve: --port: must be 1 to 65535, got {port}\n"


def test_serve_on_a_port_in_use_is_one_line(home: Path) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = holdca("serve", "--home", str(home), "--host", "127.0.0.1", "--port", str(port))
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert err.splitlines() == [
        f"holdca serve: configuration error: cannot listen on 127.0.0.1:{port}: "
        "address already in use (is another server running?)"
    ]


def test_listen_socket_names_the_address() -> None:
    listen_socket = pytest.importorskip("holdca.server.run").listen_socket
    with listen_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        sock.listen()
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: address already in use"):
            listen_socket("127.0.0.1", port)
    with pytest.raises(ConfigError, match="port: must be 0 to 65535"):
        listen_socket("127.0.0.1", 65536)


# ------------------------------------------------------------------ 8. the audit trail


def test_cli_audit_goes_to_a_file_beside_the_ledger_not_stderr(home: Path, tmp_path: Path) -> None:
    leaf = issue(home, tmp_path, ALICE, "a1")
    serial = format(leaf.serial_number, "x")
    proc = holdca("revoke", "--home", str(home), "--serial", serial, "--reason", "keyCompromise")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout.decode() == f"revoked {serial} (keyCompromise)\n"
    audit = home / "audit.log"
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    pairs = [(e["event"], e.get("serial")) for e in events]
    assert pairs.index(("issued", serial)) < pairs.index(("revoked", serial))
    assert any(e["event"] == "denied" and e["did"] == ALICE for e in events)


def test_hold_audit_log_is_honoured_by_cli_commands(home: Path, tmp_path: Path) -> None:
    log = tmp_path / "elsewhere" / "trail.jsonl"
    log.parent.mkdir()
    proc = holdca("deny", "--home", str(home), BOB, env={"HOLD_AUDIT_LOG": str(log)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert [json.loads(line)["event"] for line in log.read_text().splitlines()] == ["denied"]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "denied" not in (home / "audit.log").read_text()
    proc = holdca("deny", "--home", str(home), BOB, env={"HOLD_AUDIT_LOG": str(tmp_path)})
    assert proc.returncode == 2  # a directory: cannot be appended to
    assert b"HOLD_AUDIT_LOG" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


# ------------------------------------------------------------------ 9. crl --out -


def test_crl_out_dash_writes_der_to_stdout(home: Path, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    proc = holdca("crl", "--home", str(home), "--out", "-")
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert not (Path.cwd() / "-").exists()
    crl = tmp_path / "stdout.crl"
    crl.write_bytes(proc.stdout)
    check = subprocess.run(
        [openssl, "crl", "-inform", "DER", "-in", str(crl), "-CAfile", str(home / "ca.crt"),
         "-noout"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "verify OK" in check.stdout + check.stderr
