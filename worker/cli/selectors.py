"""The record selectors ``show-results`` and ``replay`` share: partitions, offset ranges and times.

One parser for each, for argparse's ``type=``: a bad value is argparse's one line and exit 2.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

__all__ = ["moment", "natural", "offsets"]


def natural(text: str) -> int:
    """Parse a whole number of at least 0 (a partition, an offset)."""
    if not text.isdigit():
        msg = f"must be a whole number of at least 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def offsets(text: str) -> tuple[int | None, int | None]:
    """Parse ``A-B``, ``A-`` or ``-B`` (inclusive offsets; an open end is ``None``)."""
    low, dash, high = text.partition("-")
    if not dash or not (low or high) or not all(part.isdigit() for part in (low, high) if part):
        msg = f"must be A-B, A- or -B with whole numbers, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    bounds = (int(low) if low else None, int(high) if high else None)
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        msg = f"the range {text!r} is empty"
        raise argparse.ArgumentTypeError(msg)
    return bounds


def moment(text: str) -> datetime:
    """Parse an ISO date or date-time; a naive one is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"must be an ISO date or time such as 2025-03-01T12:00:00Z, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
