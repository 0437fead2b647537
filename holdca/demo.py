"""The demo behind ``holdca demo`` (and ``make demo``): a hold CA end to end, in a temp dir.

On embedded defaults (PEM key store, SQLite ledger, a temporary directory) it:

1. creates a hold CA and serves its CRL and OCSP on 127.0.0.1 (stdlib HTTP server);
2. builds a user's signed ATProto repo with an ``io.atcr.manifest`` record for an image
   in an OCI layout (:class:`holdca.testing.atproto.TestRepo`), served by an in-process
   stand-in for the PLC directory and the PDS (:class:`holdca.testing.network.TestNetwork`;
   a real hold uses :class:`holdca.atproto.resolve.HTTPResolver`);
3. shows the trust gate refusing an attacker's repo signed for the user's DID with the
   attacker's own key;
4. co-signs the image (the hold resolves the DID and fetches the proof itself) and
   attaches the Notation signature to the layout;
5. verifies it with holdca's verifier (revocation from the hold's CRL) and, when the
   notation CLI is installed, with ``notation verify --oci-layout``;
6. revokes the certificate (keyCompromise), shows both verifications fail and that the
   DID is now denied new certificates.

Each step prints one or two lines. :func:`find_notation` and :func:`notation_verify` are
reused by the CLI tests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from holdca.errors import (
    DeniedDIDError,
    HoldCAError,
    MalformedInputError,
    OCSPRequestError,
    SignatureInvalidError,
)
from holdca.hold.audit import AuditLog
from holdca.hold.ledger import SQLiteLedger
from holdca.hold.service import CosignRequest, HoldCA
from holdca.keys.pem import PEMKeyStore
from holdca.notation.oci import OCILayout
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import TrustStore, write_trust_policy, write_trust_store
from holdca.notation.verify import RevocationStatus, verify_envelope
from holdca.pki import SubjectInfo, decode_ocsp_get
from holdca.testing.atproto import TestRepo
from holdca.testing.network import TestNetwork
from holdca.testing.oci import build_test_image

__all__ = ["find_notation", "notation_verify", "revocation_server", "run_demo", "summarize"]

DEMO_HOLD_DID = "did:web:hold.demo.example.com"
DEMO_SCOPE = "local/holdca-demo"


def find_notation() -> str | None:
    """The notation CLI: ``$HOLDCA_NOTATION``, ``notation`` on PATH, or ``~/go/bin/notation``."""
    env = os.environ.get("HOLDCA_NOTATION")
    if env and Path(env).is_file():
        return env
    found = shutil.which("notation")
    if found:
        return found
    go_bin = Path.home() / "go" / "bin" / "notation"
    return str(go_bin) if go_bin.is_file() else None


def notation_verify(
    notation: str, config_dir: Path, layout: Path, digest: str, *, scope: str = DEMO_SCOPE
) -> tuple[bool, str]:
    """Run ``notation verify --oci-layout <layout>@<digest> --scope <scope>``.

    Uses ``config_dir`` as ``NOTATION_CONFIG`` and a fresh ``NOTATION_CACHE`` (notation
    caches CRLs until their nextUpdate). Returns ``(succeeded, combined output)``.
    """
    with tempfile.TemporaryDirectory(prefix="holdca-notation-cache-") as cache:
        env = {
            **os.environ,
            "NOTATION_CONFIG": str(config_dir),
            "NOTATION_CACHE": cache,
            "NOTATION_EXPERIMENTAL": "1",
        }
        proc = subprocess.run(
            [notation, "verify", "-v", "--oci-layout", f"{layout}@{digest}", "--scope", scope],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


class _Handler(BaseHTTPRequestHandler):
    ca: HoldCA
    """The hold whose CRL and OCSP this handler serves (set on a per-server subclass)."""

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log."""

    def _send(self, body: bytes, media_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """Serve ``/ca.crt``, ``/ca.crl`` and ``/ocsp/<base64>``."""
        now = datetime.now(UTC)
        path, _, query = self.path.partition("?")
        if path == "/ca.crl":  # ?ca=<16 hex>: the CRL of that CA (what certificates name)
            key = parse_qs(query).get("ca", [""])[0]
            named = self.ca.state(now).by_key(key) if key else self.ca.state(now).active
            if named is None:
                self._send(b"not found\n", "text/plain", 404)
                return
            period = parse_qs(query).get("p", [None])[0]  # the leaf's partition, if named
            try:
                der = self.ca.crl_der(now, ca_id=named.ca_id, period=period)
            except MalformedInputError:
                self._send(b"bad CRL period\n", "text/plain", 400)
                return
            self._send(der, "application/pkix-crl")
        elif self.path == "/ca.crt":
            pem = self.ca.root_certificate.public_bytes(serialization.Encoding.PEM)
            self._send(pem, "application/x-pem-file")
        elif self.path.startswith("/ocsp/"):
            try:
                der = decode_ocsp_get(self.path[len("/ocsp/") :])
            except OCSPRequestError:
                der = b""
            self._send(self.ca.ocsp(der, now=now), "application/ocsp-response")
        else:
            self._send(b"not found\n", "text/plain", 404)

    def do_POST(self) -> None:
        """Serve ``POST /ocsp``."""
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/ocsp" or length > 65536:
            self._send(b"not found\n", "text/plain", 404)
            return
        body = self.rfile.read(length)
        self._send(self.ca.ocsp(body, now=datetime.now(UTC)), "application/ocsp-response")


@contextmanager
def revocation_server() -> Iterator[tuple[str, Callable[[HoldCA], None]]]:
    """Serve a HoldCA's CRL and OCSP on ``127.0.0.1`` (an ephemeral port), in a thread.

    Yields ``(base_url, attach)``: the URL is known before the hold exists (it goes into
    the hold's certificates); call ``attach(ca)`` once the hold is open.
    """

    class handler(_Handler):  # noqa: N801 - one subclass per server, carries its HoldCA
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="holdca-demo-http", daemon=True)

    def attach(ca: HoldCA) -> None:
        handler.ca = ca

    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", attach
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _revocation_from_crl(crl: x509.CertificateRevocationList) -> object:
    def check(cert: x509.Certificate, issuer: x509.Certificate) -> RevocationStatus:
        if cert.issuer == cert.subject:
            return RevocationStatus.NON_REVOCABLE
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return RevocationStatus.UNKNOWN
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return RevocationStatus.REVOKED
        return RevocationStatus.GOOD

    return check


def run_demo(
    out: TextIO,
    *,
    notation: str | bool | None = True,
    workdir: Path | None = None,
) -> int:
    """Run the demo, printing each step to ``out``.

    Args:
        out: where to print.
        notation: ``True`` finds the notation CLI (:func:`find_notation`), a path uses
            that binary, ``False``/``None`` skips the notation steps.
        workdir: keep the files here instead of a temporary directory.

    Returns:
        0 when every step behaved as expected (valid before revocation, rejected after),
        1 otherwise.
    """
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return _demo(out, workdir, notation)
    with tempfile.TemporaryDirectory(prefix="holdca-demo-") as tmp:
        return _demo(out, Path(tmp), notation)


def _demo(out: TextIO, root: Path, notation: str | bool | None) -> int:
    notation_bin = find_notation() if notation is True else (notation or None)
    ok = True

    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    say(f"holdca demo, working in {root}")
    subject = SubjectInfo(country="US", state="CA", organization="holdca demo hold")
    with revocation_server() as (base_url, attach):
        now = datetime.now(UTC)
        store = PEMKeyStore(root / "keys")
        ledger = SQLiteLedger(root / "ledger.sqlite3")
        network = TestNetwork()
        audit_path = root / "audit.jsonl"
        audit_logger = logging.getLogger(f"holdca.audit.demo.{id(root):x}")
        audit_logger.propagate = False
        audit_logger.setLevel(logging.INFO)
        audit_handler = logging.FileHandler(audit_path, encoding="utf-8")
        audit_handler.setFormatter(logging.Formatter("%(message)s"))
        audit_logger.addHandler(audit_handler)
        try:
            ca = HoldCA.open(
                store,
                ledger,
                hold_did=DEMO_HOLD_DID,
                subject=subject,
                now=now,
                create=True,
                crl_url=f"{base_url}/ca.crl",
                ocsp_url=f"{base_url}/ocsp",
                crl_next_update=timedelta(minutes=5),
                resolver=network,
                audit=AuditLog(audit_logger),
            )
            attach(ca)
            fingerprint = ca.ca_id
            say(
                f"1. hold CA created for {DEMO_HOLD_DID}: key in {root / 'keys'}, "
                f"SHA-256 {fingerprint[:16]}...; CRL and OCSP served at {base_url}"
            )

            repo = network.add(TestRepo.create(method="plc", curve="k256", now=now))
            layout = OCILayout.create(root / "layout")
            image = build_test_image(layout, tag="v1", content=b"hello from the holdca demo\n")
            uri = repo.put_manifest(image.digest, repository="alice/hello", hold_did=DEMO_HOLD_DID)
            say(
                f"2. user {repo.did} committed an io.atcr.manifest record for {image.digest[:19]}"
                f"... (rev {repo.rev}, K-256 signed) to their repo"
            )

            # an attacker signs a repo for the same DID with their own key, and sends it
            attacker = TestRepo.create(did=repo.did, now=now)
            forged_uri = attacker.put_manifest(image.digest, hold_did=DEMO_HOLD_DID)
            forged = CosignRequest(
                did=repo.did,
                descriptor=image,
                record_uri=forged_uri,
                proof_hint=attacker.get_record_car(forged_uri),
                caller=repo.did,
            )
            try:
                ca.cosign(forged, now=now)
                ok = False
                say("3. UNEXPECTED: a forged proof was co-signed")
            except SignatureInvalidError as exc:
                say(f"3. forged proof for {repo.did} refused: {exc}")

            # the files a hold operator could vouch for offline (kept with --keep)
            (root / "did.json").write_bytes(repo.did_document())
            (root / "record.car").write_bytes(repo.get_record_car(uri))
            (root / "record-uri.txt").write_text(uri + "\n", encoding="ascii")
            request = CosignRequest(did=repo.did, descriptor=image, record_uri=uri, caller=repo.did)
            resp = ca.cosign(request, now=now)
            layout.attach_signature(image, resp.envelope)
            say(
                f"4. co-signed: the hold resolved {repo.did} and fetched the proof itself; "
                f"leaf serial {resp.serial:x} (P-256, until "
                f"{resp.record.not_after:%Y-%m-%d %H:%M}Z) recorded in the ledger and the "
                f"signature attached to {root / 'layout'}"
            )

            policy = hold_trust_policy(store="holdca-demo")
            statement = policy.applicable(DEMO_SCOPE)
            trust = TrustStore({("ca", "holdca-demo"): [ca.root_certificate]})
            config_dir = root / "notation"
            write_trust_store(config_dir, "holdca-demo", [ca.root_certificate])
            write_trust_policy(config_dir, policy)

            def check(step: int, expect_valid: bool) -> None:
                nonlocal ok
                when = datetime.now(UTC)
                crl = ca.crl(when)
                try:
                    verify_envelope(
                        resp.envelope,
                        statement=statement,
                        trust_store=trust,
                        now=when,
                        descriptor=image,
                        revocation=_revocation_from_crl(crl),  # type: ignore[arg-type]
                    )
                    verdict, valid = "signature valid", True
                except HoldCAError as exc:
                    verdict, valid = f"REJECTED ({type(exc).__name__}: {exc})", False
                ok &= valid == expect_valid
                say(f"{step}. holdca verifier (strict, CRL #{_crl_number(crl)}): {verdict}")
                if notation_bin is None:
                    say(f"{step}. notation verify: skipped (notation CLI not found)")
                    return
                passed, output = notation_verify(
                    notation_bin, config_dir, layout.path, image.digest
                )
                ok &= passed == expect_valid
                verdict = "OK" if passed else "REJECTED"
                say(f"{step}. notation verify: {verdict} - {summarize(output)}")

            check(5, expect_valid=True)
            revoked = ca.revoke(serial=resp.serial, reason="keyCompromise", now=datetime.now(UTC))
            say(f"6. revoked serial {revoked[0].serial:x} (keyCompromise)")
            check(7, expect_valid=False)
            try:
                ca.cosign(request, now=datetime.now(UTC))
                ok = False
                say("8. UNEXPECTED: a denied DID was co-signed")
            except DeniedDIDError as exc:
                say(f"8. new certificates for the DID refused: {exc}")
        finally:
            ledger.close()
            audit_logger.removeHandler(audit_handler)
            audit_handler.close()
        events = [json.loads(line)["event"] for line in audit_path.read_text().splitlines()]
        say(
            f"9. audit trail: {len(events)} events in {audit_path} "
            f"({', '.join(f'{events.count(e)} {e}' for e in dict.fromkeys(events))})"
        )
    say("demo finished: " + ("every step behaved as expected" if ok else "UNEXPECTED RESULT"))
    return 0 if ok else 1


def summarize(notation_output: str) -> str:
    """The one line of ``notation verify -v`` output that says why (or that it passed)."""
    lines = notation_output.splitlines()
    for marker in ("Failure reason:", "Successfully verified", "revoked via OCSP", "Error:"):
        for line in lines:
            if marker in line:
                text = line.split("msg=", 1)[-1].strip().strip('"')
                text = text.split("Failure reason: ", 1)[-1]
                return text if len(text) <= 200 else text[:197] + "..."
    return lines[-1] if lines else ""


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
