"""The closed label sets of the worker's metrics: the catch-all ``OTHER``, the code check and the enums."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LABEL_VALUE", "OTHER", "RebalanceKind", "TransactionResult", "closed_set"]

OTHER = "OTHER"
"""Label value for a criterion id or reason code outside the set declared at construction."""

# Declared label values must look like codes, not data: this keeps a caller from passing free text.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TransactionResult(StrEnum):
    """How a batch's Kafka transaction ended."""

    COMMITTED = "committed"
    ABORTED = "aborted"


class RebalanceKind(StrEnum):
    """Which consumer-rebalance callback fired."""

    ASSIGNED = "assigned"
    REVOKED = "revoked"
    LOST = "lost"


def closed_set(values: Iterable[str], what: str) -> tuple[str, ...]:
    """Return the declared label values plus ``OTHER``, in order, without duplicates.

    Raises ``ValueError`` when a value does not look like a code.
    """
    out: list[str] = []
    for value in values:
        if not LABEL_VALUE.match(value):
            msg = f"{what} must match {LABEL_VALUE.pattern}"
            raise ValueError(msg)
        if value not in out:
            out.append(value)
    if OTHER not in out:
        out.append(OTHER)
    return tuple(out)
