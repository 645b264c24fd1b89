"""A synthetic file in the NPPES dissemination layout: the bundled sample and N generated rows for the bench.

Every NPI is made up (valid check digit, never issued as far as this project knows), every name is
``TEST``. The bundled ``nppes_sample.csv`` is ``write_nppes(path, sample_rows())``; a unit test keeps the
two equal. Run ``python -m deploy.demo.nppes_sample OUT [N]`` to write the sample (or N generated rows).
"""

from __future__ import annotations

import csv
import random
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING

from worker.directory.nppes import (
    DEACTIVATION,
    ENTITY_TYPE,
    NPI,
    REACTIVATION,
    SLOTS,
    switch_column,
    taxonomy_column,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "SAMPLE_PATH",
    "SAMPLE_RELEASE",
    "SAMPLE_RELEASE_DATE",
    "SampleRow",
    "build_sample_index",
    "generated_rows",
    "header",
    "sample_rows",
    "with_check_digit",
    "write_nppes",
]

SAMPLE_PATH = Path(__file__).with_name("nppes_sample.csv")

ONCOLOGY = "207RX0202X"  # Medical Oncology
HEM_ONC = "207RH0003X"  # Hematology & Oncology
INTERNAL_MEDICINE = "207R00000X"
FAMILY_MEDICINE = "207Q00000X"
HEMATOLOGY = "207RH0000X"  # Hematology, not oncology
RADIATION_ONCOLOGY = "2085R0001X"
ONCOLOGY_CLINIC = "261QX0200X"
PHARMACY = "3336C0003X"  # Community/Retail Pharmacy
NP_FAMILY = "363LF0000X"

# Codes the generator draws from (real NUCC codes; the mix is not meant to be realistic).
_POOL = (
    FAMILY_MEDICINE, INTERNAL_MEDICINE, ONCOLOGY, HEM_ONC, HEMATOLOGY, RADIATION_ONCOLOGY, "2086X0206X",
    "207VX0201X", "2080P0207X", "207VX0000X", "2085R0202X", "208600000X", "207P00000X", "208000000X",
    "207X00000X", "207L00000X", "363LF0000X", "363A00000X", "163W00000X", "163WX0200X", "1835X0200X",
    "122300000X", "111N00000X", "152W00000X", "225100000X", "101YM0800X", "103T00000X", "207K00000X",
    "207N00000X", "2084P0800X", "207RC0000X", "207RG0100X", "207RN0300X", "207RE0101X", "207RI0011X",
)  # fmt: skip
_ORG_POOL = (ONCOLOGY_CLINIC, PHARMACY, "282N00000X", "261QM1300X", "332B00000X", "251E00000X")

# Columns of the real layout around the ones the directory reads, in the real file's order.
_LEADING = (
    NPI, ENTITY_TYPE, "Replacement NPI", "Employer Identification Number (EIN)",
    "Provider Organization Name (Legal Business Name)", "Provider Last Name (Legal Name)",
    "Provider First Name", "Provider Middle Name", "Provider Name Prefix Text", "Provider Name Suffix Text",
    "Provider Credential Text", "Provider Business Practice Location Address State Name",
    "Provider Business Practice Location Address Postal Code", "Provider Enumeration Date",
    "Last Update Date", "NPI Deactivation Reason Code", DEACTIVATION, REACTIVATION, "Provider Sex Code",
)  # fmt: skip


def header(pad_columns: int = 0) -> list[str]:
    """Return the header row; ``pad_columns`` adds that many always-empty columns (the real file has ~330)."""
    names = list(_LEADING)
    for slot in range(1, SLOTS + 1):
        names += [
            taxonomy_column(slot),
            f"Provider License Number_{slot}",
            f"Provider License Number State Code_{slot}",
            switch_column(slot),
        ]
    names += [f"Other Provider Identifier_{i}" for i in range(1, pad_columns + 1)]
    return names


def with_check_digit(base: int) -> str:
    """Return the 10-digit NPI whose first nine digits are ``base`` (docs/policy.md §5: Luhn with 80840)."""
    digits = f"{base:09d}"
    total = 24
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d  # noqa: PLR2004 - digit sum of a doubled digit
        total += d
    return digits + str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One row to write: the directory's fields, in the file's conventions (MM/DD/YYYY, Y/N/X switches)."""

    npi: str
    entity: str  # "1", "2" or "" (a deactivated NPI's row)
    taxonomies: tuple[tuple[str, str], ...] = ()  # (code, switch) per slot
    deactivation: str = ""
    reactivation: str = ""
    label: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def cells(self, names: list[str]) -> list[str]:
        """Return the row's cells in the order of ``names``."""
        values = {NPI: self.npi, ENTITY_TYPE: self.entity, DEACTIVATION: self.deactivation}
        values[REACTIVATION] = self.reactivation
        if self.entity == "1":
            values["Provider Last Name (Legal Name)"] = "TEST"
            values["Provider Credential Text"] = "M.D."
        elif self.entity == "2":
            values["Provider Organization Name (Legal Business Name)"] = "TEST ORGANISATION"
        if self.entity:
            values["Provider Enumeration Date"] = "05/23/2005"
            values["Last Update Date"] = "07/08/2024"
        for slot, (code, switch) in enumerate(self.taxonomies, start=1):
            values[taxonomy_column(slot)] = code
            values[switch_column(slot)] = switch
        values.update(self.extra)
        return [values.get(name, "") for name in names]


def sample_rows() -> list[SampleRow]:
    """Return the bundled sample's rows: each labelled with the case it covers (tests and ``make run``)."""
    return [
        SampleRow("1234567893", "1", ((ONCOLOGY, "Y"), (INTERNAL_MEDICINE, "N")), label="oncologist"),
        SampleRow("1987654328", "1", ((FAMILY_MEDICINE, "Y"),), label="family physician"),
        SampleRow("1555000011", "1", ((HEM_ONC, "Y"),), label="consultant oncologist"),
        SampleRow("1666000025", "2", ((PHARMACY, "Y"),), label="pharmacy (organisation)"),
        SampleRow(
            "1111111112",
            "1",
            ((INTERNAL_MEDICINE, "Y"), (HEMATOLOGY, "N"), (ONCOLOGY, "N")),
            label="oncology only as a secondary taxonomy",
        ),
        SampleRow("2222222228", "2", ((ONCOLOGY_CLINIC, "Y"),), label="oncology clinic (organisation)"),
        SampleRow("1555555550", "1", ((HEMATOLOGY, "Y"),), label="hematology, not oncology"),
        SampleRow(
            "1333333338",
            "1",
            ((RADIATION_ONCOLOGY, "X"), (INTERNAL_MEDICINE, "N")),
            label="no primary switched (X: not answered)",
        ),
        SampleRow("1444444446", "", deactivation="01/15/2024", label="deactivated"),
        SampleRow(
            "1777777776",
            "1",
            ((ONCOLOGY, "Y"),),
            deactivation="03/01/2022",
            reactivation="06/01/2022",
            label="deactivated, then reactivated",
        ),
        SampleRow(
            "1888888884",
            "1",
            tuple((code, "Y" if i == 3 else "N") for i, code in enumerate(_POOL[:SLOTS])),  # noqa: PLR2004
            label="fifteen taxonomies, the fourth primary",
        ),
    ]


def generated_rows(count: int, *, seed: int = 11, start: int = 100_000_000) -> Iterator[SampleRow]:
    """Yield ``count`` synthetic rows in ascending NPI order.

    1-4 taxonomies each, ~20% organisations, ~1% deactivated, ~0.2% reactivated; the same seed gives the
    same rows.
    """
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not cryptography
    base = start
    for _ in range(count):
        base += rng.randint(1, 9)
        npi = with_check_digit(base)
        roll = rng.random()
        if roll < 0.01:  # noqa: PLR2004 - share of deactivated rows
            yield SampleRow(npi, "", deactivation=f"{rng.randint(1, 12):02d}/15/20{rng.randint(10, 24)}")
            continue
        organisation = roll > 0.8  # noqa: PLR2004 - share of organisations
        pool = _ORG_POOL if organisation else _POOL
        codes = rng.sample(pool, rng.choice((1, 1, 1, 2, 2, 3, 4)))
        primary = rng.randrange(len(codes))
        slots = tuple((code, "Y" if i == primary else "N") for i, code in enumerate(codes))
        if roll < 0.012:  # noqa: PLR2004 - share of reactivated rows
            yield SampleRow(npi, "1", slots, deactivation="01/10/2019", reactivation="02/20/2019")
        else:
            yield SampleRow(npi, "2" if organisation else "1", slots)


def write_nppes(target: Path | IO[str], rows: Iterable[SampleRow], *, pad_columns: int = 0) -> int:
    """Write ``rows`` in the NPPES layout (every field quoted, CRLF like the real file); return the count."""
    names = header(pad_columns)
    if isinstance(target, Path):
        with target.open("w", newline="", encoding="utf-8") as handle:
            return write_nppes(handle, rows, pad_columns=pad_columns)
    writer = csv.writer(target, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(names)
    n = 0
    for row in rows:
        writer.writerow(row.cells(names))
        n += 1
    return n


SAMPLE_RELEASE = "nppes-sample-20240708"
SAMPLE_RELEASE_DATE = date(2024, 7, 8)


def build_sample_index(out: Path) -> Path:
    """Build the bundled sample's index at ``out`` (release ``SAMPLE_RELEASE``) for ``make run`` and demos."""
    from worker.directory.builder import build_index  # noqa: PLC0415 - devtools import the worker lazily
    from worker.directory.nppes import open_text, read_nppes  # noqa: PLC0415

    build_index(
        read_nppes(open_text(str(SAMPLE_PATH), [0])),
        out,
        release=SAMPLE_RELEASE,
        release_date=SAMPLE_RELEASE_DATE,
        source=SAMPLE_PATH.name,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the bundled sample to OUT, or N generated rows with ``OUT N [PAD_COLUMNS]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m deploy.demo.nppes_sample OUT [N [PAD_COLUMNS]]", file=sys.stderr)
        return 2
    out = Path(args[0])
    if len(args) == 1:
        n = write_nppes(out, sample_rows())
    else:
        pad = int(args[2]) if len(args) > 2 else 0  # noqa: PLR2004 - third argument
        n = write_nppes(out, generated_rows(int(args[1])), pad_columns=pad)
    print(f"wrote {n} rows to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
