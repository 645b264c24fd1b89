"""show-results (worker/ops/report.py): the "B from" column, the filters, and the table and JSON outputs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_result
from worker.errors import DeadLetterClass, InvalidClaim
from worker.ops.report import Selection, _specialty_source, json_line, table_lines, to_row
from worker.policy import Facts, decide, default_policy
from worker.samples import sample_claims


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


# --- show-results: rows, filters and formats ---------------------------------------------------------


_CODEC = Codec()
_AT = datetime(2025, 3, 1, 12, tzinfo=UTC)
_PHI = b"PHIMEMBER8675309"


def _record(value: bytes, partition: int = 0, offset: int = 0, at: datetime = _AT) -> SimpleNamespace:
    """A consumer record as kafka-python yields it (only the fields the report reads)."""
    return SimpleNamespace(
        value=value, partition=partition, offset=offset, timestamp=int(at.timestamp() * 1000)
    )


def _result_rows() -> list:
    """One result row per bundled sample claim, source offsets 0.. on partition offset % 2."""
    rows = []
    for n, sample in enumerate(sample_claims()):
        claim = sample.claim
        decision = decide(claim, Facts(), default_policy(), _AT)
        record = build_result(claim, decision, source=SourceCoordinates("c", n % 2, n), worker_version="1")
        rows.append(to_row(_CODEC, "results", _record(_CODEC.encode_result(record), n % 2, n)))
    return rows


def _dead_letter_row(key: bytes = b"clm-x", offset: int = 99):
    letter = build_dead_letter(
        key=key,
        value=b"\x00garbage " + _PHI,
        headers=[("event-id", b"evt-1")],
        source=SourceCoordinates("c", 1, offset),
        error=InvalidClaim(DeadLetterClass.INVALID_FIELD, "claim: json_invalid"),
        worker_version="1",
        dead_lettered_at=_AT,
    )
    return to_row(_CODEC, "dlq", _record(_CODEC.encode_dead_letter(letter), 0, 5))


class TestSelection:
    """Every filter of show-results keeps exactly the rows it names."""

    def test_no_filter_keeps_all(self):
        """The empty selection keeps every row."""
        rows = [*_result_rows(), _dead_letter_row()]
        assert all(Selection().keeps(row) for row in rows)

    def test_claim_id_and_outcome(self):
        """--claim-id matches results and dead-letter keys; --outcome DEAD_LETTER keeps only dead letters."""
        rows = [*_result_rows(), _dead_letter_row()]
        first = rows[0].claim_id
        assert [r.claim_id for r in rows if Selection(claim_ids=frozenset({first})).keeps(r)] == [first]
        assert [r.kind for r in rows if Selection(outcomes=frozenset({"DEAD_LETTER"})).keeps(r)] == [
            "dead_letter"
        ]
        approved = [r for r in rows if Selection(outcomes=frozenset({"APPROVED"})).keeps(r)]
        assert approved
        assert {r.record["outcome"] for r in approved} == {"APPROVED"}

    def test_decision_source_excludes_dead_letters(self):
        """--decision-source keeps results of that step only, never a dead letter."""
        rows = [*_result_rows(), _dead_letter_row()]
        kept = [r for r in rows if Selection(decision_sources=frozenset({"AUTOMATED_RULE"})).keeps(r)]
        assert kept
        assert {(r.kind, r.record["decision_source"]) for r in kept} == {("result", "AUTOMATED_RULE")}

    @pytest.mark.parametrize(
        ("selection", "wanted"),
        [
            pytest.param(Selection(partitions=frozenset({1})), lambda s: s[0] == 1, id="partition"),
            pytest.param(Selection(offsets=(2, 4)), lambda s: 2 <= s[1] <= 4, id="closed-range"),
            pytest.param(Selection(offsets=(None, 1)), lambda s: s[1] <= 1, id="open-low"),
            pytest.param(Selection(offsets=(3, None)), lambda s: s[1] >= 3, id="open-high"),
            pytest.param(
                Selection(partitions=frozenset({0}), offsets=(0, 2)),
                lambda s: s[0] == 0 and s[1] <= 2,
                id="both",
            ),
        ],
    )
    def test_source_coordinates(self, selection, wanted):
        """--partition and --offsets select by the claims-topic coordinates a row answers (the src column)."""
        rows = _result_rows()
        assert [r.source for r in rows if selection.keeps(r)] == [r.source for r in rows if wanted(r.source)]

    def test_time_by_record_timestamp(self):
        """--since is inclusive and --until exclusive, both on the record's own timestamp."""
        early = to_row(_CODEC, "dlq", _record(b"x", at=datetime(2025, 1, 1, tzinfo=UTC)))
        late = to_row(_CODEC, "dlq", _record(b"x", at=datetime(2025, 2, 1, tzinfo=UTC)))
        window = Selection(since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 2, 1, tzinfo=UTC))
        assert (window.keeps(early), window.keeps(late)) == (True, False)
        assert Selection(since=datetime(2025, 1, 2)).keeps(late)  # noqa: DTZ001 - naive: read as UTC


class TestFormats:
    """The JSON Lines and table outputs carry every field, no PHI and no terminal control."""

    def test_json_line_has_every_result_field(self):
        """A result's JSON line holds its coordinates and every field of the decoded result."""
        row = _result_rows()[0]
        line = json.loads(json_line(row))
        assert (line["kind"], line["topic"], line["partition"], line["offset"]) == ("result", "results", 0, 0)
        assert line["timestamp"] == "2025-03-01T12:00:00.000+00:00"
        assert set(line["record"]) == set(row.record)
        assert line["record"]["criteria"] == row.record["criteria"]

    def test_dead_letter_json_keeps_no_original_value(self):
        """A dead letter's original bytes (PHI) are written as a size only."""
        line = json_line(_dead_letter_row())
        assert _PHI.decode() not in line
        record = json.loads(line)["record"]
        assert record["original_value_bytes"] == len(b"\x00garbage " + _PHI)
        assert record["original_headers"] == [{"key": "event-id", "value_bytes": 5}]
        assert record["original_key"] == "clm-x"

    def test_unreadable_record_is_a_row(self):
        """A record neither a result nor a dead letter is shown as UNREADABLE with its class, not a crash."""
        row = to_row(_CODEC, "replay", _record(b"not avro", 1, 7))
        assert (row.kind, row.outcome, row.record["error_class"]) == ("unreadable", "UNREADABLE", "NOT_AVRO")
        assert "replay[1]@7" in table_lines([row])[2]

    def test_control_characters_escaped(self):
        """An escape sequence in a dead-letter key is printed escaped in the table and in JSON."""
        row = _dead_letter_row(key=b"clm\x1b]0;owned\x07")
        table = "\n".join(table_lines([row]))
        assert "\x1b" not in table
        assert "\\u001b" in table
        assert "\x1b" not in json_line(row)

    def test_table_sorted_by_source(self):
        """The table lists rows by source partition then offset."""
        rows = _result_rows()
        lines = table_lines(list(reversed(rows)))[2:]
        sources = [tuple(int(x) for x in line.split()[0].split(":")) for line in lines]
        assert sources == sorted(sources)
