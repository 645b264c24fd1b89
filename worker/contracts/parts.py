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

from typing import TYPE_CHECKING, Any

from worker.lru import LruMemo

if TYPE_CHECKING:
    from collections.abc import Callable

    from worker.contracts.model import Claim

__all__ = ["ClaimParts"]

_PRESCRIBER_FIELDS = frozenset({"npi", "taxonomy"})
_PRODUCT_FIELDS = frozenset({"product_id", "qualifier"})
_DIAGNOSIS_FIELDS = frozenset({"code", "qualifier"})

Pending = list[tuple[LruMemo[tuple[Any, ...], Any], tuple[Any, ...], "Callable[[Claim], Any]"]]


def _key(part: object, fields: frozenset[str], first: str, second: str) -> tuple[Any, ...] | None:
    """Return the memo key of a raw part with exactly ``fields`` (their values), else None."""
    if type(part) is not dict or part.keys() != fields:
        return None
    return (part[first], part[second])


class ClaimParts:
    """Bounded memos of validated prescribers, products and diagnoses; one per codec (not thread-safe)."""

    __slots__ = ("_diagnoses", "_prescribers", "_products")

    def __init__(self, limit: int = 32_768) -> None:
        self._prescribers: LruMemo[tuple[Any, ...], Any] = LruMemo(limit)
        self._products: LruMemo[tuple[Any, ...], Any] = LruMemo(limit)
        self._diagnoses: LruMemo[tuple[Any, ...], Any] = LruMemo(limit)

    def substitute(self, record: dict[str, Any]) -> tuple[dict[str, Any], Pending]:
        """Return ``record`` with remembered parts in place of their raw fields, and what to remember.

        The record itself is not changed (a copy is returned when a part is replaced): a claim that
        fails validation is answered from its raw fields. ``pending`` lists the parts seen for the first
        time; pass it to ``remember`` once the claim has validated.
        """
        pending: Pending = []
        out = record
        key = _key(record.get("prescriber"), _PRESCRIBER_FIELDS, "npi", "taxonomy")
        if key is not None:
            hit = self._prescribers.get(key)
            if hit is None:
                pending.append((self._prescribers, key, _prescriber))
            else:
                out = {**record, "prescriber": hit}
        key = _key(record.get("product"), _PRODUCT_FIELDS, "product_id", "qualifier")
        if key is not None:
            hit = self._products.get(key)
            if hit is None:
                pending.append((self._products, key, _product))
            else:
                out = {**out, "product": hit} if out is not record else {**record, "product": hit}
        raw = record.get("diagnoses")
        if type(raw) is list and raw:
            parts: list[Any] = []
            for index, item in enumerate(raw):
                key = _key(item, _DIAGNOSIS_FIELDS, "code", "qualifier")
                hit = None if key is None else self._diagnoses.get(key)
                if hit is None and key is not None:
                    pending.append((self._diagnoses, key, _diagnosis(index)))
                parts.append(item if hit is None else hit)
            if out is record:
                out = {**record}
            out["diagnoses"] = parts
        return out, pending

    @staticmethod
    def remember(claim: Claim, pending: Pending) -> None:
        """Remember the validated parts ``substitute`` saw for the first time in ``claim``."""
        for memo, key, part in pending:
            memo.put(key, part(claim))


def _prescriber(claim: Claim) -> object:
    return claim.prescriber


def _product(claim: Claim) -> object:
    return claim.product


def _diagnosis(index: int) -> Callable[[Claim], object]:
    return lambda claim: claim.diagnoses[index]
