"""The diff's impact: each changed claim's cause, the figures, and the writers that share them."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from worker.config.settings import load_settings
from worker.errors import ConfigError
from worker.kafka.io import TopicPartition
from worker.ops.impact import DIRECT, Cause, Change, Impact, changed_criteria, classify
from worker.ops.impact_report import (
    CSV_COLUMNS,
    headline,
    impact_csv,
    impact_html,
    impact_json,
    impact_lines,
    write_report,
)
from worker.runtime.verdicts import Verdict, refuse_baseline

DIR = "prescriber-directory"


def _verdict(outcome="APPROVED", source="AUTOMATED_RULE", criteria=(("A", "MET", "OK"),), references=()):
    return Verdict(outcome=outcome, source=source, criteria=criteria, references=references)


class TestClassify:
    @pytest.mark.parametrize(
        ("before", "after", "cause"),
        [
            pytest.param(
                _verdict("PENDED", "INFORMATION_MISSING", (("A", "UNKNOWN", "NEEDED"),)),
                _verdict(),
                Cause.CRITERIA,
                id="same-facts-other-criteria",
            ),
            pytest.param(
                _verdict("PENDED", "ON_FILE", ()), _verdict("APPROVED", "ON_FILE", ()),
                Cause.ON_FILE, id="both-on-file",
            ),
            pytest.param(
                _verdict("PENDED", "INFORMATION_MISSING", ()), _verdict("APPROVED", "ON_FILE", ()),
                Cause.ON_FILE, id="paid-on-file-after-an-earlier-change",
            ),
            pytest.param(
                _verdict("APPROVED", "ON_FILE", ()), _verdict("PENDED", "INFORMATION_MISSING", ()),
                Cause.ON_FILE, id="no-longer-paid-on-file",
            ),
            pytest.param(
                _verdict("DENIED", references=((DIR, "2026-01"),)),
                _verdict(references=((DIR, "2026-02"),)),
                Cause.REFERENCE_DATA, id="directory-release-differs",
            ),
            pytest.param(
                _verdict("DENIED", references=((DIR, "2026-01"),)),
                _verdict(references=((DIR, "2026-01"), ("icd-10-cm", "2026"))),
                Cause.CRITERIA, id="a-set-read-on-one-side-only-is-not-a-release-change",
            ),
            pytest.param(
                _verdict("DENIED", "ON_FILE", references=((DIR, "2026-01"),)),
                _verdict(references=((DIR, "2026-02"),)),
                Cause.ON_FILE, id="on-file-wins-over-reference-data",
            ),
            pytest.param(None, _verdict(), Cause.NO_BASELINE, id="no-live-output"),
            pytest.param(Verdict.dead_letter("CORRUPT"), _verdict(), Cause.INPUT, id="live-dead-letter"),
            pytest.param(_verdict(), Verdict.dead_letter("TOO_LARGE"), Cause.INPUT, id="candidate-dead-letter"),
        ],
    )  # fmt: skip
    def test_each_change_has_one_cause(self, before, after, cause):
        """A change's cause follows the documented order: baseline, dead letter, on file, reference data, criteria."""
        assert classify(before, after) is cause

    def test_continuity_of_care_is_a_direct_cause_nothing_assigns_yet(self):
        """The continuity placeholder counts as direct, and no verdict pair is classified as it."""
        assert Cause.CONTINUITY_OF_CARE in DIRECT
        assert Cause.ON_FILE not in DIRECT
        pairs = [
            (None, _verdict()),
            (_verdict("DENIED"), _verdict()),
            (_verdict(source="ON_FILE"), _verdict()),
        ]
        assert Cause.CONTINUITY_OF_CARE not in {classify(b, a) for b, a in pairs}

    def test_a_result_carries_its_reference_versions_and_week_but_they_are_not_compared(self):
        """Verdict.of_result keeps reference_versions and the event week; key() ignores both."""
        result = {
            "outcome": "APPROVED",
            "reference_versions": {DIR: "2026-02"},
            "event_time": datetime(2026, 12, 1, 9, tzinfo=UTC),
        }
        verdict = Verdict.of_result(result)
        assert verdict.references == ((DIR, "2026-02"),)
        assert verdict.week == "2026-W49"
        assert verdict.key() == Verdict.of_result({"outcome": "APPROVED"}).key()


class TestChangedCriteria:
    def test_each_differing_criterion_is_a_row(self):
        """Only criteria whose status or reason differ, sorted, as WAS(reason) -> NOW(reason)."""
        before = _verdict(criteria=(("A", "UNKNOWN", "NEEDED"), ("B", "MET", "OK")))
        after = _verdict(criteria=(("A", "MET", "CODES"), ("B", "MET", "OK"), ("C", "MET", "NEW")))
        assert changed_criteria(before, after) == (
            ("A", "UNKNOWN(NEEDED) -> MET(CODES)"),
            ("C", "- -> MET(NEW)"),
        )

    def test_a_change_without_a_differing_criterion_names_the_decision_source(self):
        """Paid on file: one '-' row with the decision source before and after."""
        before = _verdict("PENDED", "INFORMATION_MISSING", ())
        assert changed_criteria(before, _verdict("APPROVED", "ON_FILE", ())) == (
            ("-", "INFORMATION_MISSING -> ON_FILE"),
        )
        assert changed_criteria(None, _verdict("APPROVED", criteria=())) == (("-", "(none) -> APPROVED"),)

    def test_an_on_file_change_is_one_decision_source_row_whatever_its_criteria(self):
        """Paid on file evaluates no criterion: its change is not spread over the criteria it skipped."""
        before = _verdict("PENDED", "INFORMATION_MISSING", (("A", "UNKNOWN", "MISSING"), ("B", "MET", "OK")))
        after = _verdict("APPROVED", "ON_FILE", ())
        assert changed_criteria(before, after, Cause.ON_FILE) == (("-", "INFORMATION_MISSING -> ON_FILE"),)
        assert len(changed_criteria(before, after)) == 2


def _impact(members_counted=True) -> Impact:
    impact = Impact(members_counted=members_counted, decided=12, unchanged=6)
    criteria = (("A", "UNKNOWN(NEEDED) -> MET(CODES)"),)
    on_file = (("-", "INFORMATION_MISSING -> ON_FILE"),)
    return impact.extend(
        [
            Change(Cause.CRITERIA, "PENDED", "APPROVED", criteria, "m1", "1000000001", "2026-W48"),
            Change(Cause.CRITERIA, "PENDED", "APPROVED", criteria, "m2", "1000000001", "2026-W48"),
            Change(
                Cause.CRITERIA, "APPROVED", "DENIED", (("B", "MET(X) -> NOT_MET(Y)"),), "m3", "1000000002"
            ),
            Change(Cause.ON_FILE, "PENDED", "APPROVED", on_file, "m1", "1000000001", "2026-W49"),
            Change(Cause.ON_FILE, "PENDED", "APPROVED", on_file, "m2", "1000000003", "2026-W49"),
            Change(Cause.NO_BASELINE, "(none)", "APPROVED", (("-", "(none) -> APPROVED"),)),
        ]
    )


class TestFigures:
    def test_direct_changes_and_their_followers_are_counted_apart(self):
        """3 criteria changes and 2 on-file followers: direct 3, on file 2, other 1; members are distinct."""
        figures = _impact().figures()
        assert (figures["changed"], figures["direct"], figures["on_file"], figures["other"]) == (6, 3, 2, 1)
        causes = {row["cause"]: row for row in figures["causes"]}
        assert causes["CRITERIA"] == {
            "cause": "CRITERIA", "claims": 3, "approvals_gained": 2, "approvals_lost": 1,
            "members": 3, "prescribers": 2,
        }  # fmt: skip
        assert causes["ON_FILE"]["members"] == 2
        assert figures["total"] == {
            "claims": 6, "approvals_gained": 5, "approvals_lost": 1, "members": 3, "prescribers": 3,
        }  # fmt: skip

    def test_criterion_rows_and_weeks(self):
        """By criterion and reason, direct causes first; by week, each cause apart."""
        figures = _impact().figures()
        first = figures["criteria"][0]
        assert (first["cause"], first["criterion"], first["claims"], first["members"]) == (
            "CRITERIA",
            "A",
            2,
            2,
        )
        assert {(w["week"], w["cause"]): w["claims"] for w in figures["weeks"]} == {
            ("2026-W48", "CRITERIA"): 2,
            ("(unknown)", "CRITERIA"): 1,
            ("2026-W49", "ON_FILE"): 2,
            ("(unknown)", "NO_BASELINE"): 1,
        }

    def test_without_pseudonyms_members_are_not_counted(self):
        """No store secret: members is None (n/a), never a count of something else."""
        figures = _impact(members_counted=False).figures()
        assert figures["total"]["members"] is None
        assert all(row["members"] is None for row in figures["causes"] + figures["criteria"])
        assert "members affected n/a" in impact_lines(figures)[0]

    def test_no_change(self):
        """An empty diff has zero everywhere and a headline saying so."""
        figures = Impact(decided=4, unchanged=4).figures()
        assert (
            headline(figures)
            == "0 changed: 0 direct (criteria 0, reference data 0), 0 on file after them, 0 other"
        )
        assert figures["transitions"] == figures["criteria"] == figures["weeks"] == []


class TestWriters:
    def test_csv_json_and_html_hold_the_same_figures(self):
        """Each writer reads one figures dict: the cause counts agree across CSV, JSON and HTML."""
        figures = _impact().figures()
        rows = list(csv.DictReader(io.StringIO(impact_csv(figures))))
        assert tuple(rows[0]) == CSV_COLUMNS
        from_csv = {r["cause"]: int(r["claims"]) for r in rows if r["table"] == "cause"}
        from_json = {r["cause"]: r["claims"] for r in json.loads(impact_json(figures))["causes"]}
        page = impact_html(figures, "t")
        table = page.split("<h2>By cause</h2>", 1)[1].split("</table>", 1)[0]
        from_html = {
            c: int(n) for c, n in re.findall(r'<tr><td>([A-Z_]+)</td><td class="n">(\d+)</td>', table)
        }
        assert from_csv == from_json
        assert from_html == {cause: n for cause, n in from_json.items() if n}
        assert headline(figures) in page
        assert next(r for r in rows if r["table"] == "total")["members"] == "3"

    def test_a_csv_cell_a_spreadsheet_would_run_is_quoted(self):
        """A value read from a topic that starts like a formula is written as text."""
        impact = Impact().extend([Change(Cause.CRITERIA, "PENDED", "APPROVED", (("=HYPERLINK(1)", "x"),))])
        rows = list(csv.DictReader(io.StringIO(impact_csv(impact.figures()))))
        assert {r["criterion"] for r in rows if r["table"] == "criterion"} == {"'=HYPERLINK(1)"}

    def test_write_report_puts_the_three_forms_side_by_side(self, tmp_path):
        """PREFIX.html, .csv and .json hold exactly what the writers return for the same figures."""
        figures = _impact().figures()
        write_report(tmp_path / "out" / "diff.impact", figures, "t")
        assert (tmp_path / "out" / "diff.impact.html").read_text() == impact_html(figures, "t")
        assert (tmp_path / "out" / "diff.impact.csv").read_text() == impact_csv(figures)
        assert json.loads((tmp_path / "out" / "diff.impact.json").read_text()) == figures

    def test_the_page_is_self_contained(self):
        """Inline CSS and SVG: no script, no external link, font or image."""
        page = impact_html(_impact().figures(), "Impact")
        assert page.startswith("<!DOCTYPE html>")
        assert page.count("<svg") == 3
        for forbidden in ("<script", "<link", "@import", "@font-face", "src=", "href=", "url("):
            assert forbidden not in page

    def test_every_value_on_the_page_is_escaped(self):
        """A criterion, reason, outcome or title read from a topic cannot inject markup."""
        evil = '<script>alert("x")</script>\x1b[31m'
        impact = Impact(members_counted=True).extend(
            [Change(Cause.CRITERIA, evil, "APPROVED", ((evil, evil),), "m", "1000000001", evil)]
        )
        page = impact_html(impact.figures(), evil)
        assert "<script" not in page
        assert "&lt;script&gt;" in page
        assert "\x1b" not in page
        assert all("\x1b" not in line for line in impact_lines(impact.figures()))

    def test_the_table_names_each_cause_and_criterion(self):
        """The printed table: totals, then causes with counts, then each criterion and reason."""
        lines = impact_lines(_impact().figures())
        assert lines[0] == "approvals gained 5, lost 1; members affected 3; prescribers affected 3"
        assert "  CRITERIA: 3, +2, -1, 3, 2" in lines
        assert "  ON_FILE: 2, +2, -0, 2, 2" in lines
        assert "  [CRITERIA] A: UNKNOWN(NEEDED) -> MET(CODES): 2, +2, -0, 2, 1" in lines


class TestRefuseBaseline:
    """A diff refuses a baseline that answers nothing of its range, with one line naming why."""

    settings = load_settings({"CLAIMS_CLAIMS_TOPIC": "claims", "CLAIMS_RESULTS_TOPIC": "results"})
    ranges: ClassVar = {TopicPartition("claims", 0): (10, 20)}

    def test_no_live_output_for_a_non_empty_range_is_refused(self):
        """Nothing for the range, nothing foreign: the results topic is empty or wrong."""
        with pytest.raises(ConfigError, match="'results' holds no result or dead letter for the range"):
            refuse_baseline(self.settings, self.ranges, {}, set())

    def test_results_of_another_claims_topic_are_refused_naming_it(self):
        """Results whose source names another claims topic: the line names both topics."""
        with pytest.raises(ConfigError, match="answer claims topic 'other', not 'claims'"):
            refuse_baseline(self.settings, self.ranges, {}, {"other"})

    def test_a_baseline_with_any_verdict_or_an_empty_range_passes(self):
        """One live verdict in range is a baseline; an empty range has nothing to compare."""
        refuse_baseline(self.settings, self.ranges, {("claims", 0, 12): _verdict()}, {"other"})
        refuse_baseline(self.settings, {TopicPartition("claims", 0): (5, 5)}, {}, set())
