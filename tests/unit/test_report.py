"""The results table's "B from" column (worker/ops/report.py): where the prescriber's specialty came from."""

from __future__ import annotations

import pytest

from worker.ops.report import _specialty_source


def _result(*evidence: str) -> dict:
    return {"criteria": [{"criterion_id": "B", "evidence": list(evidence)}]}


@pytest.mark.parametrize(
    ("evidence", "shown"),
    [
        pytest.param(
            ("prescriber taxonomy 207RX0202X (source=claim)",), "claim", id="sent-without-a-directory"
        ),
        pytest.param(
            ("prescriber taxonomies 207RX0202X primary (source=directory nppes-1)",),
            "directory nppes-1",
            id="directory",
        ),
        pytest.param(
            (
                (
                    "prescriber taxonomies 207RX0202X (source=directory nppes-1); taxonomy 207Q00000X sent on the claim "
                    "(source=claim)"
                ),
            ),
            "directory nppes-1 + sent",
            id="directory-beside-a-sent-code",
        ),
        pytest.param((), "-", id="no-evidence"),
    ],
)
def test_specialty_source(evidence, shown):
    """The column names the directory and its version, adds "+ sent" when a taxonomy was sent beside it, or says claim."""
    assert _specialty_source(_result(*evidence)) == shown
