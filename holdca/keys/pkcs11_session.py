"""One signature on a PKCS#11 token through the calling thread's session, shared by the
ECDSA/RSA signer (:mod:`holdca.keys.pkcs11`) and the Ed25519 one
(:mod:`holdca.keys.pkcs11_ed25519`).

Each thread keeps the session it last used and the private key object found in it
(``local.session``, ``local.key``, ``local.epoch``); a key object is reused only in the
session it was found in and while the token has not been re-opened (its ``epoch``). A
lost session (the recoverable python-pkcs11 errors) is re-opened once, after logging in
again; a second failure gives up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from holdca.errors import KeyStoreError, SignerError

__all__ = ["remember_key", "sign_in_session"]

T = TypeVar("T")


def remember_key(local: Any, session: Any, key: Any, epoch: int) -> Any:
    """Keep ``key`` (just found and checked in ``session`` at token ``epoch``) as this
    thread's, its first signature still to be verified; returns ``key``."""
    local.session = session
    local.key = key
    local.epoch = epoch
    local.checked = False
    return key


def sign_in_session(
    *,
    token: Any,
    guard: Any,
    local: Any,
    ops: Any,
    label: str,
    bind: Callable[[Any], Any],
    sign: Callable[[Any], T],
) -> T:
    """``sign(key)`` with this thread's key object for ``label`` (``bind(session)`` finds
    and checks it when the thread has none for the current session), under ``guard``.

    Raises:
        SignerError: the token failed (raised from the python-pkcs11 error), the session
            could not be restored after one retry, or ``bind`` refused (KeyStoreError).
    """
    for attempt in (0, 1):
        session = None
        try:
            session = token.session()
            with guard:
                key = (
                    local.key
                    if getattr(local, "session", None) is session and local.epoch == token.epoch
                    else None
                )
                if key is None:
                    key = bind(session)
                return sign(key)
        except ops.recoverable as exc:
            local.session = local.key = None
            if attempt:
                raise SignerError(
                    f"signing with {label!r} failed again after re-opening the session: giving up"
                ) from exc
            try:
                token.recover(session)
            except KeyStoreError as exc2:
                raise SignerError(f"cannot log in to {token.label!r} again") from exc2
        except KeyStoreError as exc:
            raise SignerError(f"cannot use key {label!r}: {exc}") from exc
        except ops.err.PKCS11Error as exc:
            raise SignerError(f"the token failed to sign ({type(exc).__name__})") from exc
    raise AssertionError("unreachable")  # pragma: no cover
