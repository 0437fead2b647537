"""A throwaway TLS PKI for tests and benchmarks: a CA and server certificates for made-up names.

Example::

    pki = TestPKI()
    server_ctx = pki.server_context("pds.test.example")   # for a local TLS listener
    fetcher = Fetcher(policy, verify=pki.client_context())  # trusts only this CA

Keys are P-256 and live in memory; :meth:`TestPKI.server_files` writes a server's key (mode
0600) and certificate where a child process needs files. Never use this outside tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["TestPKI"]


class TestPKI:
    """A self-signed CA (valid for ``hours``) that issues TLS server certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, name: str = "holdca test CA", hours: float = 2.0) -> None:
        """Create the CA key and certificate."""
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._hours = hours
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=hours))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only (and checks host names)."""
        pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()
        return ssl.create_default_context(cadata=pem)

    def server_files(
        self, directory: Path, *names: str, ips: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """Write a new server certificate for ``names`` and ``ips`` (subjectAltName) and
        its key into ``directory``: ``(cert.pem, key.pem)``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=self._hours))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cert_path, key_path

    def server_context(self, *names: str, ips: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A server context with a new certificate for ``names`` and ``ips``."""
        with tempfile.TemporaryDirectory() as directory:
            cert, key = self.server_files(Path(directory), *names, ips=ips)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        return context

    def __repr__(self) -> str:
        return f"<TestPKI {self.certificate.subject.rfc4514_string()}>"
