"""The ICD-10-CM code set (the release the simple-icd-10-cm package ships), loaded once as frozensets."""

from __future__ import annotations

import re
from importlib import metadata

from worker.errors import ConfigError

__all__ = ["ICD10CM_REFERENCE", "ICD10_QUALIFIER", "RELEASE", "code_exists", "is_billable"]

ICD10_QUALIFIER = "02"
"""Diagnosis Code Qualifier (492-WE) of an ICD-10 code."""

ICD10CM_REFERENCE = "icd-10-cm"
"""The name under which a result records the ICD-10-CM release its diagnosis codes were checked with."""

_DISTRIBUTION = "simple-icd-10-cm"
# The package's plain code list (one dotless code a line: chapters, blocks, categories, codes). Read
# directly: importing the package parses its 9.7 MB tabular XML (about 14 s and 400 MB here).
_CODE_LIST = re.compile(r"^simple_icd_10_cm/data/code-list-(?P<month>[A-Za-z]+)-(?P<year>[0-9]{4})\.txt$")
_MONTHS = {
    name: number
    for number, name in enumerate(
        (
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ),
        start=1,
    )
}
_FISCAL_YEAR_START = 10  # CMS/NCHS releases take effect on 1 October, the start of the federal fiscal year


def _load() -> tuple[frozenset[str], str]:
    """Return every dotless category and code of the package's list, and its release (FY2026/2026-04-01)."""
    files = metadata.files(_DISTRIBUTION) or []
    lists = [(path, match) for path in files if (match := _CODE_LIST.match(str(path)))]
    if len(lists) != 1:
        msg = f"{_DISTRIBUTION} ships {len(lists)} ICD-10-CM code lists, expected one"
        raise ConfigError(msg)
    path, match = lists[0]
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        msg = f"{_DISTRIBUTION}: code list {path.name} names no month"
        raise ConfigError(msg)
    year = int(match["year"])
    fiscal_year = year + 1 if month >= _FISCAL_YEAR_START else year
    # Chapters are numbers and blocks ranges ("C50-C50"): neither is a code a claim can carry.
    codes = frozenset(
        line
        for line in (raw.strip() for raw in path.read_text(encoding="utf-8").splitlines())
        if line[:1].isalpha() and "-" not in line
    )
    return codes, f"FY{fiscal_year}/{year}-{month:02d}-01"


_CODES, RELEASE = _load()
"""``RELEASE``: the ICD-10-CM fiscal year and the date its file took effect, e.g. ``FY2026/2026-04-01``."""


def _complete(codes: frozenset[str]) -> frozenset[str]:
    """Return the complete (billable) codes: those no other code extends."""
    # In sorted order every code that extends another follows it at once.
    ordered = sorted(codes)
    return frozenset(
        code for code, after in zip(ordered, [*ordered[1:], ""], strict=True) if not after.startswith(code)
    )


_COMPLETE = _complete(_CODES)


def code_exists(code: str) -> bool:
    """Tell whether an upper-case ICD-10-CM code (dot optional) is a category or code of ``RELEASE``."""
    return code.replace(".", "") in _CODES


def is_billable(code: str) -> bool:
    """Tell whether an upper-case ICD-10-CM code (dot optional) is complete: none in ``RELEASE`` extends it.

    Only a complete code is valid on a claim: a category that is further subdivided (C50, C50.9) is
    "invalid if it has not been coded to the full number of characters required" (ICD-10-CM Official
    Guidelines, I.B.2; docs/policy.md).
    """
    return code.replace(".", "") in _COMPLETE
