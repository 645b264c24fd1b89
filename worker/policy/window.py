"""The approval window: from the date of service through the day before its anniversary, inclusive."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

__all__ = ["approval_window"]

_ONE_DAY = timedelta(days=1)


def approval_window(effective: date, years: int) -> tuple[date, date]:
    """Return ``(effective, expiration)`` for an approval of ``years`` years, both ends inclusive.

    The expiration is the day before the anniversary (2025-03-10 -> 2026-03-09). The anniversary of
    29 February in a non-leap year is 1 March, so 2024-02-29 -> 2025-02-28 (docs/policy.md §6). A window
    that would end after 9999-12-31 ends on 9999-12-31. Never raises for ``years >= 1``.
    """
    year = effective.year + years
    if year > date.max.year:
        return effective, date.max
    if effective.month == 2 and effective.day == 29 and not calendar.isleap(year):  # noqa: PLR2004 - February
        anniversary = date(year, 3, 1)
    else:
        anniversary = effective.replace(year=year)
    return effective, anniversary - _ONE_DAY
