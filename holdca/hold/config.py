"""Hold configuration: :class:`HoldConfig` from keyword arguments or ``HOLD_*`` variables.

Every value is checked when the config is built, so a hold with a bad setting fails at
start-up with a :class:`~holdca.errors.ConfigError` naming the variable, not on the
first request. Secrets (the PKCS#11 PIN, a key passphrase) are held in :class:`Secret`,
whose ``repr`` and ``str`` never show the value.

Environment variables (``HoldConfig.from_env``):

=============================  ===========================================================
``HOLD_DID``                   the hold's own DID (did:web or did:plc) — required
``HOLD_SUBJECT_C/ST/O``        C, ST, O of the CA and leaf subjects (notation needs all 3)
``HOLD_COSIGN_ENABLED``        ``true``/``false`` (default true)
``HOLD_CA_CERT_PATH``          the CA certificate (PEM)
``HOLD_CA_KEY_PATH``           PEM backend: the CA key file (its directory is the key store
                               and its name without suffix the label)
``HOLD_CA_KEY_LABEL``          the CA key's label in the key store (default ``hold-root``)
``HOLD_CA_INTERMEDIATE_LABEL`` when creating the CA, also create an issuing intermediate
                               with its key under this label
``HOLD_CA_KEY_PASSPHRASE[_FILE]`` PEM backend: passphrase of the key files
``HOLD_KEY_BACKEND``           ``pem`` (default) or ``pkcs11``
``HOLD_PKCS11_MODULE``         path of the PKCS#11 module (``libsofthsm2.so``, ...)
``HOLD_PKCS11_TOKEN_LABEL``    the token label
``HOLD_PKCS11_PIN[_FILE]``     the user PIN, or a file holding it
``HOLD_CERT_VALIDITY_HOURS``   leaf validity, 1..8760 (default 24)
``HOLD_SIGNING_SCHEME``        ``notary.x509`` (default) or ``notary.x509.signingAuthority``
``HOLD_SIGNATURE_FORMAT``      ``jws`` (default, ``application/jose+json``) or ``cose``
``HOLD_TSA``                   ``local``: timestamp every notary.x509 signature with the
                               hold's own RFC 3161 TSA (``holdca init --tsa`` creates its
                               root and key); ``off`` (default)
``HOLD_TSA_URL``               timestamp every notary.x509 signature at this external
                               RFC 3161 TSA (http or https; the address policy applies)
``HOLD_TSA_ROOT_CERT_PATH``    PEM root certificate(s) the TSA's tokens must chain to
                               (required with HOLD_TSA_URL)
``HOLD_OCSP_ENABLED/URL``      put an OCSP URL (AIA) in leaves; URL required when enabled
``HOLD_CRL_ENABLED/URL``       put a CRL URL (CDP) in leaves; URL required when enabled
``HOLD_CRL_PARTITION``         ``day`` (default), ``week`` or ``off``: leaves name the CRL
                               of their issuance period
``HOLD_LEDGER_PATH``           the SQLite ledger (default ``hold-ledger.sqlite3`` beside
                               the CA certificate)
``HOLD_LEDGER_URL``            a ``postgresql://`` URL: the ledger in PostgreSQL, shared by
                               replicas (instead of HOLD_LEDGER_PATH; a secret: its
                               password is never shown)
``HOLD_RATE_LIMIT_PER_HOUR``   per-DID certificates per hour (default 60; 0 = no limit)
``HOLD_ALLOWED_DID_METHODS``   comma-separated (default ``plc,web``)
``HOLD_ROTATION_GRACE_DAYS``   how long a rotated-out root stays published (default 30)
``HOLD_PLC_URL``               the PLC directory DID logs are fetched from (default
                               ``https://plc.directory``); its origin is always reachable
``HOLD_NETWORK_ALLOW``         exceptions to the address policy: comma-separated CIDRs or
                               ``host:port`` pairs the hold may reach although they are
                               internal (and over plain http); empty by default
``HOLD_PROOF_MAX_AGE``         seconds a caller's proof hint may be old and still be
                               accepted without asking the PDS (default 0: never)
``HOLD_IDENTITY_TTL``          seconds a resolved DID identity is cached for authenticating
                               callers (default 60; 0 disables the cache)
``HOLD_REUSE_IDENTITIES``      ``true``: issuance may also use cached identities (a key
                               rotation then takes effect within HOLD_IDENTITY_TTL);
                               default false: every issuance resolves the DID anew
``HOLD_ON_DID_CHANGE``         what the hold does when it sees a DID's key change, its PDS
                               move to another host, or the DID deactivated: ``revoke`` its
                               live certificates, ``flag`` (an audit alert; default) or
                               ``ignore``
``HOLD_ALERT_BURST_FACTOR``    alert when a DID gets more certificates in an hour than this
                               many times its hourly average of the past week (default 10)
``HOLD_ALERT_BURST_MIN``       ... and at least this many (default 20)
``HOLD_ALERT_REFUSALS``        alert when one DID is refused this many times in 10 minutes
                               (default 20; 0 disables the alert)
``HOLD_AUDIT_LOG``             where ``holdca serve`` writes the audit trail (JSON lines):
                               a file path, or ``-`` for stdout (default: stderr)
``HOLD_LOG_DIR``               the transparency log's directory: every issuance and
                               revocation is published there before it is returned
                               (``holdca init --log`` creates it); unset: no log
``HOLD_LOG_KEY_LABEL``         the log's Ed25519 key in the key store (default
                               ``hold-log``; PEM key stores only)
``HOLD_LOG_ORIGIN``            the log's origin line, a schemeless URL such as
                               ``hold.example.com/log`` (default: the did:web host +
                               ``/log``; required for other DIDs)
=============================  ===========================================================
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from holdca.atproto.did import validate_did, web_did_host
from holdca.errors import ConfigError, DIDSyntaxError

__all__ = ["ENV_VARS", "KNOWN_VARIABLES", "HoldConfig", "Secret", "unknown_settings"]


class Secret:
    """A secret string (PIN, passphrase) that never shows itself in repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``."""
        self._value = value

    def reveal(self) -> str:
        """The secret value: pass it to the backend, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # no accidental pickling of the value into caches/logs
        raise TypeError("a Secret cannot be pickled")


ENV_VARS: dict[str, str] = {
    "hold_did": "HOLD_DID",
    "subject_country": "HOLD_SUBJECT_C",
    "subject_state": "HOLD_SUBJECT_ST",
    "subject_organization": "HOLD_SUBJECT_O",
    "cosign_enabled": "HOLD_COSIGN_ENABLED",
    "ca_cert_path": "HOLD_CA_CERT_PATH",
    "ca_key_path": "HOLD_CA_KEY_PATH",
    "ca_key_label": "HOLD_CA_KEY_LABEL",
    "ca_intermediate_label": "HOLD_CA_INTERMEDIATE_LABEL",
    "ca_key_passphrase": "HOLD_CA_KEY_PASSPHRASE",
    "key_backend": "HOLD_KEY_BACKEND",
    "pkcs11_module": "HOLD_PKCS11_MODULE",
    "pkcs11_token_label": "HOLD_PKCS11_TOKEN_LABEL",
    "pkcs11_pin": "HOLD_PKCS11_PIN",
    "cert_validity_hours": "HOLD_CERT_VALIDITY_HOURS",
    "signing_scheme": "HOLD_SIGNING_SCHEME",
    "signature_format": "HOLD_SIGNATURE_FORMAT",
    "tsa": "HOLD_TSA",
    "tsa_url": "HOLD_TSA_URL",
    "tsa_root_cert_path": "HOLD_TSA_ROOT_CERT_PATH",
    "ocsp_enabled": "HOLD_OCSP_ENABLED",
    "ocsp_url": "HOLD_OCSP_URL",
    "crl_enabled": "HOLD_CRL_ENABLED",
    "crl_url": "HOLD_CRL_URL",
    "crl_partition": "HOLD_CRL_PARTITION",
    "ledger_path": "HOLD_LEDGER_PATH",
    "ledger_url": "HOLD_LEDGER_URL",
    "rate_limit_per_hour": "HOLD_RATE_LIMIT_PER_HOUR",
    "allowed_did_methods": "HOLD_ALLOWED_DID_METHODS",
    "rotation_grace_days": "HOLD_ROTATION_GRACE_DAYS",
    "plc_url": "HOLD_PLC_URL",
    "network_allow": "HOLD_NETWORK_ALLOW",
    "proof_max_age": "HOLD_PROOF_MAX_AGE",
    "audit_log": "HOLD_AUDIT_LOG",
    "identity_ttl": "HOLD_IDENTITY_TTL",
    "reuse_identities": "HOLD_REUSE_IDENTITIES",
    "on_did_change": "HOLD_ON_DID_CHANGE",
    "alert_burst_factor": "HOLD_ALERT_BURST_FACTOR",
    "alert_burst_min": "HOLD_ALERT_BURST_MIN",
    "alert_refusals": "HOLD_ALERT_REFUSALS",
    "log_dir": "HOLD_LOG_DIR",
    "log_key_label": "HOLD_LOG_KEY_LABEL",
    "log_origin": "HOLD_LOG_ORIGIN",
}
"""Config field -> environment variable."""

_SECRET_FILES = {
    "ca_key_passphrase": "HOLD_CA_KEY_PASSPHRASE_FILE",
    "pkcs11_pin": "HOLD_PKCS11_PIN_FILE",
}
KNOWN_VARIABLES: frozenset[str] = frozenset(
    {
        *ENV_VARS.values(),
        *_SECRET_FILES.values(),
        "HOLD_CA_AUTO_INIT",  # read by examples/reference_server.py, beside these
    }
)
"""Every ``HOLD_*`` name holdca reads: the config fields, the ``*_FILE`` variants, and
the reference server example's ``HOLD_CA_AUTO_INIT``."""


def unknown_settings(env: Mapping[str, str]) -> list[str]:
    """A warning for each ``HOLD_*`` name in ``env`` that is not in :data:`KNOWN_VARIABLES`
    (a misspelled setting is otherwise silently ignored), with the closest known name
    when one is close (``difflib``): ``"HOLD_LEDGR_PATH is not a holdca setting (did you
    mean HOLD_LEDGER_PATH?)"``. Names not starting with ``HOLD_`` are not checked.
    Sorted by name; never raises; values are never looked at (they may be secrets).
    """
    stems = {name.removeprefix("HOLD_"): name for name in sorted(KNOWN_VARIABLES)}
    warnings = []
    for name in sorted(env):
        if not name.startswith("HOLD_") or name in KNOWN_VARIABLES:
            continue
        close = difflib.get_close_matches(name.removeprefix("HOLD_"), stems, n=1, cutoff=0.6)
        hint = f" (did you mean {stems[close[0]]}?)" if close else ""
        warnings.append(f"{name} is not a holdca setting{hint}")
    return warnings


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?&@_]+")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SCHEMES = ("notary.x509", "notary.x509.signingAuthority")
# C2SP tlog-checkpoint: the origin is a schemeless URL without spaces or "+" (also the
# signed-note key name: no whitespace, no "+"); printable ASCII keeps it unambiguous
_ORIGIN = re.compile(r"[!-*,-~]{1,255}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _bad(name: str, why: str) -> ConfigError:
    return ConfigError(f"{ENV_VARS.get(name, name)}: {why}")


def _check_allow_list(text: str) -> None:
    """Syntax of HOLD_NETWORK_ALLOW: CIDRs and host:port pairs (the resolver parses it)."""
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
            continue
        except ValueError:
            pass
        host, sep, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _bad("network_allow", f"{entry[:80]!r} is neither a CIDR nor host:port")


def _check_ledger_url(url: str) -> None:
    """HOLD_LEDGER_URL is a ``postgresql://`` (or ``postgres://``) URL; the value is never
    echoed (it may hold a password)."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise _bad(
            "ledger_url", "not a valid URL (value not shown: it may hold a password)"
        ) from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise _bad("ledger_url", "must be a postgresql:// URL (value not shown)")


@dataclass(frozen=True)
class HoldConfig:
    """The settings of one hold. Build with keywords or :meth:`from_env`.

    All checks run in ``__post_init__``; see the module docstring for the variables.

    Raises:
        ConfigError: a value is invalid or a required one is missing; the message names
            the environment variable.
    """

    hold_did: str
    subject_country: str
    subject_state: str
    subject_organization: str
    cosign_enabled: bool = True
    ca_cert_path: Path | None = None
    ca_key_path: Path | None = None
    ca_key_label: str = "hold-root"
    ca_intermediate_label: str | None = None
    ca_key_passphrase: Secret | None = field(default=None, repr=False)
    key_backend: str = "pem"
    pkcs11_module: Path | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: Secret | None = field(default=None, repr=False)
    cert_validity_hours: int = 24
    signing_scheme: str = "notary.x509"
    signature_format: str = "jws"
    crl_partition: str = "day"
    tsa: str = "off"
    tsa_url: str | None = None
    tsa_root_cert_path: Path | None = None
    ocsp_enabled: bool = False
    ocsp_url: str | None = None
    crl_enabled: bool = False
    crl_url: str | None = None
    ledger_path: Path | None = None
    ledger_url: Secret | None = field(default=None, repr=False)
    rate_limit_per_hour: int = 60
    allowed_did_methods: tuple[str, ...] = ("plc", "web")
    rotation_grace_days: int = 30
    plc_url: str = "https://plc.directory"
    network_allow: str = ""
    proof_max_age: int = 0
    audit_log: str | None = None
    identity_ttl: int = 60
    reuse_identities: bool = False
    on_did_change: str = "flag"
    alert_burst_factor: int = 10
    alert_burst_min: int = 20
    alert_refusals: int = 20
    log_dir: Path | None = None
    log_key_label: str = "hold-log"
    log_origin: str | None = None

    def __post_init__(self) -> None:
        try:
            validate_did(self.hold_did)
        except DIDSyntaxError as exc:
            raise _bad("hold_did", f"not a valid DID ({exc})") from None
        if not re.fullmatch(r"[A-Z]{2}", self.subject_country):
            raise _bad("subject_country", "must be a two-letter ISO 3166 code such as US")
        for name in ("subject_state", "subject_organization"):
            value = getattr(self, name)
            if not value or len(value) > 64 or not _PRINTABLE.fullmatch(value):
                raise _bad(name, "must be 1-64 printable characters (no quotes or commas)")
            if "," in value or "=" in value:
                raise _bad(name, "must not contain ',' or '=' (notation parses it as a DN)")
        if not _LABEL.fullmatch(self.ca_key_label):
            raise _bad("ca_key_label", "use 1-128 characters of [A-Za-z0-9._-]")
        if self.ca_intermediate_label is not None and (
            not _LABEL.fullmatch(self.ca_intermediate_label)
            or self.ca_intermediate_label == self.ca_key_label
        ):
            raise _bad(
                "ca_intermediate_label",
                "use 1-128 characters of [A-Za-z0-9._-], different from HOLD_CA_KEY_LABEL",
            )
        if self.key_backend not in ("pem", "pkcs11"):
            raise _bad("key_backend", f"must be 'pem' or 'pkcs11', not {self.key_backend!r}")
        if self.key_backend == "pkcs11":
            if self.pkcs11_module is None:
                raise _bad("pkcs11_module", "required with HOLD_KEY_BACKEND=pkcs11")
            if not self.pkcs11_token_label:
                raise _bad("pkcs11_token_label", "required with HOLD_KEY_BACKEND=pkcs11")
            if self.pkcs11_pin is None:
                raise ConfigError(
                    "HOLD_PKCS11_PIN or HOLD_PKCS11_PIN_FILE: required with HOLD_KEY_BACKEND=pkcs11"
                )
        if not 1 <= self.cert_validity_hours <= 8760:
            raise _bad("cert_validity_hours", "must be between 1 and 8760 hours")
        if self.signing_scheme not in SCHEMES:
            raise _bad("signing_scheme", f"must be one of {', '.join(SCHEMES)}")
        if self.signature_format not in ("jws", "cose"):
            raise _bad("signature_format", "must be jws or cose")
        if self.crl_partition not in ("day", "week", "off"):
            raise _bad("crl_partition", "must be day, week or off")
        self._check_tsa()
        for flag, url in (("ocsp_enabled", "ocsp_url"), ("crl_enabled", "crl_url")):
            value = getattr(self, url)
            if value is not None:
                parts = urlsplit(value)
                if parts.scheme not in ("http", "https") or not parts.netloc:
                    raise _bad(url, f"must be an http:// URL, not {value!r}")
                if parts.scheme != "http":  # notation-core-go's CRL and OCSP clients
                    what = "CRLs" if url == "crl_url" else "OCSP responses"
                    raise _bad(url, f"notation fetches {what} over http:// only")
            elif getattr(self, flag):
                raise _bad(url, f"required when {ENV_VARS[flag]} is true")
        if self.ledger_url is not None:
            if self.ledger_path is not None:
                raise ConfigError("HOLD_LEDGER_PATH and HOLD_LEDGER_URL: set only one of them")
            _check_ledger_url(self.ledger_url.reveal())
        if self.rate_limit_per_hour < 0:
            raise _bad("rate_limit_per_hour", "must be 0 (no limit) or a positive integer")
        if not self.allowed_did_methods or not set(self.allowed_did_methods) <= {"plc", "web"}:
            raise _bad("allowed_did_methods", "a comma-separated subset of plc,web")
        if not 0 <= self.rotation_grace_days <= 3650:
            raise _bad("rotation_grace_days", "must be between 0 and 3650 days")
        plc = urlsplit(self.plc_url)
        if (
            plc.scheme not in ("http", "https")
            or not plc.hostname
            or plc.username is not None
            or plc.query
            or plc.fragment
        ):
            raise _bad(
                "plc_url", f"must be an http(s) URL without query or userinfo, not {self.plc_url!r}"
            )
        _check_allow_list(self.network_allow)
        if self.on_did_change not in ("revoke", "flag", "ignore"):
            raise _bad("on_did_change", "must be revoke, flag or ignore")
        if not 1 <= self.alert_burst_factor <= 1000:
            raise _bad("alert_burst_factor", "must be between 1 and 1000")
        if not 1 <= self.alert_burst_min <= 1_000_000:
            raise _bad("alert_burst_min", "must be between 1 and 1000000")
        if not 0 <= self.alert_refusals <= 1_000_000:
            raise _bad("alert_refusals", "must be between 0 and 1000000")
        if not 0 <= self.identity_ttl <= 86_400:
            raise _bad("identity_ttl", "must be between 0 and 86400 seconds")
        if not 0 <= self.proof_max_age <= 86_400:
            raise _bad("proof_max_age", "must be between 0 and 86400 seconds")
        if self.audit_log is not None and not self.audit_log.strip():
            raise _bad("audit_log", "must be a file path or -")
        self._check_log()

    def _check_log(self) -> None:
        """HOLD_LOG_KEY_LABEL (a label of its own) and HOLD_LOG_ORIGIN (C2SP: a schemeless
        URL of printable ASCII without spaces or ``+``); with HOLD_LOG_DIR a known origin
        (given, or derived from a did:web). Every key backend holds the Ed25519 log key
        (pkcs11: on the token)."""
        taken = {self.ca_key_label, self.ca_intermediate_label}
        if not _LABEL.fullmatch(self.log_key_label) or self.log_key_label in taken:
            raise _bad(
                "log_key_label",
                "use 1-128 characters of [A-Za-z0-9._-], different from the CA key labels",
            )
        if self.log_origin is not None:
            if _SCHEME.match(self.log_origin):
                raise _bad("log_origin", "must be schemeless (hold.example.com/log, no https://)")
            if not _ORIGIN.fullmatch(self.log_origin):
                raise _bad(
                    "log_origin",
                    "1-255 printable ASCII characters without spaces, newlines or '+'",
                )
        elif self.log_dir is not None and self.effective_log_origin is None:
            raise _bad(
                "log_origin",
                "required with HOLD_LOG_DIR when HOLD_DID is not a did:web "
                "(for example hold.example.com/log)",
            )

    @property
    def effective_log_origin(self) -> str | None:
        """The log's origin: HOLD_LOG_ORIGIN, else ``<did:web host>/log``, else ``None``."""
        if self.log_origin is not None:
            return self.log_origin
        try:
            host = web_did_host(self.hold_did, allow_localhost=True)
        except DIDSyntaxError:
            return None
        origin = f"{host}/log"
        return origin if _ORIGIN.fullmatch(origin) else None

    @property
    def effective_ocsp_url(self) -> str | None:
        """The OCSP URL to put in leaves, or ``None`` when OCSP is disabled."""
        return self.ocsp_url if self.ocsp_enabled else None

    @property
    def effective_crl_url(self) -> str | None:
        """The CRL URL to put in leaves, or ``None`` when CRLs are disabled."""
        return self.crl_url if self.crl_enabled else None

    def _check_tsa(self) -> None:
        """HOLD_TSA, HOLD_TSA_URL and HOLD_TSA_ROOT_CERT_PATH: one TSA at most, a root for an
        external one, and the notary.x509 scheme (notation never timestamps the other)."""
        if self.tsa not in ("off", "local"):
            raise _bad("tsa", f"must be 'off' or 'local', not {self.tsa!r}")
        if self.tsa_url is not None:
            parts = urlsplit(self.tsa_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _bad("tsa_url", "must be an http:// or https:// URL")
            if self.tsa == "local":
                raise _bad("tsa_url", "set either HOLD_TSA=local or HOLD_TSA_URL, not both")
            if self.tsa_root_cert_path is None:
                raise _bad("tsa_root_cert_path", "required with HOLD_TSA_URL")
        elif self.tsa_root_cert_path is not None:
            raise _bad("tsa_root_cert_path", "only used with HOLD_TSA_URL")
        if self.timestamps and self.signing_scheme != "notary.x509":
            raise _bad("tsa" if self.tsa == "local" else "tsa_url", "needs notary.x509 signatures")

    @property
    def timestamps(self) -> bool:
        """Whether signatures are timestamped (HOLD_TSA=local or HOLD_TSA_URL)."""
        return self.tsa == "local" or self.tsa_url is not None

    @property
    def tsa_directory(self) -> Path | None:
        """Where the built-in TSA's ``tsa-root.crt`` and ``tsa.crt`` live: beside the CA
        certificate (``None`` without HOLD_CA_CERT_PATH)."""
        return None if self.ca_cert_path is None else self.ca_cert_path.parent

    @property
    def effective_ledger_path(self) -> Path | None:
        """The ledger file: ``ledger_path``, else beside the CA certificate, else ``None``
        (also ``None`` with ``ledger_url``: the ledger is in PostgreSQL)."""
        if self.ledger_url is not None:
            return None
        if self.ledger_path is not None:
            return self.ledger_path
        if self.ca_cert_path is not None:
            return self.ca_cert_path.parent / "hold-ledger.sqlite3"
        return None

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                shown.append(f"{f.name}=<set>")
            elif value is not None:
                shown.append(f"{f.name}={value!r}")
        return f"HoldConfig({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HoldConfig:
        """Build a config from ``HOLD_*`` variables (``os.environ`` by default).

        Secrets may come from a variable or a ``*_FILE`` variable naming a file (its
        first line, without the newline); giving both is an error.

        Raises:
            ConfigError: a variable is missing, unparseable, unreadable or invalid.
        """
        env = os.environ if environ is None else environ
        kwargs: dict[str, Any] = {}

        def text(name: str) -> str | None:
            value = env.get(ENV_VARS[name])
            return None if value is None else value.strip()

        for name in ("hold_did", "subject_country", "subject_state", "subject_organization"):
            value = text(name)
            if not value:
                raise _bad(name, "required")
            kwargs[name] = value
        for name in ("cosign_enabled", "ocsp_enabled", "crl_enabled", "reuse_identities"):
            value = text(name)
            if value is not None:
                low = value.lower()
                if low not in _TRUE | _FALSE:
                    raise _bad(name, f"must be true or false, not {value!r}")
                kwargs[name] = low in _TRUE
        for name in (
            "ca_cert_path",
            "ca_key_path",
            "pkcs11_module",
            "ledger_path",
            "tsa_root_cert_path",
            "log_dir",
        ):
            value = text(name)
            if value:
                kwargs[name] = Path(value)
        for name in (
            "ca_key_label",
            "ca_intermediate_label",
            "key_backend",
            "pkcs11_token_label",
            "signing_scheme",
            "ocsp_url",
            "crl_url",
            "log_key_label",
            "log_origin",
        ):
            value = text(name)
            if value:
                kwargs[name] = value
        for name in ("signature_format", "crl_partition"):
            value = text(name)
            if value:
                kwargs[name] = value.lower()
        value = text("tsa")
        if value:
            kwargs["tsa"] = value.lower()
        value = text("tsa_url")
        if value:
            kwargs["tsa_url"] = value
        for name in ("plc_url", "audit_log", "on_did_change"):
            value = text(name)
            if value:
                kwargs[name] = value
        allow = text("network_allow")
        if allow is not None:
            kwargs["network_allow"] = allow
        for name in (
            "cert_validity_hours",
            "rate_limit_per_hour",
            "rotation_grace_days",
            "proof_max_age",
            "identity_ttl",
            "alert_burst_factor",
            "alert_burst_min",
            "alert_refusals",
        ):
            value = text(name)
            if value:
                try:
                    kwargs[name] = int(value, 10)
                except ValueError:
                    raise _bad(name, f"must be an integer, not {value!r}") from None
        methods = text("allowed_did_methods")
        if methods:
            kwargs["allowed_did_methods"] = tuple(
                m.strip() for m in methods.split(",") if m.strip()
            )
        url = text("ledger_url")
        if url:
            kwargs["ledger_url"] = Secret(url)
        for name, file_var in _SECRET_FILES.items():
            direct = env.get(ENV_VARS[name])
            path = env.get(file_var)
            if direct is not None and path is not None:
                raise ConfigError(f"{ENV_VARS[name]} and {file_var}: set only one of them")
            if direct is not None:
                kwargs[name] = Secret(direct)
            elif path is not None:
                try:
                    raw = Path(path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(
                        f"{file_var}: cannot read {path!r} ({type(exc).__name__})"
                    ) from None
                lines = raw.splitlines()
                kwargs[name] = Secret(lines[0] if lines else "")
        return cls(**kwargs)
