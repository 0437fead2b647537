"""Keys on a PKCS#11 token (an HSM, SoftHSM): they never leave it.

Example::

    from holdca.keys.pkcs11 import PKCS11KeyStore

    store = PKCS11KeyStore("/usr/lib/softhsm/libsofthsm2.so", "hold", pin=os.environ["PIN"])
    root = store.generate("hold-root")            # P-256, generated on the token
    cert = builder.sign(as_private_key(root), hashes.SHA256())

Needs the ``pkcs11`` extra (python-pkcs11 0.10); without it the constructor raises
:class:`~holdca.errors.KeyStoreError` saying so. PKCS#11 calls block: async embedders
should call :meth:`PKCS11Signer.sign` from a worker thread.

**Keys.** ``generate`` makes a token key pair (``CKA_TOKEN``) with a ``CKA_LABEL`` and a
random 16-byte ``CKA_ID``; the private key is ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``, ``CKA_PRIVATE`` and can only sign. ECDSA (ES256/ES384/ES512):
holdca hashes in Python and the token signs the digest with ``CKM_ECDSA``; its raw
``r || s`` is converted to DER. RSA-PSS (PS256/PS384/PS512): ``CKM_RSA_PKCS_PSS`` over
the digest, MGF1 with the same hash, salt length = hash length. Support is checked
against the slot's mechanism list.

**Never the wrong key.** Keys are looked up by label *and* class, a label that matches
several private keys is an error, and the public key read from the token when the
signer was made is kept: every later lookup (another thread, a re-opened session) must
find the same ``CKA_ID`` and the same public key, and the first signature after each
lookup is verified with that public key before it is returned.

**Threads.** Signers and stores are thread-safe. python-pkcs11 0.10.1 initialises a
module with ``C_Initialize(NULL)``, which makes SoftHSM drop its locks: two threads on
two sessions then crash the process. The first time holdca loads a module in a
process it therefore re-initialises it with ``CKF_OS_LOCKING_OK`` (through ctypes, on
python-pkcs11's own dlopen handle), and every thread gets its own session. On two
free cores two threads then sign 1.5-1.7x as fast as one (SoftHSM, P-256); a single
lock would make them slower than one thread (0.7x), and separate processes are the
embedder's choice, not a library's. If the module was already loaded by other code in
the process, or cannot lock, holdca falls back to that lock (``os_locking`` is then
False): safe, but not faster with more threads. Measurements: ``docs/keys.md``.

**Sessions and login.** PKCS#11 login is per application: holdca logs in once per
token (one anchor session) and opens one session per thread without a PIN. When a
session is closed under it (token reset, ``C_CloseAllSessions``), an operation opens a
new session, logs in again if the login was lost, and retries once; if that fails too
it raises. The PIN is kept (for that re-login) in a holder that never prints it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from holdca.errors import (
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreError,
    MalformedInputError,
    SignerError,
    UnsupportedAlgorithmError,
)
from holdca.keys import pkcs11_ed25519
from holdca.keys._base import PublicKey, SignatureAlgorithm, check_label, spki_der
from holdca.keys._secret import Secret
from holdca.keys.encoding import raw_to_der
from holdca.keys.pkcs11_session import remember_key, sign_in_session

__all__ = ["PKCS11KeyStore", "PKCS11Signer"]

T = TypeVar("T")

_RSA_BITS = {
    SignatureAlgorithm.PS256: 2048,
    SignatureAlgorithm.PS384: 3072,
    SignatureAlgorithm.PS512: 4096,
}
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "sha256": hashlib.sha256,
    "sha384": hashlib.sha384,
    "sha512": hashlib.sha512,
}


def _backend() -> ModuleType:
    """holdca.keys._p11, which imports python-pkcs11; a clear error when it is missing."""
    try:
        from holdca.keys import _p11  # noqa: PLC0415  (optional dependency)
    except ImportError as exc:
        raise KeyStoreError(
            "the PKCS#11 backend needs python-pkcs11: "
            "pip install -e '.[pkcs11]' in a holdca checkout"
        ) from exc
    return _p11


def _pin_secret(pin: str | bytes) -> Secret:
    if isinstance(pin, str):
        return Secret(pin.encode("utf-8"))
    if isinstance(pin, bytes):
        return Secret(pin)
    raise TypeError("pin must be str or bytes")


class _Ops:
    """python-pkcs11 calls on one session; everything that touches python-pkcs11 objects."""

    def __init__(self, b: ModuleType) -> None:
        self.b = b
        self.p11 = b.pkcs11
        self.err = b.p11e
        self.recoverable: tuple[type[Exception], ...] = b.RECOVERABLE

    def mechanisms_for(self, algorithm: SignatureAlgorithm) -> tuple[Any, Any]:
        """(key-pair generation mechanism, signing mechanism)."""
        m = self.p11.Mechanism
        if algorithm.is_ecdsa:
            return m.EC_KEY_PAIR_GEN, m.ECDSA
        return m.RSA_PKCS_KEY_PAIR_GEN, m.RSA_PKCS_PSS

    def sign_params(self, algorithm: SignatureAlgorithm) -> tuple[Any, Any]:
        """(mechanism, mechanism_param) for signing a digest."""
        p11 = self.p11
        if algorithm.is_ecdsa:
            return p11.Mechanism.ECDSA, None
        name = algorithm.hash.name.upper()  # SHA256 ...
        return p11.Mechanism.RSA_PKCS_PSS, (
            getattr(p11.Mechanism, name),
            getattr(p11.MGF, name),
            algorithm.hash.digest_size,
        )

    def objects(self, token: Any, session: Any, **attrs: Any) -> list[Any]:
        """The objects matching ``attrs`` (``class_=``, ``label=``, ``id=``).

        Checks first that the session is open: python-pkcs11 reports a search begun
        on a closed session a second time, as an unraisable error when it is collected.
        """
        if not token.alive(session):
            raise self.err.SessionHandleInvalid()
        a = self.p11.Attribute
        template = {getattr(a, k.rstrip("_").upper()): v for k, v in attrs.items()}
        return list(session.get_objects(template))

    def find_pair(self, token: Any, session: Any, label: str) -> tuple[Any, Any]:
        """The (private, public) key objects labelled ``label``.

        Raises:
            KeyNotFoundError, KeyStoreError; UserNotLoggedIn (recoverable) when the
            private key is invisible because the login was lost.
        """
        cls = self.p11.ObjectClass
        a = self.p11.Attribute
        private = self.objects(token, session, class_=cls.PRIVATE_KEY, label=label)
        if not private:
            if not token.logged_in(session):
                raise self.err.UserNotLoggedIn()
            raise KeyNotFoundError(f"no key {label!r} on token {token.label!r}")
        if len(private) > 1:
            raise KeyStoreError(f"{len(private)} private keys are labelled {label!r}")
        public = self.objects(token, session, class_=cls.PUBLIC_KEY, label=label)
        if len(public) != 1:
            raise KeyStoreError(
                f"key {label!r} needs exactly one public key object, found {len(public)}"
            )
        if private[0][a.ID] != public[0][a.ID] or private[0][a.KEY_TYPE] != public[0][a.KEY_TYPE]:
            raise KeyStoreError(f"the public and private key {label!r} do not belong together")
        return private[0], public[0]

    def public_key(self, public: Any) -> PublicKey:
        """The cryptography public key of a token public key object."""
        a = self.p11.Attribute
        kt = public[a.KEY_TYPE]
        if kt == self.p11.KeyType.EC:
            der = self.p11.util.ec.encode_ec_public_key(public)
            key = serialization.load_der_public_key(der)
        elif kt == self.p11.KeyType.RSA:
            n = int.from_bytes(public[a.MODULUS], "big")
            e = int.from_bytes(public[a.PUBLIC_EXPONENT], "big")
            key = rsa.RSAPublicNumbers(e, n).public_key()
        else:
            raise UnsupportedAlgorithmError(f"unsupported PKCS#11 key type {kt!r}")
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise UnsupportedAlgorithmError(f"unsupported public key {type(key).__name__}")
        return key

    def generate(
        self, session: Any, label: str, algorithm: SignatureAlgorithm, key_id: bytes
    ) -> Any:
        """Generate a token key pair; return the public key object."""
        p11 = self.p11
        a = p11.Attribute
        private_template = {
            a.EXTRACTABLE: False,
            a.SENSITIVE: True,
            a.PRIVATE: True,
            a.TOKEN: True,
            a.SIGN: True,
            a.DECRYPT: False,
            a.UNWRAP: False,
            a.DERIVE: False,
        }
        caps = p11.MechanismFlag.SIGN | p11.MechanismFlag.VERIFY
        if algorithm.is_ecdsa:
            params = session.create_domain_parameters(
                p11.KeyType.EC,
                {a.EC_PARAMS: p11.util.ec.encode_named_curve_parameters(algorithm.curve.name)},
                local=True,
            )
            public, _private = params.generate_keypair(
                store=True,
                label=label,
                id=key_id,
                capabilities=caps,
                private_template=private_template,
            )
        else:
            public, _private = session.generate_keypair(
                p11.KeyType.RSA,
                _RSA_BITS[algorithm],
                store=True,
                label=label,
                id=key_id,
                capabilities=caps,
                public_template={a.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                private_template=private_template,
            )
        return public


class PKCS11KeyStore:
    """A :class:`~holdca.keys.KeyStore` over the keys of one PKCS#11 token."""

    def __init__(
        self,
        module_path: str | os.PathLike[str],
        token_label: str,
        pin: str | bytes,
        *,
        os_locking: bool = True,
    ) -> None:
        """Load the module (once per process), find the token and log in (once per token).

        Args:
            module_path: the PKCS#11 module, e.g. ``/usr/lib/softhsm/libsofthsm2.so``.
            token_label: ``CKA_LABEL`` of the token (``softhsm2-util --label``).
            pin: the user PIN; kept in memory (for a re-login) but never shown.
            os_locking: allow re-initialising the module with ``CKF_OS_LOCKING_OK``
                so that threads sign in parallel; False serialises every call on the
                module instead. The first store to load a module in a process decides.

        Raises:
            KeyStoreError: python-pkcs11 is not installed, or the module is missing or
                not loadable (the message names the path), or another PKCS#11 failure.
            TokenNotFoundError: no token with that label.
            PINIncorrectError: the token rejected the PIN.
        """
        secret = _pin_secret(pin)
        b = _backend()
        self._ops = _Ops(b)
        self._module = b.load_module(os.fspath(module_path), os_locking=os_locking)
        self._token = b.open_token(self._module, token_label, secret)

    @property
    def module_path(self) -> str:
        """The real path of the PKCS#11 module."""
        return str(self._module.path)

    @property
    def token_label(self) -> str:
        """The token's label."""
        return str(self._token.label)

    @property
    def os_locking(self) -> bool:
        """True when threads use the module in parallel; False when calls are serialised."""
        return bool(self._module.os_locking)

    def supports(self, algorithm: SignatureAlgorithm) -> bool:
        """Whether the token has the mechanisms to generate and sign with ``algorithm``."""
        return all(m in self._token.mechanisms for m in self._ops.mechanisms_for(algorithm))

    def _check_supported(self, algorithm: SignatureAlgorithm) -> None:
        if not self.supports(algorithm):
            raise UnsupportedAlgorithmError(
                f"token {self.token_label!r} lacks the mechanisms for {algorithm.value}"
            )

    def _run(self, what: str, op: Callable[[Any], T]) -> T:
        """Run ``op(session)`` on this thread's session; recover once from a lost session."""
        err = self._ops.err
        for attempt in (0, 1):
            session = None
            try:
                session = self._token.session()
                with self._module.guard:
                    return op(session)
            except self._ops.recoverable as exc:
                if attempt:
                    raise KeyStoreError(
                        f"{what} failed again after re-opening the session: giving up"
                    ) from exc
                self._token.recover(session)
            except (err.MechanismInvalid, err.MechanismParamInvalid, err.KeySizeRange) as exc:
                raise UnsupportedAlgorithmError(f"{what}: the token refused the mechanism") from exc
            except err.PKCS11Error as exc:
                raise KeyStoreError(f"{what} failed ({type(exc).__name__})") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # --- KeyStore --------------------------------------------------------------------

    def generate(
        self, label: str, algorithm: SignatureAlgorithm = SignatureAlgorithm.ES256
    ) -> PKCS11Signer:
        """Generate a key pair on the token under ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyExistsError: an object with that label exists; nothing is changed.
            UnsupportedAlgorithmError: the token lacks the mechanisms.
            KeyStoreError: another PKCS#11 failure (raised from it).
        """
        check_label(label)
        self._check_supported(algorithm)
        ops = self._ops
        key_id = secrets.token_bytes(16)

        def op(session: Any) -> PublicKey:
            if not self._token.logged_in(session):  # private keys would be invisible
                raise ops.err.UserNotLoggedIn()
            if ops.objects(self._token, session, label=label):
                raise KeyExistsError(f"key {label!r} already exists on {self.token_label!r}")
            public = ops.generate(session, label, algorithm, key_id)
            # Another process may have raced us to the same label: keep the older key.
            cls = ops.p11.ObjectClass
            if len(ops.objects(self._token, session, class_=cls.PRIVATE_KEY, label=label)) > 1:
                for obj in ops.objects(self._token, session, label=label, id=key_id):
                    obj.destroy()
                raise KeyExistsError(f"key {label!r} was created concurrently elsewhere")
            return ops.public_key(public)

        with self._token.admin_lock:
            public = self._run(f"generating key {label!r}", op)
        return PKCS11Signer(self, label, key_id, public, algorithm)

    def load(self, label: str) -> PKCS11Signer:
        """The signer of the key pair labelled ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyNotFoundError: no private key with that label.
            UnsupportedAlgorithmError: a key type or size holdca cannot use, or the
                token lacks the signing mechanism.
            KeyStoreError: several keys with that label, no public key object, or
                another PKCS#11 failure.
        """
        check_label(label)
        ops = self._ops
        a = ops.p11.Attribute

        def op(session: Any) -> tuple[bytes, PublicKey]:
            private, public = ops.find_pair(self._token, session, label)
            return bytes(private[a.ID]), ops.public_key(public)

        key_id, public = self._run(f"loading key {label!r}", op)
        algorithm = SignatureAlgorithm.for_public_key(public)
        self._check_supported(algorithm)
        return PKCS11Signer(self, label, key_id, public, algorithm)

    def labels(self) -> list[str]:
        """Sorted labels of the private keys on the token (labels holdca accepts).

        Raises:
            KeyStoreError: a PKCS#11 failure.
        """
        ops = self._ops
        a = ops.p11.Attribute

        def op(session: Any) -> list[str]:
            if not self._token.logged_in(session):
                raise ops.err.UserNotLoggedIn()
            found = ops.objects(self._token, session, class_=ops.p11.ObjectClass.PRIVATE_KEY)
            return [obj[a.LABEL] for obj in found]

        return sorted({label for label in self._run("listing keys", op) if _valid(label)})

    def delete(self, label: str) -> None:
        """Destroy the private and public key objects labelled ``label``.

        Raises:
            ValueError: ``label`` is not a valid key label.
            KeyNotFoundError: no private key with that label.
            KeyStoreError: a PKCS#11 failure.
        """
        check_label(label)
        ops = self._ops
        cls = ops.p11.ObjectClass

        def op(session: Any) -> None:
            private = ops.objects(self._token, session, class_=cls.PRIVATE_KEY, label=label)
            if not private:
                if not self._token.logged_in(session):
                    raise ops.err.UserNotLoggedIn()
                raise KeyNotFoundError(f"no key {label!r} on token {self.token_label!r}")
            public = ops.objects(self._token, session, class_=cls.PUBLIC_KEY, label=label)
            self._token.epoch += 1  # before: a signer must not reuse a handle from now on
            for obj in private + public:
                obj.destroy()

        with self._token.admin_lock:
            self._run(f"deleting key {label!r}", op)

    # --- Ed25519 (the log key; implemented in holdca.keys.pkcs11_ed25519) -------------

    def generate_ed25519(self, label: str) -> pkcs11_ed25519.PKCS11Ed25519Signer:
        """Generate an Ed25519 key pair on the token: see :mod:`holdca.keys.pkcs11_ed25519`.

        Raises:
            ValueError, KeyExistsError, UnsupportedAlgorithmError, KeyStoreError: as
            :func:`holdca.keys.pkcs11_ed25519.generate_ed25519`.
        """
        return pkcs11_ed25519.generate_ed25519(self._ed25519_access(), label)

    def load_ed25519(self, label: str) -> pkcs11_ed25519.PKCS11Ed25519Signer:
        """The signer of the Ed25519 key ``label``: see :mod:`holdca.keys.pkcs11_ed25519`.

        Raises:
            ValueError, KeyNotFoundError, UnsupportedAlgorithmError, KeyStoreError: as
            :func:`holdca.keys.pkcs11_ed25519.load_ed25519`.
        """
        return pkcs11_ed25519.load_ed25519(self._ed25519_access(), label)

    def _ed25519_access(self) -> pkcs11_ed25519.TokenAccess:
        return pkcs11_ed25519.TokenAccess(self._token, self._module, self._ops, self._run)

    def __repr__(self) -> str:
        mode = "os-locking" if self.os_locking else "serialised"
        return f"<PKCS11KeyStore token={self.token_label!r} module={self.module_path!r} {mode}>"


def _valid(label: object) -> bool:
    if not isinstance(label, str):
        return False
    try:
        check_label(label)
    except ValueError:
        return False
    return True


class PKCS11Signer:
    """A :class:`~holdca.keys.Signer` whose private key stays on a PKCS#11 token.

    Thread-safe: each thread signs on its own session (see the module docstring).
    """

    def __init__(
        self,
        store: PKCS11KeyStore,
        label: str,
        key_id: bytes,
        public: PublicKey,
        algorithm: SignatureAlgorithm,
    ) -> None:
        """Made by :meth:`PKCS11KeyStore.generate` and :meth:`PKCS11KeyStore.load`."""
        self._store = store
        self._token = store._token
        self._module = store._module
        self._ops = store._ops
        self._label = label
        self._id = key_id
        self._public = public
        self._spki = spki_der(public)
        self._algorithm = algorithm
        self._ecdsa = algorithm.is_ecdsa
        self._hash = _HASHES[algorithm.hash.name]
        self._mechanism, self._param = self._ops.sign_params(algorithm)
        self._local = threading.local()

    @property
    def algorithm(self) -> SignatureAlgorithm:
        """The signature algorithm."""
        return self._algorithm

    @property
    def public_key(self) -> PublicKey:
        """The public key, as read from the token when this signer was made."""
        return self._public

    @property
    def label(self) -> str:
        """The key's ``CKA_LABEL``."""
        return self._label

    @property
    def key_id(self) -> bytes:
        """The key's ``CKA_ID``."""
        return self._id

    def _bind(self, session: Any) -> Any:
        """Look the private key up in ``session`` and check it is still this signer's key."""
        ops = self._ops
        epoch = self._token.epoch
        private, public = ops.find_pair(self._token, session, self._label)
        if bytes(private[ops.p11.Attribute.ID]) != self._id or (
            spki_der(ops.public_key(public)) != self._spki
        ):
            raise SignerError(
                f"key {self._label!r} on token {self._token.label!r} is no longer the key "
                "this signer was made for: refusing to sign"
            )
        return remember_key(self._local, session, private, epoch)

    def sign(self, data: bytes) -> bytes:
        """Hash ``data`` and sign the digest on the token.

        Returns:
            DER ``ECDSA-Sig-Value`` for ECDSA, the raw signature for RSA-PSS.

        Raises:
            SignerError: the token failed (raised from the python-pkcs11 error), the
                session could not be restored after one retry, the key was deleted
                (from KeyNotFoundError), the key under the label is no longer this
                signer's key, or the token's signature is malformed or does not verify.
        """
        digest = self._hash(data).digest()
        local = self._local
        raw = sign_in_session(
            token=self._token,
            guard=self._module.guard,
            local=local,
            ops=self._ops,
            label=self._label,
            bind=self._bind,
            sign=lambda key: key.sign(
                digest, mechanism=self._mechanism, mechanism_param=self._param
            ),
        )
        try:
            signature = raw_to_der(raw) if self._ecdsa else bytes(raw)
        except MalformedInputError as exc:
            raise SignerError("the token returned a malformed ECDSA signature") from exc
        if not local.checked:
            self._check(signature, data)
            local.checked = True
        return signature

    def _check(self, signature: bytes, data: bytes) -> None:
        """Verify the first signature after a lookup: never hand out a wrong-key signature."""
        try:
            key = self._public
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, data, ec.ECDSA(self._algorithm.hash))
            else:
                h = self._algorithm.hash
                pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
                key.verify(signature, data, pss, h)
        except InvalidSignature:
            self._local.session = self._local.key = None
            raise SignerError(
                f"the token's signature does not verify with the public key of {self._label!r}: "
                "refusing it"
            ) from None

    def __repr__(self) -> str:
        return f"<PKCS11Signer {self._algorithm.value} {self._label!r} on {self._token.label!r}>"
