"""PKCS#11 plumbing for :mod:`holdca.keys.pkcs11`: modules, tokens, logins, sessions.

This private module imports python-pkcs11 at import time; :mod:`holdca.keys.pkcs11`
imports it lazily so that holdca works without the ``pkcs11`` extra.

Why the ctypes below (the full story is in ``docs/keys.md``): python-pkcs11 0.10.1
always calls ``C_Initialize(NULL)``. For a NULL argument SoftHSM disables its mutexes
("no concurrent access by multiple threads"), and python-pkcs11 only serialises calls
within one session, so two threads with two sessions crash the process. holdca
therefore, the first time it loads a module in a process, finalises it and initialises
it again through the module's own function list with
``CK_C_INITIALIZE_ARGS{flags = CKF_OS_LOCKING_OK}``, on the same dlopen handle that
python-pkcs11 uses. python-pkcs11's ``lib`` object stays valid (its function list is
the module's static table and its ``initialized`` flag stays true). When that is not
possible (the module was already loaded by other code in this process, which may hold
sessions; or the module answers ``CKR_CANT_LOCK``), every PKCS#11 call on that module
is serialised with one lock instead: safe, but not faster with more threads.

Logins: PKCS#11 login state belongs to the application, not the session. holdca keeps
one *anchor* session per token, logged in once through ``C_Login`` (ctypes, so that
python-pkcs11 never calls ``C_Logout`` when a session object is closed). Every thread
gets its own session, opened lazily without a PIN and closed when the thread ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import weakref
from typing import Any

import pkcs11
import pkcs11.exceptions as p11e

from holdca.errors import KeyStoreError, PINIncorrectError, TokenNotFoundError
from holdca.keys._secret import Secret

__all__ = [
    "RECOVERABLE",
    "Module",
    "Token",
    "load_module",
    "open_token",
]

log = logging.getLogger("holdca.keys.pkcs11")

# --- the few PKCS#11 C types and constants the ctypes calls need ----------------------

CK_RV = ctypes.c_ulong
CK_ULONG = ctypes.c_ulong
CKF_OS_LOCKING_OK = 0x00000002
CKR_OK = 0x000
CKR_CANT_LOCK = 0x00A
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_INVALID = 0x0A1
CKR_PIN_LEN_RANGE = 0x0A2
CKR_PIN_EXPIRED = 0x0A3
CKR_PIN_LOCKED = 0x0A4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKU_USER = 1
CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3


class _CkVersion(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _CkInitializeArgs(ctypes.Structure):
    _fields_ = (
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", CK_ULONG),
        ("pReserved", ctypes.c_void_p),
    )


class _CkSessionInfo(ctypes.Structure):
    _fields_ = (
        ("slotID", CK_ULONG),
        ("state", CK_ULONG),
        ("flags", CK_ULONG),
        ("ulDeviceError", CK_ULONG),
    )


_F_VOIDP = ctypes.CFUNCTYPE(CK_RV, ctypes.c_void_p)
_F_ULONG = ctypes.CFUNCTYPE(CK_RV, CK_ULONG)
_F_LOGIN = ctypes.CFUNCTYPE(CK_RV, CK_ULONG, CK_ULONG, ctypes.c_char_p, CK_ULONG)
_F_SESSION_INFO = ctypes.CFUNCTYPE(CK_RV, CK_ULONG, ctypes.POINTER(_CkSessionInfo))


class _CkFunctionList(ctypes.Structure):
    # PKCS#11 v2.40 section 5.2, in order, up to the last function holdca calls.
    _fields_ = (
        ("version", _CkVersion),
        ("C_Initialize", _F_VOIDP),
        ("C_Finalize", _F_VOIDP),
        ("C_GetInfo", ctypes.c_void_p),
        ("C_GetFunctionList", ctypes.c_void_p),
        ("C_GetSlotList", ctypes.c_void_p),
        ("C_GetSlotInfo", ctypes.c_void_p),
        ("C_GetTokenInfo", ctypes.c_void_p),
        ("C_GetMechanismList", ctypes.c_void_p),
        ("C_GetMechanismInfo", ctypes.c_void_p),
        ("C_InitToken", ctypes.c_void_p),
        ("C_InitPIN", ctypes.c_void_p),
        ("C_SetPIN", ctypes.c_void_p),
        ("C_OpenSession", ctypes.c_void_p),
        ("C_CloseSession", _F_ULONG),
        ("C_CloseAllSessions", _F_ULONG),
        ("C_GetSessionInfo", _F_SESSION_INFO),
        ("C_GetOperationState", ctypes.c_void_p),
        ("C_SetOperationState", ctypes.c_void_p),
        ("C_Login", _F_LOGIN),
    )


# Errors after which a fresh session (and, if needed, a fresh login) may succeed.
RECOVERABLE: tuple[type[Exception], ...] = (
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
    p11e.UserNotLoggedIn,
    p11e.KeyHandleInvalid,
    p11e.ObjectHandleInvalid,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
)


class Module:
    """One loaded PKCS#11 module (one per real path per process)."""

    def __init__(self, path: str, lib: Any, functions: Any, os_locking: bool) -> None:
        self.path = path
        self.lib = lib
        self.functions = functions
        self.os_locking = os_locking
        # The guard every PKCS#11 call runs under: a no-op when the module locks itself.
        self.guard: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if os_locking else threading.RLock()
        )
        self.tokens: dict[str, Token] = {}
        self.tokens_lock = threading.Lock()


_MODULES: dict[str, Module] = {}
_MODULES_LOCK = threading.Lock()
REINITIALISED: dict[str, int] = {}
"""How often each module was re-initialised with OS locking in this process (tests)."""


def _mapped(path: str) -> bool:
    """Whether ``path`` is already dlopen'ed in this process (by anyone)."""
    try:
        ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return False
    return True


def _function_list(path: str) -> Any:
    """The module's CK_FUNCTION_LIST, through the dlopen handle python-pkcs11 opened."""
    handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    get = handle.C_GetFunctionList
    get.restype = CK_RV
    get.argtypes = (ctypes.POINTER(ctypes.POINTER(_CkFunctionList)),)
    table = ctypes.POINTER(_CkFunctionList)()
    rv = get(ctypes.byref(table))
    if rv != CKR_OK or not ctypes.cast(table, ctypes.c_void_p).value:
        raise KeyStoreError(f"C_GetFunctionList of PKCS#11 module {path!r} failed (0x{rv:x})")
    return table.contents


def _reinitialise_with_os_locking(path: str, functions: Any) -> bool:
    """C_Finalize, then C_Initialize with CKF_OS_LOCKING_OK; False if the module can't lock."""
    rv = functions.C_Finalize(None)
    if rv != CKR_OK:
        raise KeyStoreError(f"C_Finalize of PKCS#11 module {path!r} failed (0x{rv:x})")
    args = _CkInitializeArgs(flags=CKF_OS_LOCKING_OK)
    rv = functions.C_Initialize(ctypes.cast(ctypes.pointer(args), ctypes.c_void_p))
    if rv == CKR_OK:
        REINITIALISED[path] = REINITIALISED.get(path, 0) + 1
        return True
    # Put the module back the way python-pkcs11 had it.
    rv2 = functions.C_Initialize(None)
    if rv2 != CKR_OK:
        raise KeyStoreError(
            f"PKCS#11 module {path!r} could not be initialised again (0x{rv:x}, 0x{rv2:x})"
        )
    log.warning(
        "PKCS#11 module %s refused CKF_OS_LOCKING_OK (0x%x): serialising all calls", path, rv
    )
    return False


def _loaded_elsewhere(real: str) -> Any:
    """python-pkcs11's own lib object for ``real`` if other code loaded it, else None."""
    loaded: dict[str, Any] = getattr(pkcs11, "_loaded", {})
    for name, lib in list(loaded.items()):
        with contextlib.suppress(OSError):
            if os.path.realpath(name) == real:
                return lib
    return None


def load_module(path: str, *, os_locking: bool = True) -> Module:
    """Load (once per process) the PKCS#11 module at ``path`` and make it thread-safe.

    Raises:
        KeyStoreError: the file is missing or is not a loadable PKCS#11 module.
    """
    if not os.path.isfile(path):
        raise KeyStoreError(f"PKCS#11 module {path!r} does not exist or is not a file")
    real = os.path.realpath(path)
    with _MODULES_LOCK:
        module = _MODULES.get(real)
        if module is not None:
            return module
        lib = _loaded_elsewhere(real)
        preloaded = lib is not None or _mapped(real)
        try:
            if lib is None:
                lib = pkcs11.lib(real)
            functions = _function_list(real)
        except KeyStoreError:
            raise
        except (p11e.PKCS11Error, OSError, AttributeError) as exc:
            raise KeyStoreError(f"cannot load PKCS#11 module {path!r}") from exc
        locking = False
        if os_locking and not preloaded:
            locking = _reinitialise_with_os_locking(real, functions)
        elif os_locking:
            log.warning(
                "PKCS#11 module %s was loaded by other code in this process: not "
                "re-initialising it with OS locking; serialising all calls",
                real,
            )
        module = Module(real, lib, functions, locking)
        _MODULES[real] = module
        return module


def _close_quietly(module: Module, session: Any) -> None:
    with contextlib.suppress(Exception), module.guard:
        session.close()


class _ThreadSession:
    """A thread's own session; closed when the thread (and so this object) goes away."""

    def __init__(self, module: Module, session: Any) -> None:
        self.session = session
        self._finalizer = weakref.finalize(self, _close_quietly, module, session)
        self._finalizer.atexit = False

    def close(self) -> None:
        self._finalizer()


class Token:
    """A logged-in token: one anchor session, one session per thread."""

    def __init__(self, module: Module, label: str, token: Any, pin: Secret) -> None:
        self.module = module
        self.label = label
        self.token = token
        self.slot_id: int = token.slot.slot_id
        self.pin = pin
        self.relogins = 0
        # Bumped whenever holdca deletes a key on this token: signers then look their key
        # up again, so a reused object handle can never point them at another key.
        self.epoch = 0
        self.admin_lock = threading.RLock()
        self._recover_lock = threading.Lock()
        self._local = threading.local()
        self._anchor: Any = None
        with module.guard:
            self.mechanisms: frozenset[Any] = frozenset(token.slot.get_mechanisms())
        self._anchor = self._login(first=True)

    # --- login ---------------------------------------------------------------------

    def _login(self, *, first: bool) -> Any:
        """Open a session and C_Login on it; return the session.

        Raises:
            PINIncorrectError: the token rejected the PIN.
            KeyStoreError: no session could be opened (raised from the PKCS#11 error),
                the PIN is locked or expired, or C_Login failed otherwise.
        """
        try:
            with self.module.guard:
                session = self.token.open(rw=True)
        except p11e.PKCS11Error as exc:  # e.g. TokenNotPresent: the token was removed
            raise KeyStoreError(
                f"cannot open a session on token {self.label!r} ({type(exc).__name__})"
            ) from exc
        with self.module.guard:
            pin = self.pin.reveal()
            rv = self.module.functions.C_Login(session.handle, CKU_USER, pin, len(pin))
        if rv == CKR_OK or (rv == CKR_USER_ALREADY_LOGGED_IN and not first):
            return session
        _close_quietly(self.module, session)
        where = f"token {self.label!r}"
        if rv in (CKR_PIN_INCORRECT, CKR_PIN_INVALID, CKR_PIN_LEN_RANGE):
            raise PINIncorrectError(f"{where} rejected the PIN")
        if rv == CKR_PIN_LOCKED:
            raise KeyStoreError(f"the user PIN of {where} is locked")
        if rv == CKR_PIN_EXPIRED:
            raise KeyStoreError(f"the user PIN of {where} has expired")
        if rv == CKR_USER_ALREADY_LOGGED_IN:
            raise KeyStoreError(
                f"{where} is already logged in by other code in this process; "
                "holdca cannot check the PIN"
            )
        raise KeyStoreError(f"C_Login on {where} failed (CKR 0x{rv:x})")

    def alive(self, session: Any) -> bool:
        """Whether ``session`` is still open (C_GetSessionInfo succeeds)."""
        info = _CkSessionInfo()
        with self.module.guard:
            rv = self.module.functions.C_GetSessionInfo(session.handle, ctypes.byref(info))
        return bool(rv == CKR_OK)

    def logged_in(self, session: Any) -> bool:
        """Whether ``session`` (and so this application) is logged in as the user."""
        info = _CkSessionInfo()
        with self.module.guard:
            rv = self.module.functions.C_GetSessionInfo(session.handle, ctypes.byref(info))
        return rv == CKR_OK and info.state in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS)

    # --- sessions --------------------------------------------------------------------

    def session(self) -> Any:
        """This thread's session (opened on first use, without a PIN)."""
        holder: _ThreadSession | None = getattr(self._local, "holder", None)
        if holder is None:
            with self.module.guard:
                session = self.token.open(rw=True)
            holder = _ThreadSession(self.module, session)
            self._local.holder = holder
        return holder.session

    def recover(self, failed: Any) -> None:
        """After ``failed`` (this thread's session) broke: drop it, and log in again if lost.

        Raises:
            PINIncorrectError, KeyStoreError: the login could not be restored.
        """
        holder: _ThreadSession | None = getattr(self._local, "holder", None)
        if holder is not None and holder.session is failed:
            self._local.holder = None
            holder.close()
        with self._recover_lock:
            anchor = self._anchor
            if anchor is not None and self.logged_in(anchor):
                return
            log.info("PKCS#11 token %r lost its login: opening a session, logging in", self.label)
            self._anchor = self._login(first=False)
            if anchor is not None:
                _close_quietly(self.module, anchor)
            self.relogins += 1

    def close_all_sessions(self) -> None:
        """C_CloseAllSessions on the token's slot: what a token reset does (for tests)."""
        with self.module.guard:
            self.module.functions.C_CloseAllSessions(self.slot_id)


def open_token(module: Module, label: str, pin: Secret) -> Token:
    """The logged-in :class:`Token` labelled ``label`` (shared per module and label).

    Raises:
        TokenNotFoundError: no token with that label (or several).
        PINIncorrectError: the token rejected the PIN, or this process already logged
            in to the token with a different PIN.
        KeyStoreError: another PKCS#11 failure (raised from it).
    """
    with module.tokens_lock:
        existing = module.tokens.get(label)
        if existing is not None:
            if not existing.pin.matches(pin):
                raise PINIncorrectError(
                    f"the PIN differs from the one this process logged in to token {label!r} with"
                )
            return existing
        try:
            with module.guard:
                found = module.lib.get_token(token_label=label)
        except p11e.NoSuchToken:
            raise TokenNotFoundError(f"no token labelled {label!r} in {module.path!r}") from None
        except p11e.MultipleTokensReturned as exc:
            raise TokenNotFoundError(f"several tokens are labelled {label!r}") from exc
        except p11e.PKCS11Error as exc:
            raise KeyStoreError(f"cannot list the tokens of {module.path!r}") from exc
        try:
            token = Token(module, label, found, pin)
        except p11e.PKCS11Error as exc:
            raise KeyStoreError(f"cannot open a session on token {label!r}") from exc
        module.tokens[label] = token
        return token
