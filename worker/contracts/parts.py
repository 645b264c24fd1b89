"""Validated claim parts, remembered by their raw fields: claims repeat prescribers, products, diagnoses.

``Claim.model_validate`` spends most of its time in the parts' Python validators (the NPI check digit,
the NDC and ICD-10 shapes), and a claim stream names the same few thousand prescribers, products and
diagnoses over and over. A part validated once is frozen, so the same instance can stand in for the
same raw fields in the next claim; pydantic takes an instance of the field's model as it is
(``revalidate_instances="never"``, its default). Only parts that passed validation are remembered, so
a malformed part is validated, and answered with its reject codes, every time it comes.

Patients are not remembered: they are PHI and nearly unique per claim.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.contracts.model import Claim

__all__ = ["ClaimParts"]

_Memo = dict[tuple[Any, Any], Any]
Pending = list[tuple[_Memo, tuple[Any, Any], "Callable[[Claim], Any]"]]


def _key(part: object, first: str, second: str) -> tuple[Any, Any] | None:
    """Return the memo key of a raw part with exactly the fields ``first`` and ``second``, else None."""
    if type(part) is not dict or len(part) != 2 or first not in part or second not in part:  # noqa: PLR2004
        return None
    return (part[first], part[second])


class ClaimParts:
    """Bounded memos of validated prescribers, products and diagnoses; one per codec (not thread-safe).

    Each memo is a plain dict that starts afresh when it holds ``limit`` parts: a hit costs one dict
    lookup (an LRU's bookkeeping cost as much as the lookup on every claim), and a stream's parts are
    back in it after a few thousand claims.
    """

    __slots__ = ("_diagnoses", "_limit", "_prescribers", "_products", "_singles")

    def __init__(self, limit: int = 32_768) -> None:
        self._limit = limit
        self._prescribers: _Memo = {}
        self._products: _Memo = {}
        self._diagnoses: _Memo = {}
        # The parts a claim names once: its field, the two raw fields that key it, its memo, its getter.
        self._singles = (
            ("prescriber", "npi", "taxonomy", self._prescribers, attrgetter("prescriber")),
            ("product", "product_id", "qualifier", self._products, attrgetter("product")),
        )

    def substitute(self, record: dict[str, Any]) -> tuple[dict[str, Any], Pending]:
        """Return ``record`` with remembered parts in place of their raw fields, and what to remember.

        The record itself is not changed (a copy is returned when a part is replaced): a claim that
        fails validation is answered from its raw fields. ``pending`` lists the parts seen for the first
        time; pass it to ``remember`` once the claim has validated.
        """
        pending: Pending = []
        out = dict(record)
        for field, first, second, memo, getter in self._singles:
            key = _key(record.get(field), first, second)
            if key is not None:
                hit = memo.get(key)
                if hit is None:
                    pending.append((memo, key, getter))
                else:
                    out[field] = hit
        raw = record.get("diagnoses")
        if type(raw) is list and raw:
            memo = self._diagnoses
            parts: list[Any] = []
            for index, item in enumerate(raw):
                key = _key(item, "code", "qualifier")
                hit = None if key is None else memo.get(key)
                if hit is None:
                    if key is not None:
                        pending.append((memo, key, _diagnosis(index)))
                    parts.append(item)
                else:
                    parts.append(hit)
            out["diagnoses"] = parts
        return out, pending

    def remember(self, claim: Claim, pending: Pending) -> None:
        """Remember the validated parts ``substitute`` saw for the first time in ``claim``."""
        for memo, key, part in pending:
            if len(memo) >= self._limit:
                memo.clear()
            memo[key] = part(claim)


def _diagnosis(index: int) -> Callable[[Claim], object]:
    return lambda claim: claim.diagnoses[index]
