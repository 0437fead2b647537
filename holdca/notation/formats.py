"""The two envelope formats notation verifies, and signing in either.

:class:`SignatureFormat` names them (its value is the OCI layer media type);
:func:`sign_in_format` signs with :func:`holdca.notation.envelope.sign_envelope` (JWS) or
:func:`holdca.notation.cose.sign_cose_envelope` (COSE), which take the same arguments.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from holdca.errors import MalformedInputError
from holdca.keys import Signer
from holdca.notation.envelope import CertificateOrDER, Descriptor, sign_envelope

__all__ = ["SignatureFormat", "sign_in_format"]


class SignatureFormat(enum.Enum):
    """A notation signature envelope format; the value is its media type."""

    JWS = "application/jose+json"
    COSE = "application/cose"

    @classmethod
    def parse(cls, text: str, what: str = "signature format") -> SignatureFormat:
        """``jws``/``cose`` or the media type, any case.

        Raises:
            MalformedInputError: anything else (named ``what``).
        """
        if isinstance(text, str):
            wanted = text.strip().lower()
            for member in cls:
                if wanted in (member.name.lower(), member.value):
                    return member
        raise MalformedInputError(
            f"{what}: must be 'jws' or 'cose' ({cls.JWS.value} or {cls.COSE.value}), "
            f"not {str(text)[:64]!r}"
        )


def sign_in_format(
    signature_format: SignatureFormat,
    signer: Signer,
    chain: Sequence[CertificateOrDER],
    descriptor: Descriptor,
    *,
    now: datetime,
    **options: Any,
) -> bytes:
    """The envelope of ``descriptor`` in ``signature_format`` (see the two signers for the
    options and what raises; COSE needs the ``cose`` extra)."""
    if signature_format is SignatureFormat.COSE:
        from holdca.notation.cose import sign_cose_envelope  # noqa: PLC0415 - cbor2 extra

        return sign_cose_envelope(signer, chain, descriptor, now=now, **options)
    return sign_envelope(signer, chain, descriptor, now=now, **options)
