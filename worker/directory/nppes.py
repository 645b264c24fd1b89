"""A streaming reader of the NPPES data dissemination file (``npidata_pfile_*.csv``).

The real file is a CSV with a header row, every field double-quoted, about 330 columns, ~9M rows and
~10 GB. Only the columns the prescriber directory needs are read (by header name, so the column order and
the other columns do not matter):

- ``NPI``: 10 digits with a valid check digit (docs/policy.md §5);
- ``Entity Type Code``: ``1`` individual, ``2`` organisation; blank on a deactivated NPI's row, which
  carries only the NPI and its deactivation date;
- ``NPI Deactivation Date`` / ``NPI Reactivation Date``: ``MM/DD/YYYY`` or blank;
- ``Healthcare Provider Taxonomy Code_1..15`` with ``Healthcare Provider Primary Taxonomy Switch_1..15``
  (``Y`` primary, ``N`` not primary, ``X`` not answered, or blank).

A malformed row raises ``NppesFormatError`` naming the line and the rule it broke (the values are public
NPPES data, but the message names only the field). ``max_errors`` lets a build skip a few bad rows.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import date
from typing import IO, TYPE_CHECKING

from worker.errors import ClaimsWorkerError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "DEACTIVATION",
    "ENTITY_TYPE",
    "NPI",
    "REACTIVATION",
    "SLOTS",
    "NppesFormatError",
    "NppesRecord",
    "parse_date",
    "read_nppes",
    "switch_column",
    "taxonomy_column",
]

NPI = "NPI"
ENTITY_TYPE = "Entity Type Code"
DEACTIVATION = "NPI Deactivation Date"
REACTIVATION = "NPI Reactivation Date"
SLOTS = 15

ENTITY_UNKNOWN = 0  # blank entity type: a deactivated NPI's row
ENTITY_INDIVIDUAL = 1
ENTITY_ORGANISATION = 2

_TAXONOMY = re.compile(r"^[0-9A-Z]{9}X$")  # NUCC codes: 10 characters ending in X
_SWITCHES = frozenset({"Y", "N", "X", ""})


# Digit sum of twice the digit, indexed by the digit's ASCII code (Luhn's doubled positions).
_DOUBLED = bytes(48 * [0]) + bytes((2 * d if d < 5 else 2 * d - 9) for d in range(10))  # noqa: PLR2004
_ZERO = ord("0")


def npi_ok(npi: str) -> bool:
    """Tell whether ``npi`` is 10 ASCII digits starting 1 or 2 with a valid check digit (docs/policy.md §5).

    The same rule as ``worker.contracts.model.npi_is_valid``, unrolled: the build checks ~9M NPIs.
    """
    if len(npi) != 10 or not npi.isascii() or not npi.isdigit() or npi[0] not in "12":  # noqa: PLR2004
        return False
    b = npi.encode()
    d = _DOUBLED
    total = 24 + d[b[0]] + d[b[2]] + d[b[4]] + d[b[6]] + d[b[8]] + b[1] + b[3] + b[5] + b[7] - 4 * _ZERO
    return (10 - total % 10) % 10 == b[9] - _ZERO


def taxonomy_column(slot: int) -> str:
    """Return the header name of taxonomy slot ``slot`` (1..15)."""
    return f"Healthcare Provider Taxonomy Code_{slot}"


def switch_column(slot: int) -> str:
    """Return the header name of the primary-taxonomy switch of slot ``slot`` (1..15)."""
    return f"Healthcare Provider Primary Taxonomy Switch_{slot}"


class NppesFormatError(ClaimsWorkerError):
    """A row (or the header) of an NPPES file breaks the layout; ``line`` is the 1-based physical line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NppesRecord:
    """One NPI as the file lists it: every taxonomy in slot order and the index of the primary one."""

    npi: int
    entity_type: int  # 0 (blank: deactivated row), 1 individual, 2 organisation
    taxonomies: tuple[str, ...] = ()
    primary: int | None = None  # index into ``taxonomies`` of the first slot switched "Y"
    deactivation: date | None = None
    reactivation: date | None = None
    line: int = 0


def parse_date(text: str) -> date:
    """Parse an NPPES ``MM/DD/YYYY`` date; raise ``ValueError`` otherwise."""
    if len(text) != 10 or text[2] != "/" or text[5] != "/":  # noqa: PLR2004 - MM/DD/YYYY
        raise ValueError(text)
    return date(int(text[6:]), int(text[:2]), int(text[3:5]))


def _columns(header: list[str]) -> tuple[int, int, int, int, list[tuple[int, int]]]:
    index = {name.strip(): i for i, name in enumerate(header)}
    wanted = [NPI, ENTITY_TYPE, DEACTIVATION, REACTIVATION]
    wanted += [name for slot in range(1, SLOTS + 1) for name in (taxonomy_column(slot), switch_column(slot))]
    missing = [name for name in wanted if name not in index]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:3]) + (" ..." if len(missing) > 3 else "")  # noqa: PLR2004
        raise NppesFormatError(1, f"header lacks {len(missing)} NPPES column(s): {shown}")
    slots = [(index[taxonomy_column(s)], index[switch_column(s)]) for s in range(1, SLOTS + 1)]
    return index[NPI], index[ENTITY_TYPE], index[DEACTIVATION], index[REACTIVATION], slots


def _record(  # noqa: C901, PLR0912 - one rule per field, kept together so the order of checks is visible
    row: list[str],
    line: int,
    width: int,
    cols: tuple[int, int, int, int, list[tuple[int, int]]],
    known_codes: dict[str, str],
) -> NppesRecord:
    if len(row) != width:
        raise NppesFormatError(line, f"{len(row)} fields where the header has {width}")
    i_npi, i_entity, i_deact, i_react, slots = cols
    npi = row[i_npi].strip()
    if not npi_ok(npi):
        raise NppesFormatError(line, "NPI is not 10 digits starting 1 or 2 with a valid check digit")
    entity_text = row[i_entity].strip()
    try:
        deactivation = parse_date(d) if (d := row[i_deact].strip()) else None
    except ValueError:
        raise NppesFormatError(line, "NPI Deactivation Date is not a MM/DD/YYYY date") from None
    try:
        reactivation = parse_date(r) if (r := row[i_react].strip()) else None
    except ValueError:
        raise NppesFormatError(line, "NPI Reactivation Date is not a MM/DD/YYYY date") from None
    if entity_text == "1":
        entity = ENTITY_INDIVIDUAL
    elif entity_text == "2":
        entity = ENTITY_ORGANISATION
    elif entity_text == "" and deactivation is not None:
        entity = ENTITY_UNKNOWN
    else:
        raise NppesFormatError(line, "Entity Type Code is not 1 or 2 (blank only on a deactivated NPI)")
    if reactivation is not None and (deactivation is None or reactivation < deactivation):
        raise NppesFormatError(line, "NPI Reactivation Date without an earlier NPI Deactivation Date")
    taxonomies: list[str] = []
    primary: int | None = None
    for slot, (i_code, i_switch) in enumerate(slots, start=1):
        code = row[i_code]
        switch = row[i_switch]
        if not code and not switch:  # most of the 15 slots are empty: the fast path
            continue
        code = code.strip()
        switch = switch.strip().upper()
        if switch not in _SWITCHES:
            raise NppesFormatError(line, f"{switch_column(slot)} is not Y, N, X or blank")
        if not code:
            continue
        if code not in known_codes:
            if not _TAXONOMY.match(code):
                raise NppesFormatError(line, f"{taxonomy_column(slot)} is not a 10-character NUCC code")
            known_codes[code] = code
        if switch == "Y" and primary is None:
            primary = len(taxonomies)
        taxonomies.append(known_codes[code])
    return NppesRecord(
        npi=int(npi),
        entity_type=entity,
        taxonomies=tuple(taxonomies),
        primary=primary,
        deactivation=deactivation,
        reactivation=reactivation,
        line=line,
    )


def read_nppes(
    lines: Iterable[str],
    *,
    max_errors: int = 0,
    on_error: Callable[[NppesFormatError], None] | None = None,
) -> Iterator[NppesRecord]:
    """Yield one ``NppesRecord`` per data row of ``lines`` (an open text file or any line iterator).

    A malformed row raises ``NppesFormatError``; with ``max_errors`` > 0 up to that many rows are skipped
    instead, each passed to ``on_error``, and the next one raises.
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise NppesFormatError(1, "the file is empty (no header row)") from None
    except csv.Error as exc:
        raise NppesFormatError(1, f"not CSV: {exc}") from None
    cols = _columns(header)
    width = len(header)
    known_codes: dict[str, str] = {}  # validated codes, one string object each (~900 NUCC codes)
    errors = 0
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise NppesFormatError(line, f"not CSV: {exc}") from None
        if not row:
            continue
        try:
            yield _record(row, line, width, cols, known_codes)
        except NppesFormatError as exc:
            errors += 1
            if errors > max_errors:
                raise
            if on_error is not None:
                on_error(exc)


def open_text(path: str, counter: list[int]) -> Iterator[str]:
    """Yield the decoded lines of ``path`` and add each line's byte length to ``counter[0]`` (progress)."""
    raw: IO[bytes]
    with open(path, "rb") as raw:  # noqa: PTH123 - a plain binary stream, counted
        for chunk in raw:
            counter[0] += len(chunk)
            yield chunk.decode("utf-8", "replace")
