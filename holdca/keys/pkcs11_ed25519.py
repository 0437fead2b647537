"""Ed25519 keys on a PKCS#11 token (the transparency log key of a pkcs11 hold).

:meth:`PKCS11KeyStore.generate_ed25519 <holdca.keys.pkcs11.PKCS11KeyStore.generate_ed25519>`
and ``load_ed25519`` come here. The key pair is generated on the token with
``CKM_EC_EDWARDS_KEY_PAIR_GEN`` (``CKK_EC_EDWARDS``, ``CKA_EC_PARAMS`` = the DER OID
1.3.101.112); the private key is ``CKA_TOKEN``, ``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``, ``CKA_PRIVATE`` and can only sign. :class:`PKCS11Ed25519Signer`
signs with ``CKM_EDDSA`` (pure Ed25519, RFC 8032, no parameters) and has the interface
of :class:`~holdca.keys.ed25519.MemoryEd25519Signer` that
:class:`~holdca.tlog.note.Ed25519NoteSigner` needs (``public_key``, ``sign``).

The guarantees of :class:`~holdca.keys.pkcs11.PKCS11Signer` hold here too: one session
per thread (or the module's lock when it cannot lock itself), a lost session is
re-opened once, every lookup must find the same ``CKA_ID`` and public key as when the
signer was made, and the first signature after a lookup is verified before it is
returned.

Example::

    store = PKCS11KeyStore(module, "hold", pin=os.environ["PIN"])
    log_key = store.generate_ed25519("hold-log")
    signature = log_key.sign(b"message")        # 64 raw bytes
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from holdca.errors import (
    KeyExistsError,
    KeyStoreError,
    SignerError,
    UnsupportedAlgorithmError,
)
from holdca.keys._base import check_label
from holdca.keys.ed25519 import ed25519_public_bytes
from holdca.keys.pkcs11_session import remember_key, sign_in_session

__all__ = [
    "ED25519_EC_PARAMS",
    "PKCS11Ed25519Signer",
    "TokenAccess",
    "generate_ed25519",
    "load_ed25519",
]

T = TypeVar("T")

#: DER of the OID id-Ed25519 (1.3.101.112), the ``CKA_EC_PARAMS`` holdca writes.
ED25519_EC_PARAMS = bytes.fromhex("06032b6570")
# What other tools write for Ed25519: the OID, or PrintableString "edwards25519" (PKCS#11 3.0).
_ACCEPTED_PARAMS = {ED25519_EC_PARAMS, b"\x13\x0c" + b"edwards25519"}


@dataclass(frozen=True)
class TokenAccess:
    """What a :class:`~holdca.keys.pkcs11.PKCS11KeyStore` lends this module.

    ``token``, ``module`` and ``ops`` are the store's token, module and python-pkcs11
    helpers; ``run(what, op)`` runs ``op(session)`` on this thread's session the way the
    store does (one recovery, PKCS#11 errors mapped to KeyStoreError).
    """

    token: Any
    module: Any
    ops: Any
    run: Callable[[str, Callable[[Any], Any]], Any]


def _check_supported(access: TokenAccess) -> None:
    m = access.ops.p11.Mechanism
    have = access.token.mechanisms
    if m.EC_EDWARDS_KEY_PAIR_GEN not in have or m.EDDSA not in have:
        raise UnsupportedAlgorithmError(
            f"token {access.token.label!r} lacks the mechanisms for Ed25519 "
            "(CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA)"
        )


def _public_key(access: TokenAccess, public: Any, label: str) -> ed25519.Ed25519PublicKey:
    """The Ed25519 public key of a token public key object.

    Raises:
        UnsupportedAlgorithmError: not an Ed25519 key (another key type, Ed448).
        KeyStoreError: the ``CKA_EC_POINT`` is malformed.
    """
    p11 = access.ops.p11
    a = p11.Attribute
    if public[a.KEY_TYPE] != p11.KeyType.EC_EDWARDS:
        raise UnsupportedAlgorithmError(f"key {label!r} is not an Ed25519 key")
    if bytes(public[a.EC_PARAMS]) not in _ACCEPTED_PARAMS:
        raise UnsupportedAlgorithmError(f"key {label!r} is an Edwards key but not Ed25519")
    point = bytes(public[a.EC_POINT])
    if len(point) == 34 and point[:2] == b"\x04\x20":  # DER OCTET STRING (SoftHSM)
        point = point[2:]
    if len(point) != 32:
        raise KeyStoreError(f"key {label!r} has a malformed CKA_EC_POINT ({len(point)} bytes)")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    except ValueError as exc:  # pragma: no cover - any 32 bytes load
        raise KeyStoreError(f"key {label!r} has a malformed public key") from exc


def generate_ed25519(access: TokenAccess, label: str) -> PKCS11Ed25519Signer:
    """Generate an Ed25519 key pair on the token under ``label``.

    Raises:
        ValueError: ``label`` is not a valid key label.
        KeyExistsError: an object with that label exists; nothing is changed.
        UnsupportedAlgorithmError: the token lacks the EdDSA mechanisms.
        KeyStoreError: another PKCS#11 failure.
    """
    check_label(label)
    _check_supported(access)
    ops, token = access.ops, access.token
    p11 = ops.p11
    a = p11.Attribute
    key_id = secrets.token_bytes(16)

    def op(session: Any) -> ed25519.Ed25519PublicKey:
        if not token.logged_in(session):  # private keys would be invisible
            raise ops.err.UserNotLoggedIn()
        if ops.objects(token, session, label=label):
            raise KeyExistsError(f"key {label!r} already exists on {token.label!r}")
        params = session.create_domain_parameters(
            p11.KeyType.EC_EDWARDS, {a.EC_PARAMS: ED25519_EC_PARAMS}, local=True
        )
        public, _private = params.generate_keypair(
            store=True,
            label=label,
            id=key_id,
            capabilities=p11.MechanismFlag.SIGN | p11.MechanismFlag.VERIFY,
            private_template={
                a.EXTRACTABLE: False,
                a.SENSITIVE: True,
                a.PRIVATE: True,
                a.TOKEN: True,
                a.SIGN: True,
                a.DERIVE: False,
            },
        )
        cls = p11.ObjectClass
        if len(ops.objects(token, session, class_=cls.PRIVATE_KEY, label=label)) > 1:
            for obj in ops.objects(token, session, label=label, id=key_id):
                obj.destroy()
            raise KeyExistsError(f"key {label!r} was created concurrently elsewhere")
        return _public_key(access, public, label)

    with token.admin_lock:
        public: ed25519.Ed25519PublicKey = access.run(f"generating Ed25519 key {label!r}", op)
    return PKCS11Ed25519Signer(access, label, key_id, public)


def load_ed25519(access: TokenAccess, label: str) -> PKCS11Ed25519Signer:
    """The Ed25519 signer of the key pair labelled ``label``.

    Raises:
        ValueError: ``label`` is not a valid key label.
        KeyNotFoundError: no private key with that label.
        UnsupportedAlgorithmError: the key is not Ed25519, or the token lacks CKM_EDDSA.
        KeyStoreError: several keys with that label, no public key object, or another
            PKCS#11 failure.
    """
    check_label(label)
    ops = access.ops

    def op(session: Any) -> tuple[bytes, ed25519.Ed25519PublicKey]:
        private, public = ops.find_pair(access.token, session, label)
        return bytes(private[ops.p11.Attribute.ID]), _public_key(access, public, label)

    key_id, public = access.run(f"loading Ed25519 key {label!r}", op)
    _check_supported(access)
    return PKCS11Ed25519Signer(access, label, key_id, public)


class PKCS11Ed25519Signer:
    """An :class:`~holdca.keys.ed25519.Ed25519Signer` whose key stays on a PKCS#11 token.

    Thread-safe: each thread signs on its own session.
    """

    def __init__(
        self, access: TokenAccess, label: str, key_id: bytes, public: ed25519.Ed25519PublicKey
    ) -> None:
        """Made by :func:`generate_ed25519` and :func:`load_ed25519`."""
        self._access = access
        self._token = access.token
        self._ops = access.ops
        self._label = label
        self._id = key_id
        self._public = public
        self._raw = ed25519_public_bytes(public)
        self._local = threading.local()

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
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
        try:
            same = bytes(private[ops.p11.Attribute.ID]) == self._id and (
                ed25519_public_bytes(_public_key(self._access, public, self._label)) == self._raw
            )
        except (UnsupportedAlgorithmError, KeyStoreError):
            same = False
        if not same:
            raise SignerError(
                f"key {self._label!r} on token {self._token.label!r} is no longer the key "
                "this signer was made for: refusing to sign"
            )
        return remember_key(self._local, session, private, epoch)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``, made on the token (``CKM_EDDSA``).

        Raises:
            SignerError: ``data`` is not bytes; the token failed (raised from the
                python-pkcs11 error); the session could not be restored after one retry;
                the key was deleted or is no longer this signer's key; or the token's
                signature is not 64 bytes or does not verify with the public key.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SignerError(f"cannot sign a {type(data).__name__}")
        message = bytes(data)
        local = self._local
        mechanism = self._ops.p11.Mechanism.EDDSA
        signature = sign_in_session(
            token=self._token,
            guard=self._access.module.guard,
            local=local,
            ops=self._ops,
            label=self._label,
            bind=self._bind,
            sign=lambda key: bytes(key.sign(message, mechanism=mechanism)),
        )
        if len(signature) != 64:
            raise SignerError(
                f"the token returned a {len(signature)}-byte Ed25519 signature, not 64"
            )
        if not local.checked:
            self._check(signature, message)
            local.checked = True
        return signature

    def _check(self, signature: bytes, data: bytes) -> None:
        """Verify the first signature after a lookup: never hand out a wrong-key signature."""
        try:
            self._public.verify(signature, data)
        except InvalidSignature:
            self._local.session = self._local.key = None
            raise SignerError(
                f"the token's signature does not verify with the public key of {self._label!r}: "
                "refusing it"
            ) from None

    def __repr__(self) -> str:
        return f"<PKCS11Ed25519Signer {self._label!r} on {self._token.label!r}>"
