"""CRL partitions: one CRL per CA and issuance period of the leaves' notBefore.

A single CRL per CA grows with every revocation still within retention; notation v1.3
refuses CRLs over 32 MiB (about 700k-950k entries), and every verifier downloads the whole
list. With partitioning, each leaf names in its CRL distribution point the CRL of its own
*period* (the UTC day or ISO week of its notBefore), and that CRL lists only revocations of
certificates whose notBefore falls in that period. Its size is then bounded by one period's
revocations, however many the CA has in total.

* :data:`PARTITIONS`: the period units (``day``, ``week``); :func:`check_partition`.
* :class:`Period` and :func:`period_of`: the period a moment falls in (``2025-01-06`` for a
  day, ``2025-W02`` for an ISO week); :func:`parse_period` reads one back from a URL.
* :func:`crl_issuer_key`: the ledger key whose CRL numbers a partition uses
  (``<ca_id>/<period>``: strictly increasing per CA and partition).
* :func:`leaf_not_before`: the notBefore a :class:`~holdca.pki.LeafTemplate` writes for a
  leaf issued at ``now`` (the service picks the leaf's period from it).

Period keys carry their unit, so a partition URL stays answerable after the operator
changes the unit: leaves issued under ``day`` keep naming their day's CRL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from cryptography import x509

from holdca.errors import ConfigError, MalformedInputError
from holdca.pki.rules import DEFAULT_BACKDATE, window_within

__all__ = [
    "DEFAULT_CRL_PARTITION",
    "PARTITIONS",
    "Period",
    "check_partition",
    "crl_issuer_key",
    "leaf_not_before",
    "parse_period",
    "period_from_url",
    "period_of",
]

PARTITIONS: Final = ("day", "week")
"""The period units a hold can partition its leaves' CRLs by."""

DEFAULT_CRL_PARTITION: Final = "day"
"""The unit a hold uses unless configured otherwise (``None`` turns partitioning off)."""

_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")


@dataclass(frozen=True, slots=True)
class Period:
    """One issuance period: leaves with ``start <= notBefore < end`` share a CRL.

    Attributes:
        key: how URLs name it: ``YYYY-MM-DD`` (a UTC day) or ``YYYY-Www`` (an ISO week).
        start: its first instant (UTC midnight).
        end: the first instant after it.
    """

    key: str
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls in this period."""
        return self.start <= moment < self.end


def check_partition(unit: object) -> str | None:
    """``unit`` if it is one of :data:`PARTITIONS` or None (no partitioning).

    Raises:
        ConfigError: any other value.
    """
    if unit is None or (isinstance(unit, str) and unit in PARTITIONS):
        return unit
    raise ConfigError(f"CRL partition must be one of {', '.join(PARTITIONS)} or none: {unit!r}")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def period_of(moment: datetime, unit: str) -> Period:
    """The period of unit ``unit`` (``day`` or ``week``) that ``moment`` falls in.

    Raises:
        ConfigError: an unknown unit.
        ValueError: ``moment`` is naive.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    day = moment.astimezone(UTC).date()
    if unit == "day":
        return Period(day.isoformat(), _midnight(day), _midnight(day + timedelta(days=1)))
    if unit == "week":
        year, week, weekday = day.isocalendar()
        monday = day - timedelta(days=weekday - 1)
        start = _midnight(monday)
        return Period(f"{year:04d}-W{week:02d}", start, start + timedelta(days=7))
    check_partition(unit)
    raise ConfigError(f"CRL partition must be one of {', '.join(PARTITIONS)}: {unit!r}")


def parse_period(text: str) -> Period:
    """The period a URL names (``YYYY-MM-DD`` or ``YYYY-Www``, as :func:`period_of` writes).

    Raises:
        MalformedInputError: anything else (an impossible date or week included).
    """
    if len(text) > 10:
        raise MalformedInputError("a CRL period is YYYY-MM-DD (a day) or YYYY-Www (a week)")
    try:
        if match := _DAY.fullmatch(text):
            day = date(int(match[1]), int(match[2]), int(match[3]))
            return period_of(_midnight(day), "day")
        if match := _WEEK.fullmatch(text):
            monday = date.fromisocalendar(int(match[1]), int(match[2]), 1)
            found = period_of(_midnight(monday), "week")
            if found.key == text:
                return found
    except ValueError:
        pass
    raise MalformedInputError(
        f"not a CRL period: {text[:12]!r} (YYYY-MM-DD for a day, YYYY-Www for an ISO week)"
    )


def period_from_url(text: str | None) -> Period | None:
    """The period a CRL URL names, or None for the CA's full CRL (absent, empty or ``all``).

    Raises:
        MalformedInputError: a value that is neither ``all`` nor a period key.
    """
    if text is None or text in ("", "all"):
        return None
    return parse_period(text)


def crl_issuer_key(ca_id: str, period: Period | None) -> str:
    """The ledger key whose CRL numbers the CRL of ``ca_id`` (and ``period``) uses.

    The full CRL of a CA uses the CA id itself (as before partitioning); a partition CRL
    ``<ca_id>/<period key>``, so each has its own strictly increasing numbers.
    """
    return ca_id if period is None else f"{ca_id}/{period.key}"


def leaf_not_before(
    now: datetime, issuer_cert: x509.Certificate, backdate: timedelta = DEFAULT_BACKDATE
) -> datetime:
    """The notBefore of a leaf issued at ``now`` under ``issuer_cert`` (as the template clamps it).

    Raises:
        ProfileError: the issuer is not valid at ``now``.
        TypeError, ValueError: ``now`` is not a timezone-aware datetime.
    """
    bounds = (issuer_cert.not_valid_before_utc, issuer_cert.not_valid_after_utc)
    return window_within(bounds, now.replace(microsecond=0), timedelta(seconds=1), backdate)[0]
