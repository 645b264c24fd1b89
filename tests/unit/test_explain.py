"""explain (worker/ops/explain.py, worker/cli/explain.py): one decision as a PA pharmacist reads it, escaped."""

from __future__ import annotations

import json
import types
from datetime import UTC, date, datetime

import pytest

from tests.unit.claims import make_claim
from worker.cli import main
from worker.contracts.codec import Codec
from worker.contracts.results import SourceCoordinates, build_dead_letter, build_result
from worker.contracts.wire import REPLAY_ID_HEADER, REPLAY_POLICY_HEADER
from worker.errors import BadRecord, DeadLetterClass
from worker.ops.explain import explain, json_text, text_lines
from worker.ops.report import to_row
from worker.policy import Facts, decide, default_policy
from worker.policy.on_file import on_file_decision
from worker.state.authorization import Authorization

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
CODEC = Codec()
POLICY = default_policy()
ON_FILE_NUMBER = "12345678903"

# Claims that take each path worth explaining (make_claim's date of service is 2025-03-10).
APPROVED = make_claim()
REFERRED = make_claim(dx=("C50.911",), status="LOCALLY_ADVANCED")  # A NOT_MET
PENDED = make_claim(dx=("C50.911", "C78.7"), taxonomy="207Q00000X")  # B UNKNOWN: consultation needed
NO_DIAGNOSIS = make_claim(dx=())  # A UNKNOWN: the diagnosis code is needed


def _record(result: dict, *, offset: int = 0, timestamp: int = 0, headers=()) -> types.SimpleNamespace:
    """A consumer record as kafka-python yields it (only the fields explain reads)."""
    return types.SimpleNamespace(
        value=CODEC.encode_result(result),
        partition=1,
        offset=offset,
        timestamp=timestamp,
        headers=list(headers),
    )


def _result(claim, decision=None, *, source_offset: int = 7, **changes) -> dict:
    decision = decision or decide(claim, Facts(), POLICY, NOW)
    result = build_result(
        claim, decision, source=SourceCoordinates("claims", 0, source_offset), worker_version="t"
    )
    return {**result, **changes}


def _row(result: dict, **record):
    return to_row(CODEC, "results", _record(result, **record))


def _letter(value: bytes, error: BadRecord) -> bytes:
    """The encoded dead letter of claim ``clm-9`` (source claims 0@9) holding ``value``, for ``error``."""
    letter = build_dead_letter(
        key=b"clm-9",
        value=value,
        headers=[],
        source=SourceCoordinates("claims", 0, 9),
        error=error,
        worker_version="t",
        dead_lettered_at=NOW,
    )
    return CODEC.encode_dead_letter(letter)


def _on_file_result() -> dict:
    """The result of a later fill paid against an authorization on file (no criterion evaluated)."""
    auth = Authorization(
        number=ON_FILE_NUMBER,
        member="m" * 64,
        policy_id=POLICY.policy_id,
        policy_version=POLICY.version,
        product="70020191001",
        effective=date(2025, 1, 2),
        expiration=date(2026, 1, 1),
        source_kind="claim",
        source_id="clm-0000",
        decided_at=datetime(2025, 1, 2, 9, tzinfo=UTC),
    )
    fill = make_claim(dx=(), claim_id="clm-fill", fill_number=1)
    return _result(fill, on_file_decision(auth, POLICY, NOW, None))


class TestExplanation:
    """The structured explanation (the JSON form) carries every field a decision has."""

    @pytest.mark.parametrize(
        ("claim", "statuses"),
        [
            pytest.param(APPROVED, {"A": "MET", "B": "MET"}, id="met"),
            pytest.param(REFERRED, {"A": "NOT_MET", "B": "MET"}, id="not-met"),
            pytest.param(PENDED, {"A": "MET", "B": "UNKNOWN"}, id="unknown"),
        ],
    )
    def test_each_criterion_keeps_its_status_reason_and_evidence(self, claim, statuses):
        """Every criterion of the result is explained with its status, reason code, evidence and explanation."""
        result = _result(claim)
        explained = explain(_row(result))
        assert {c["criterion_id"]: c["status"] for c in explained["criteria"]} == statuses
        assert explained["criteria"] == [
            {
                key: c[key]
                for key in ("criterion_id", "status", "reason_code", "evidence", "needs", "explanation")
            }
            for c in result["criteria"]
        ]

    def test_approval_names_its_pa_number_window_versions_and_source(self):
        """An approval shows its PA number and window, the policy and reference versions, and the source coordinates."""
        result = _result(APPROVED)
        explained = explain(_row(result, offset=3))
        assert explained["outcome"] == "APPROVED"
        assert explained["paid_on_file"] is False
        assert explained["authorization"] == {
            "number": result["authorization_number"],
            "effective": result["authorization_effective"].isoformat(),
            "expiration": result["authorization_expiration"].isoformat(),
        }
        assert explained["policy"] == {
            "id": POLICY.policy_id,
            "version": POLICY.version,
            "selection": "PINNED",
        }
        assert explained["reference_versions"] == result["reference_versions"]
        assert explained["source"] == {"topic": "claims", "partition": 0, "offset": 7}
        assert explained["record"]["topic"] == "results"
        assert (explained["record"]["partition"], explained["record"]["offset"]) == (1, 3)
        assert explained["needed"] == []

    def test_pended_claim_says_what_is_needed_and_which_criterion_needs_it(self):
        """Each need of a pended claim is listed with its pharmacy message and the criterion (and reason) that raised it."""
        explained = explain(_row(_result(NO_DIAGNOSIS)))
        assert explained["outcome"] == "PENDED"
        assert explained["needed"] == [
            {
                "need": "DIAGNOSIS_CODE",
                "message": "PA: SEND ICD-10 DIAGNOSIS CODE",
                "criteria": [{"criterion_id": "A", "reason_code": "DIAGNOSIS_CODE_MISSING"}],
            }
        ]

    def test_paid_on_file_names_the_authorization_and_evaluates_no_criterion(self):
        """A fill paid on file says so, with the authorization's number and original window and no criterion."""
        explained = explain(_row(_on_file_result()))
        assert explained["paid_on_file"] is True
        assert explained["decision_source"] == "ON_FILE"
        assert explained["authorization"] == {
            "number": ON_FILE_NUMBER,
            "effective": "2025-01-02",
            "expiration": "2026-01-01",
        }
        assert explained["criteria"] == []

    def test_replay_headers_are_named(self):
        """A replay's result names the replay id and policy from its headers."""
        record = _record(
            _result(APPROVED),
            headers=[(REPLAY_ID_HEADER, b"r1"), (REPLAY_POLICY_HEADER, b"P/2"), ("x", b"y")],
        )
        from worker.ops.explain import replay_headers  # noqa: PLC0415 - beside its use

        explained = explain(to_row(CODEC, "replay", record), replay_headers(record.headers))
        assert explained["replay"] == {"id": "r1", "policy": "P/2"}

    def test_a_dead_letter_shows_its_class_and_reason_without_the_senders_bytes(self):
        """A dead letter's explanation names its class, reason and source; its original value is not in it."""
        value = _letter(b"PHIMEMBER8675309", BadRecord(DeadLetterClass.NOT_AVRO, "value: not Avro"))
        record = types.SimpleNamespace(value=value, partition=0, offset=1, timestamp=0)
        explained = explain(to_row(CODEC, "dlq", record))
        assert (explained["kind"], explained["claim_id"], explained["reason"]) == (
            "dead_letter",
            "clm-9",
            "value: not Avro",
        )
        assert "PHIMEMBER" not in json_text(explained) + "\n".join(text_lines(explained))


class TestText:
    """The text form: what a pharmacist reads, in order, every value escaped."""

    def test_every_criterion_status_with_its_evidence_and_needs(self):
        """MET, NOT_MET and UNKNOWN criteria are printed with their reason, each evidence item and their needs."""
        for claim in (APPROVED, REFERRED, PENDED):
            result = _result(claim)
            text = "\n".join(text_lines(explain(_row(result))))
            for criterion in result["criteria"]:
                assert (
                    f"{criterion['criterion_id']}  {criterion['status']:<8} {criterion['reason_code']}"
                    in text
                )
                for item in criterion["evidence"]:
                    assert item in text
                for need in criterion["needs"]:
                    assert f"needs     {need}" in text

    def test_pended_text_lists_the_need_its_message_and_why(self):
        """A pended claim's text says what the prescriber's office must send and for which criterion."""
        text = "\n".join(text_lines(explain(_row(_result(PENDED)))))
        assert (
            "CONSULTATION_STATUS: PA: SEND ONCOLOGY CONSULT STATUS (criterion B CONSULTATION_STATUS_NEEDED)"
            in text
        )
        assert "PENDED: more information needed" in text

    def test_outcome_line_names_the_recommendation_of_a_denial_or_referral(self):
        """A denied or referred claim's outcome line carries the rule's recommendation to the reviewer."""
        result = _result(REFERRED)
        referred = text_lines(explain(_row(result)))[1]
        assert referred == (
            "  outcome       REFERRED: sent to clinical review, recommendation to the reviewer DENY;"
            " decided by CRITERIA_NOT_MET"
        )
        denied = text_lines(explain(_row({**result, "outcome": "DENIED"})))[1]
        assert (
            denied
            == "  outcome       DENIED: recommendation to the reviewer DENY; decided by CRITERIA_NOT_MET"
        )

    def test_approval_text_has_the_pa_window_and_not_on_file(self):
        """An approval by the rule prints its PA number and window and says it was not paid on file."""
        result = _result(APPROVED)
        lines = text_lines(explain(_row(result)))
        window = f"{result['authorization_effective']} through {result['authorization_expiration']}"
        assert (
            f"  PA            {result['authorization_number']}, window {window} (498-PY, 498-PS/PT)" in lines
        )
        assert "  paid on file  no: the criteria were evaluated for this claim" in lines
        pinned = "pinned by CLAIMS_POLICY or replay --policy"
        assert f"  policy        {POLICY.policy_id} {POLICY.version}, {pinned}" in lines
        assert any(line.startswith("  source        claims partition 0 offset 7 (src 0:7") for line in lines)

    def test_on_file_text_says_paid_on_file(self):
        """A fill paid on file prints yes, the authorization's window, and that no criterion was evaluated."""
        lines = text_lines(explain(_row(_on_file_result())))
        assert any(
            line.startswith("  paid on file  yes: paid against the authorization on file") for line in lines
        )
        assert (
            f"  PA            {ON_FILE_NUMBER}, window 2025-01-02 through 2026-01-01 (498-PY, 498-PS/PT)"
            in lines
        )
        assert "criteria: none evaluated: paid against the authorization on file" in lines

    def test_a_claim_id_with_esc_and_bidi_is_escaped_in_text_and_json(self):
        """A claim id (written by another producer) holding ESC, OSC, CR and a bidi override is printed as escapes."""
        hostile = "clm-\x1b[2J\x1b]0;owned\x07\r\u202eFAKE\nrow"
        evidence_result = _result(APPROVED, claim_id=hostile)
        evidence_result["criteria"][0] = {
            **evidence_result["criteria"][0],
            "evidence": ["C50.911\x1b[2K\u2067"],
        }
        explained = explain(_row(evidence_result))
        text = "\n".join(text_lines(explained))
        assert all(line.isprintable() for line in text.split("\n"))
        assert text.split("\n")[0].startswith(
            "clm-\\u001b[2J\\u001b]0;owned\\u0007\\u000d\\u202eFAKE\\u000arow  B1"
        )
        assert "C50.911\\u001b[2K\\u2067" in text
        line = json_text(explained)
        assert line.isascii()
        assert line.isprintable()
        assert json.loads(line)["claim_id"] == hostile


# -- the command (read_to_ends replaced by the records it would yield) ---------------------------------


@pytest.fixture
def topic_records(monkeypatch):
    """Replace the topic read with a dict of topic -> records; return that dict for the test to fill."""
    records: dict[str, list] = {}
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("CLAIMS_RESULTS_TOPIC", "results")
    monkeypatch.setenv("CLAIMS_DEAD_LETTER_TOPIC", "dlq")
    monkeypatch.setattr("worker.kafka.clients.check_login", lambda _settings: None)

    def read_to_ends(_settings, topic, _progress=None):
        if topic not in records:
            from worker.errors import ConfigError  # noqa: PLC0415

            raise ConfigError(f"topic {topic!r} does not exist (or this login may not describe it)")
        return iter(records[topic])

    monkeypatch.setattr("worker.kafka.reads.read_to_ends", read_to_ends)
    return records


class TestCommand:
    """``claims-worker explain``: selection, several results newest last, formats and exit codes."""

    def test_several_results_for_one_claim_are_shown_newest_last_and_counted(self, topic_records, capsys):
        """A re-submitted claim id shows each of its results, oldest first, and says how many."""
        first = _result(NO_DIAGNOSIS, source_offset=1)
        again = _result(APPROVED, source_offset=5)  # the same claim id, re-submitted with its codes
        other = _result(make_claim(claim_id="clm-other"), source_offset=2)
        topic_records["results"] = [
            _record(again, offset=2, timestamp=2_000),
            _record(other, offset=1, timestamp=1_500),
            _record(first, offset=0, timestamp=1_000),
        ]
        assert main(["explain", "--claim-id", "clm-0001"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("2 results for claim id clm-0001, newest last; 3 records read from results")
        assert out.index("[1 of 2]") < out.index("PENDED") < out.index("[2 of 2]") < out.index("APPROVED")
        assert "clm-other" not in out

    def test_by_coordinates_across_live_and_replay_topics(self, topic_records, capsys):
        """--at P@O selects the results answering that claims-topic record, from every --topic read."""
        live = _result(NO_DIAGNOSIS, source_offset=4)
        replayed = _result(APPROVED, source_offset=4)
        topic_records["results"] = [
            _record(_result(APPROVED, source_offset=3), offset=0),
            _record(live, offset=1),
        ]
        topic_records["results.replay.r1"] = [
            _record(replayed, offset=0, timestamp=9_000, headers=[(REPLAY_ID_HEADER, b"r1")])
        ]
        argv = [
            "explain",
            "--at",
            "0@4",
            "--topic",
            "results",
            "--topic",
            "results.replay.r1",
            "--format",
            "json",
        ]
        assert main(argv) == 0
        captured = capsys.readouterr()
        shown = [json.loads(line) for line in captured.out.splitlines()]
        assert [(s["record"]["topic"], s["outcome"]) for s in shown] == [
            ("results", "PENDED"),
            ("results.replay.r1", "APPROVED"),
        ]
        assert shown[1]["replay"] == {"id": "r1"}
        assert "2 results for source 0@4, newest last" in captured.err

    def test_the_src_column_form_is_accepted(self, topic_records, capsys):
        """--at also takes show-results' src form PARTITION:OFFSET."""
        topic_records["results"] = [_record(_result(APPROVED, source_offset=7))]
        assert main(["explain", "--at", "0:7"]) == 0
        assert "1 result for source 0@7;" in capsys.readouterr().out

    def test_nothing_matched_exits_1_and_points_at_the_dead_letters(self, topic_records, capsys):
        """A claim id no result answers exits 1 after a complete read, and names the dead-letter check."""
        topic_records["results"] = [_record(_result(APPROVED))]
        assert main(["explain", "--claim-id", "clm-\x1bnone"]) == 1
        err = capsys.readouterr().err
        assert "no result for claim id clm-\\u001bnone: 1 record read from results" in err
        assert "show-results --topic dlq --claim-id clm-\\u001bnone" in err

    def test_a_dead_letter_topic_explains_its_dead_letters(self, topic_records, capsys):
        """--topic of a dead-letter topic shows the record's class and reason, counted as a dead letter."""
        value = _letter(b"\x00", BadRecord(DeadLetterClass.TRUNCATED, "claim body ends early"))
        topic_records["dlq"] = [
            types.SimpleNamespace(value=value, partition=0, offset=0, timestamp=0, headers=[])
        ]
        assert main(["explain", "--at", "0@9", "--topic", "dlq"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("1 dead letter for source 0@9; 1 record read from dlq")
        assert "clm-9  DEAD LETTER TRUNCATED" in out
        assert "  reason        claim body ends early" in out

    @pytest.mark.usefixtures("topic_records")
    def test_a_missing_topic_exits_2(self, capsys):
        """A topic that does not exist is one error line and exit 2."""
        assert main(["explain", "--claim-id", "x", "--topic", "gone"]) == 2
        assert (
            capsys.readouterr().err.strip()
            == "error: topic 'gone' does not exist (or this login may not describe it)"
        )

    @pytest.mark.parametrize("at", ["0", "a@1", "0@", "@4", "-1@2", "0@1@2"])
    def test_bad_coordinates_exit_2(self, at, capsys):
        """--at must be two whole numbers; anything else is an argparse error (exit 2)."""
        with pytest.raises(SystemExit) as stopped:
            main(["explain", "--at", at])
        assert stopped.value.code == 2
        assert "PARTITION@OFFSET" in capsys.readouterr().err

    def test_claim_id_and_coordinates_exclude_each_other(self, capsys):
        """Exactly one of --claim-id and --at is required."""
        for argv in (["explain"], ["explain", "--claim-id", "x", "--at", "0@1"]):
            with pytest.raises(SystemExit) as stopped:
                main(argv)
            assert stopped.value.code == 2
        capsys.readouterr()
