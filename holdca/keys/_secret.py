"""A holder for secrets (PINs, passphrases) that never shows its content.

Example::

    pin = Secret(b"1234")
    repr(pin)        # "<redacted>"
    pin.reveal()     # b"1234", only where the backend needs it
"""

from __future__ import annotations

import hmac

__all__ = ["Secret"]


class Secret:
    """Bytes that ``repr``, ``str``, ``vars`` and pickling do not reveal.

    Used by the PEM and PKCS#11 backends so that a debugger, a log line or an
    exception that prints the store never prints the PIN or the passphrase.
    """

    __slots__ = ("__value",)

    def __init__(self, value: bytes) -> None:
        """Hold ``value`` (which must be bytes)."""
        if not isinstance(value, bytes):
            raise TypeError("a secret must be bytes")
        self.__value = value

    def reveal(self) -> bytes:
        """The secret itself; pass it straight to the backend call that needs it."""
        return self.__value

    def matches(self, other: Secret) -> bool:
        """Constant-time comparison with another secret."""
        return hmac.compare_digest(self.__value, other.__value)

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("secrets cannot be pickled")
