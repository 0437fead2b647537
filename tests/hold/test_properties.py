"""Property: after any sequence of cosigns and revocations, CRL, OCSP and ledger agree."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hold.conftest import NOW, make_world

OPS = st.lists(
    st.one_of(
        st.just(("cosign", 0)),
        st.tuples(st.just("revoke"), st.integers(min_value=0, max_value=20)),
        st.just(("crl", 0)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15)
@given(ops=OPS)
def test_crl_ocsp_and_ledger_agree(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = make_world(Path(tmp))
        issued: list[x509.Certificate] = []
        revoked: set[int] = set()
        numbers: list[int] = []
        now = NOW
        for op, arg in ops:
            now += timedelta(seconds=1)
            if op == "cosign":
                issued.append(w.ca.cosign(w.request(), now=now).certificate)
            elif op == "revoke" and issued:
                serial = issued[arg % len(issued)].serial_number
                w.ca.revoke(serial=serial, now=now)
                revoked.add(serial)
            else:
                crl = w.ca.crl(now)
                numbers.append(
                    crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                )
        crl = w.ca.crl(now)
        assert {r.serial_number for r in crl} == revoked
        assert crl.is_signature_valid(w.ca.certificate.public_key())  # type: ignore[arg-type]
        assert numbers == sorted(numbers)
        assert w.ledger.count() == len(issued) == len({c.serial_number for c in issued})
        for cert in issued:
            req = ocsp.OCSPRequestBuilder().add_certificate(cert, w.ca.certificate, hashes.SHA1())
            der = w.ca.ocsp(req.build().public_bytes(serialization.Encoding.DER), now=now)
            status = ocsp.load_der_ocsp_response(der).certificate_status
            expected = (
                ocsp.OCSPCertStatus.REVOKED
                if cert.serial_number in revoked
                else ocsp.OCSPCertStatus.GOOD
            )
            assert status == expected
