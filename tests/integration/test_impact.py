"""The diff's impact report on a real broker: direct changes and their on-file followers apart, refusals."""

from __future__ import annotations

import csv
import json
import re
from datetime import timedelta

import pytest

from tests.integration import streams
from tests.integration.test_replay import (  # the replay tests' stream helpers
    AFTER,
    NEW,
    OLD,
    WINDOW,
    _live,
    _produce_at,
    _replay,
)
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.directory.updates import ensure_topic
from worker.runtime.pipeline import ExitCode

pytestmark = [pytest.mark.kafka]

_C77_2 = [{"code": "C50.911", "qualifier": "02"}, {"code": "C77.2", "qualifier": "02"}]
_SECRET = "impact-test-secret-0123456789"  # noqa: S105 - a test-only pseudonym key


def _stream(bootstrap, topics, k: int, m: int, codec: Codec):
    """``k`` C77.2-only first fills (PENDED under -1, APPROVED under -2), then ``m`` later fills of k's members.

    Plus two claims approved under both versions. All on partition 0: each first fill comes before
    its member's later fill. The later fills carry no diagnosis: only an approval on file pays them.
    """
    firsts = [streams.claim(i, diagnoses=_C77_2) for i in range(k)]
    steady = [streams.claim(100 + i) for i in range(2)]
    later = [
        streams.claim(
            200 + i,
            patient=firsts[i].patient.model_dump(),
            diagnoses=[],
            date_of_service=streams.SERVICE_DAY + timedelta(days=21),
        )
        for i in range(m)
    ]
    _produce_at(bootstrap, topics["claims"], streams.encoded(firsts + steady, codec), WINDOW, partition=0)
    _produce_at(bootstrap, topics["claims"], streams.encoded(later, codec), AFTER, partition=0)
    return firsts, later


def _html_causes(page: str) -> dict[str, int]:
    """The claims column of the page's "By cause" table."""
    table = page.split("<h2>By cause</h2>", 1)[1].split("</table>", 1)[0]
    return {
        cause: int(claims)
        for cause, claims in re.findall(r'<tr><td>([A-Z_]+)</td><td class="n">(\d+)</td>', table)
    }


def test_the_report_counts_criteria_changes_and_their_on_file_followers_apart(
    kafka_bootstrap, topics, unique, tmp_path
):
    """k claims change by criteria, m later fills follow on file: the headline, JSON, CSV and HTML give k and m."""
    k, m = 3, 2
    codec = Codec()
    store = f"authorizations-{unique}"
    ensure_topic(load_settings({"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}), store, partitions=2)
    extra = {"CLAIMS_AUTHORIZATIONS_TOPIC": store, "CLAIMS_MEMBER_PSEUDONYM_SECRET": _SECRET}
    firsts, later = _stream(kafka_bootstrap, topics, k, m, codec)
    _live(kafka_bootstrap, topics, tmp_path, policy=OLD, **extra)
    changes, report = tmp_path / "changes.jsonl", tmp_path / "impact"

    done = _replay(
        kafka_bootstrap, topics, "--diff", "--from", WINDOW.isoformat(), "--policy", NEW,
        "--changes", str(changes), "--report", str(report), check=False, **extra,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]  # changes found, as `diff`
    assert (
        f"{k + m} changed: {k} direct (criteria {k}, reference data 0), {m} on file after them" in done.stdout
    )
    figures = json.loads((tmp_path / "impact.json").read_text())
    causes = {row["cause"]: row for row in figures["causes"]}
    assert (figures["direct"], figures["on_file"], figures["other"]) == (k, m, 0)
    assert (causes["CRITERIA"]["claims"], causes["ON_FILE"]["claims"]) == (k, m)
    assert (causes["CRITERIA"]["members"], causes["ON_FILE"]["members"]) == (k, m)
    assert figures["total"]["members"] == k  # the followers' members are the first fills' members
    assert figures["total"]["approvals_gained"] == k + m
    rows = list(csv.DictReader((tmp_path / "impact.csv").open()))
    assert {r["cause"]: int(r["claims"]) for r in rows if r["table"] == "cause" and r["claims"] != "0"} == {
        "CRITERIA": k,
        "ON_FILE": m,
    }
    page = (tmp_path / "impact.html").read_text()
    assert _html_causes(page) == {"CRITERIA": k, "ON_FILE": m}
    by_claim = {r["claim_id"]: r["cause"] for r in map(json.loads, changes.read_text().splitlines())}
    assert by_claim == {c.claim_id: "CRITERIA" for c in firsts} | {c.claim_id: "ON_FILE" for c in later}
    on_file_rows = [r for r in figures["criteria"] if r["cause"] == "ON_FILE"]
    assert [(r["criterion"], r["claims"]) for r in on_file_rows] == [("-", m)]  # not spread over A and B
    for text in (page, changes.read_text(), (tmp_path / "impact.csv").read_text(), done.stdout):
        assert "SYNTHMEM" not in text  # members only as counts of pseudonyms


def _refused(bootstrap, topics, tmp_path) -> str:
    """Run a diff that must be refused: assert exit 2 and exactly one error line; return that line."""
    done = _replay(
        bootstrap, topics, "--diff", "--from", WINDOW.isoformat(), "--policy", NEW,
        "--changes", str(tmp_path / "c.jsonl"), check=False,
    )  # fmt: skip
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert not (tmp_path / "c.impact.html").exists()  # refused before anything is written
    return errors[0]


def test_a_diff_against_an_empty_baseline_is_refused_with_one_line(kafka_bootstrap, topics, tmp_path):
    """No live result or dead letter for the range: exit 2, one error line, no report."""
    codec = Codec()
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded([streams.claim(1)], codec), WINDOW)
    error = _refused(kafka_bootstrap, topics, tmp_path)
    assert "holds no result or dead letter for the range" in error
    assert not (tmp_path / "c.jsonl").exists()


def test_a_diff_against_another_streams_results_is_refused_with_one_line(
    kafka_bootstrap, topics, make_topics, unique, tmp_path
):
    """The results topic answers another claims topic: exit 2 with one line naming it."""
    codec = Codec()
    _produce_at(kafka_bootstrap, topics["claims"], streams.encoded([streams.claim(1)], codec), WINDOW)
    _live(kafka_bootstrap, topics, tmp_path)
    other = {**topics, "claims": f"other-claims-{unique}"}
    make_topics(other["claims"], partitions=2)
    _produce_at(kafka_bootstrap, other["claims"], streams.encoded([streams.claim(2)], codec), WINDOW)
    error = _refused(kafka_bootstrap, other, tmp_path)
    assert f"answer claims topic {topics['claims']!r}, not {other['claims']!r}" in error
