"""ICD-10 diagnosis codes on a claim, sorted into the code families a disease criterion reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from worker.lru import LruMemo

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.contracts.model import Diagnosis

__all__ = ["CodeFamily", "DiagnosisCodes", "DiagnosisFindings", "display_code", "normalise_code"]

_CATEGORY_LENGTH = 3  # ICD-10 category (e.g. C50) before the optional dot
_MEMO_LIMIT = 65_536  # ICD-10-CM has about 75k codes; real claims use a small fraction


class CodeFamily(StrEnum):
    """Which part of a disease criterion a diagnosis code speaks to.

    A code takes the family of its longest matching prefix; between equal prefixes, the declaration
    order decides. UNSPECIFIED_PRIMARY is a malignancy whose primary site is not named (C80.1): unknown,
    not another cancer.
    """

    SECONDARY_OF_SITE = "SECONDARY_OF_SITE"
    PRIMARY = "PRIMARY"
    HISTORY = "HISTORY"
    REGIONAL_NODE = "REGIONAL_NODE"
    DISTANT_SECONDARY = "DISTANT_SECONDARY"
    IN_SITU = "IN_SITU"
    INFORMATIONAL = "INFORMATIONAL"
    UNSPECIFIED_PRIMARY = "UNSPECIFIED_PRIMARY"
    OTHER_MALIGNANT = "OTHER_MALIGNANT"
    UNRELATED = "UNRELATED"


def normalise_code(code: str) -> str:
    """Return an ICD-10 code without its dot (C50.911 and C50911 are the same code)."""
    return code.replace(".", "")


def display_code(code: str) -> str:
    """Return a dotless ICD-10 code in its dotted display form (C50911 -> C50.911)."""
    if len(code) > _CATEGORY_LENGTH:
        return f"{code[:_CATEGORY_LENGTH]}.{code[_CATEGORY_LENGTH:]}"
    return code


@dataclass(slots=True)
class DiagnosisFindings:
    """A claim's diagnosis codes grouped by family (dotted display form), plus the codes not read."""

    families: dict[CodeFamily, list[str]]
    ignored: list[str]


@dataclass(frozen=True, slots=True, eq=False)
class DiagnosisCodes:
    """Compiled code families for one disease criterion: dotless prefixes, longest first.

    Built once when the policy loads. The longest matching prefix wins (C77.2 distant over a C77
    category listed as regional, C79.81 over C79); equal prefixes go by the family order. Each
    distinct submitted code is classified once and remembered (the ``_MEMO_LIMIT`` most recently
    used codes, so odd input cannot grow it without bound).
    """

    qualifier: str
    prefixes: tuple[tuple[CodeFamily, tuple[str, ...]], ...]
    _memo: LruMemo[str, tuple[CodeFamily, str]] = field(
        default_factory=lambda: LruMemo(_MEMO_LIMIT), repr=False, compare=False
    )
    _ranked: tuple[tuple[str, CodeFamily], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        order = {family: rank for rank, family in enumerate(CodeFamily)}
        ranked = sorted(
            ((prefix, family) for family, prefixes in self.prefixes for prefix in prefixes),
            key=lambda pair: (-len(pair[0]), order[pair[1]]),
        )
        object.__setattr__(self, "_ranked", tuple(ranked))

    def family(self, code: str) -> CodeFamily:
        """Return the family of a dotless, upper-case ICD-10 code: the one of its longest matching prefix."""
        for prefix, family in self._ranked:
            if code.startswith(prefix):
                return family
        return CodeFamily.UNRELATED

    def _lookup(self, code: str) -> tuple[CodeFamily, str]:
        """Return the family and dotted display form of a submitted code (dot optional), memoised."""
        known = self._memo.get(code)
        if known is None:
            dotless = normalise_code(code)
            known = (self.family(dotless), display_code(dotless))
            self._memo.put(code, known)
        return known

    def read(self, diagnoses: Iterable[Diagnosis]) -> DiagnosisFindings:
        """Sort every submitted diagnosis (any order) into families; other qualifiers are only listed."""
        families: dict[CodeFamily, list[str]] = {}
        ignored: list[str] = []
        for diagnosis in diagnoses:
            if diagnosis.qualifier != self.qualifier:
                ignored.append(f"{diagnosis.code} (qualifier {diagnosis.qualifier})")
                continue
            family, shown = self._lookup(diagnosis.code)
            bucket = families.get(family)
            if bucket is None:
                families[family] = [shown]
            elif shown not in bucket:
                bucket.append(shown)
        return DiagnosisFindings(families, ignored)
