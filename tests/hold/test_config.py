"""HoldConfig: keyword and environment construction, validation naming the variable, secrets."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from holdca.errors import ConfigError
from holdca.hold.config import HoldConfig, Secret

BASE = {
    "HOLD_DID": "did:web:hold01.atcr.io",
    "HOLD_SUBJECT_C": "US",
    "HOLD_SUBJECT_ST": "CA",
    "HOLD_SUBJECT_O": "ATCR Hold",
}
PIN = "s3cret-PIN-4821"


def env(**extra: str) -> dict[str, str]:
    return {**BASE, **extra}


def test_defaults_from_env() -> None:
    cfg = HoldConfig.from_env(BASE)
    assert cfg.hold_did == "did:web:hold01.atcr.io"
    assert cfg.cosign_enabled is True
    assert cfg.cert_validity_hours == 24
    assert cfg.key_backend == "pem"
    assert cfg.effective_ocsp_url is None
    assert cfg.effective_crl_url is None
    assert cfg.effective_ledger_path is None


def test_full_env(tmp_path: Path) -> None:
    cfg = HoldConfig.from_env(
        env(
            HOLD_COSIGN_ENABLED="false",
            HOLD_CA_CERT_PATH=str(tmp_path / "ca.crt"),
            HOLD_CA_KEY_PATH=str(tmp_path / "ca.key"),
            HOLD_CERT_VALIDITY_HOURS="12",
            HOLD_OCSP_ENABLED="true",
            HOLD_OCSP_URL="http://hold.example/ocsp",
            HOLD_CRL_ENABLED="1",
            HOLD_CRL_URL="http://hold.example/ca.crl",
            HOLD_ALLOWED_DID_METHODS="plc",
            HOLD_RATE_LIMIT_PER_HOUR="0",
        )
    )
    assert cfg.cosign_enabled is False
    assert cfg.cert_validity_hours == 12
    assert cfg.effective_ocsp_url == "http://hold.example/ocsp"
    assert cfg.effective_crl_url == "http://hold.example/ca.crl"
    assert cfg.allowed_did_methods == ("plc",)
    assert cfg.effective_ledger_path == tmp_path / "hold-ledger.sqlite3"


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"HOLD_DID": "nope"}, "HOLD_DID"),
        ({"HOLD_SUBJECT_C": "USA"}, "HOLD_SUBJECT_C"),
        ({"HOLD_SUBJECT_O": "a,b"}, "HOLD_SUBJECT_O"),
        ({"HOLD_CERT_VALIDITY_HOURS": "abc"}, "HOLD_CERT_VALIDITY_HOURS"),
        ({"HOLD_CERT_VALIDITY_HOURS": "0"}, "HOLD_CERT_VALIDITY_HOURS"),
        ({"HOLD_COSIGN_ENABLED": "maybe"}, "HOLD_COSIGN_ENABLED"),
        ({"HOLD_OCSP_ENABLED": "true"}, "HOLD_OCSP_URL"),
        ({"HOLD_CRL_ENABLED": "true", "HOLD_CRL_URL": "https://x.example/c"}, "HOLD_CRL_URL"),
        ({"HOLD_OCSP_URL": "ftp://x"}, "HOLD_OCSP_URL"),
        ({"HOLD_KEY_BACKEND": "tpm"}, "HOLD_KEY_BACKEND"),
        ({"HOLD_KEY_BACKEND": "pkcs11"}, "HOLD_PKCS11_MODULE"),
        ({"HOLD_SIGNING_SCHEME": "cosign"}, "HOLD_SIGNING_SCHEME"),
        ({"HOLD_ALLOWED_DID_METHODS": "plc,key"}, "HOLD_ALLOWED_DID_METHODS"),
        ({"HOLD_RATE_LIMIT_PER_HOUR": "-1"}, "HOLD_RATE_LIMIT_PER_HOUR"),
        ({"HOLD_CA_INTERMEDIATE_LABEL": "hold-root"}, "HOLD_CA_INTERMEDIATE_LABEL"),
        ({"HOLD_CA_INTERMEDIATE_LABEL": "bad label"}, "HOLD_CA_INTERMEDIATE_LABEL"),
    ],
)
def test_invalid_values_name_the_variable(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        HoldConfig.from_env(env(**extra))


@pytest.mark.parametrize("missing", sorted(BASE))
def test_required_variables(missing: str) -> None:
    values = dict(BASE)
    del values[missing]
    with pytest.raises(ConfigError, match=missing):
        HoldConfig.from_env(values)


def test_pkcs11_pin_from_variable_or_file(tmp_path: Path) -> None:
    pk = {
        "HOLD_KEY_BACKEND": "pkcs11",
        "HOLD_PKCS11_MODULE": "/usr/lib/softhsm/libsofthsm2.so",
        "HOLD_PKCS11_TOKEN_LABEL": "hold",
    }
    with pytest.raises(ConfigError, match="HOLD_PKCS11_PIN"):
        HoldConfig.from_env(env(**pk))
    cfg = HoldConfig.from_env(env(**pk, HOLD_PKCS11_PIN=PIN))
    assert cfg.pkcs11_pin is not None
    assert cfg.pkcs11_pin.reveal() == PIN
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    cfg2 = HoldConfig.from_env(env(**pk, HOLD_PKCS11_PIN_FILE=str(pin_file)))
    assert cfg2.pkcs11_pin == Secret(PIN)
    with pytest.raises(ConfigError, match="HOLD_PKCS11_PIN_FILE"):
        HoldConfig.from_env(env(**pk, HOLD_PKCS11_PIN_FILE=str(tmp_path / "absent")))
    with pytest.raises(ConfigError, match="only one"):
        HoldConfig.from_env(env(**pk, HOLD_PKCS11_PIN=PIN, HOLD_PKCS11_PIN_FILE=str(pin_file)))


def test_pin_never_in_repr_or_errors(tmp_path: Path) -> None:
    cfg = HoldConfig(
        hold_did="did:web:hold01.atcr.io",
        subject_country="US",
        subject_state="CA",
        subject_organization="ATCR Hold",
        key_backend="pkcs11",
        pkcs11_module=Path("/x.so"),
        pkcs11_token_label="hold",
        pkcs11_pin=Secret(PIN),
        ca_key_passphrase=Secret(PIN + "pass"),
    )
    for text in (repr(cfg), str(cfg), repr(cfg.pkcs11_pin), str(cfg.pkcs11_pin), f"{cfg}"):
        assert PIN not in text
    assert "pkcs11_pin=<set>" in repr(cfg)
    # an invalid config with a PIN set: the error does not carry the PIN either
    with pytest.raises(ConfigError) as info:
        HoldConfig.from_env(env(HOLD_PKCS11_PIN=PIN, HOLD_CERT_VALIDITY_HOURS="x"))
    assert PIN not in str(info.value)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(Secret(PIN))


def test_keyword_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="HOLD_CERT_VALIDITY_HOURS"):
        HoldConfig(
            hold_did="did:web:hold01.atcr.io",
            subject_country="US",
            subject_state="CA",
            subject_organization="X",
            cert_validity_hours=10_000,
        )


@pytest.mark.parametrize("variable", ["HOLD_CRL_URL", "HOLD_OCSP_URL"])
def test_revocation_urls_must_be_plain_http(variable: str) -> None:
    """notation fetches CRLs and OCSP over http:// only: an https URL would make every
    leaf's status unknown (and every cosign fail the profile check)."""
    flag = variable.replace("_URL", "_ENABLED")
    env = {**BASE, flag: "true", variable: "https://hold.example.com/x"}
    with pytest.raises(ConfigError, match=f"{variable}: notation fetches .* over http:// only"):
        HoldConfig.from_env(env)
    HoldConfig.from_env({**env, variable: "http://hold.example.com/x"})


def test_crl_partition_setting() -> None:
    assert HoldConfig.from_env(BASE).crl_partition == "day"
    assert HoldConfig.from_env(env(HOLD_CRL_PARTITION="WEEK")).crl_partition == "week"
    assert HoldConfig.from_env(env(HOLD_CRL_PARTITION="off")).crl_partition == "off"
    with pytest.raises(ConfigError, match="HOLD_CRL_PARTITION: must be day, week or off"):
        HoldConfig.from_env(env(HOLD_CRL_PARTITION="month"))


def test_signature_format_setting() -> None:
    assert HoldConfig.from_env(BASE).signature_format == "jws"
    assert HoldConfig.from_env(env(HOLD_SIGNATURE_FORMAT="COSE")).signature_format == "cose"
    with pytest.raises(ConfigError, match="HOLD_SIGNATURE_FORMAT: must be jws or cose"):
        HoldConfig.from_env(env(HOLD_SIGNATURE_FORMAT="pgp"))
