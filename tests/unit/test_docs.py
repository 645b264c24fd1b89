"""The repository justifies itself: no reference leaves it, and every docs/policy.md section cited exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY_DOC = ROOT / "docs" / "policy.md"
_OUTSIDE = re.compile(r"shared/|DOMAIN\.md|KAFKA_NOTES|HOUSE_STYLE")
_CITATION = re.compile(r"docs/policy\.md §(\d+)(?:-(\d+))?")


def _project_texts() -> list[Path]:
    """README, docs and every text file the package ships or runs from."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for suffix in ("*.py", "*.json", "*.avsc"):
        files += sorted((ROOT / "worker").rglob(suffix))
    return files


def test_no_reference_points_outside_the_repository():
    """README.md, docs/ and worker/ cite no document outside the repository (shared/..., DOMAIN.md)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _project_texts()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert offenders == []


def test_every_cited_policy_section_exists():
    """Each `docs/policy.md §N` citation names a numbered section that the document has."""
    sections = {
        int(m) for m in re.findall(r"^## (\d+)\. ", POLICY_DOC.read_text(encoding="utf-8"), re.MULTILINE)
    }
    cited = set()
    for path in _project_texts():
        for first, last in _CITATION.findall(path.read_text(encoding="utf-8")):
            cited.update(range(int(first), int(last or first) + 1))
    assert cited
    assert cited <= sections


def test_policy_doc_quotes_the_criteria_and_keeps_an_interpretations_section():
    """docs/policy.md quotes criteria A and B and has the Interpretations section later rules extend."""
    text = POLICY_DOC.read_text(encoding="utf-8")
    assert "A) Patient has recurrent or metastatic disease" in text
    assert "B) Ixempra is prescribed by or in consultation with an oncologist" in text
    assert "\n## Interpretations\n" in text
    assert text.count("https://") >= 30
