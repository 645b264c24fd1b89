"""Test catalogs of dated versions, written to a folder from the packaged entries (``load_catalog_dir``)."""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CHANGE_DAY", "NEW", "OLD", "write_catalog", "write_two_versions"]

CHANGE_DAY = date(2025, 7, 1)
"""The day the test catalog's new version takes over (the old one ends the day before)."""
OLD, NEW = "2025.01-1", "2025.07-1"


def _packaged(version: str) -> dict[str, Any]:
    text = (resources.files("worker.policies") / "IXEMPRA-PA" / f"{version}.json").read_text("utf-8")
    return json.loads(text)


def write_catalog(folder: Path, entries: list[tuple[str, str, dict[str, Any]]]) -> Path:
    """Write one file per ``(packaged version, new version, dated fields)`` into ``folder``; return it.

    Each file is the packaged IXEMPRA-PA entry renamed to the new version, its effective dates replaced.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for source, version, dates in entries:
        doc = _packaged(source)
        for key in ("effective_from", "effective_until", "review_date", "change_summary"):
            doc.pop(key, None)
        doc.update(version=version, **dates)
        (folder / f"{version}.json").write_text(json.dumps(doc), encoding="utf-8")
    return folder


def write_two_versions(folder: Path) -> Path:
    """Two dated versions: OLD (2020.09-1's terms) through 2025-06-30, NEW (2020.09-3's) from CHANGE_DAY.

    A claim with Z85.3 + C50 and no attested status tells them apart: OLD approves it (recurrence
    inferred from history), NEW pends it (new primary or recurrence).
    """
    return write_catalog(
        folder,
        [
            ("2020.09-1", OLD, {"effective_from": "2025-01-01", "effective_until": "2025-06-30"}),
            ("2020.09-3", NEW, {"effective_from": CHANGE_DAY.isoformat(), "change_summary": "New terms."}),
        ],
    )
