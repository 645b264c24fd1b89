"""Replay without a broker: times, ids, the range plan, verdict comparison, the report and the refusal."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import errors as kerrors

from deploy.demo.nppes_sample import build_sample_index
from tests.unit.claims import NPIS, make_claim
from worker.cli import main
from worker.cli.replay import _directory, _write_changes, diff_report, parse_time, replay_report
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.directory.index import Directory
from worker.errors import ConfigError, DeadLetterClass, ExitCode
from worker.kafka.io import TopicPartition
from worker.kafka.ranges import plan_ranges
from worker.ops.impact import Cause, Change
from worker.policy import default_policy
from worker.runtime import replay as replay_module
from worker.runtime import replay_job
from worker.runtime.judge import Decider, judge
from worker.runtime.replay import _Pass as Pass
from worker.runtime.replay_job import (
    ReplayJob,
    ReplayMetrics,
    ReplaySummary,
    default_replay_id,
    replay_group_id,
    replay_transactional_id,
)
from worker.runtime.route import route
from worker.runtime.verdicts import Verdict, why
from worker.state.authorization import Authorization, encode_authorization
from worker.state.authorizations import Authorizations
from worker.state.dedupe import SeenEvents

T0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
T1 = datetime(2026, 11, 30, 9, tzinfo=UTC)


def _result(outcome="PENDED", status="UNKNOWN", reason="DISEASE_STATUS_NEEDED", **extra):
    record = {
        "claim_id": "clm-1",
        "outcome": outcome,
        "criteria": [{"criterion_id": "A", "status": status, "reason_code": reason}],
        "reject_codes": ["75"] if outcome == "PENDED" else [],
        "authorization_effective": None,
        "authorization_expiration": None,
        "decided_at": T0,
        "worker_version": "1",
    }
    record.update(extra)
    return record


def test_parse_time_reads_naive_times_as_utc_and_refuses_nonsense():
    """A naive time is UTC, an offset is kept, and a bad time is a ConfigError (exit 2)."""
    assert parse_time("2026-11-30T08:00") == T0
    assert parse_time("2026-11-30T10:00+02:00") == T0
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")


def test_the_same_replay_gets_the_same_id_and_never_the_live_group():
    """The default replay id depends only on range, policy and output; group and transactional id are its own."""
    a = default_replay_id(T0, T1, "IXEMPRA-PA/2020.09-2", "out")
    assert a == default_replay_id(T0, T1, "IXEMPRA-PA/2020.09-2", "out")
    assert a != default_replay_id(T0, T1, "IXEMPRA-PA/2020.09-1", "out")
    assert a != default_replay_id(T0, None, "IXEMPRA-PA/2020.09-2", "out")
    settings = load_settings({})
    assert replay_group_id(settings, a) != settings.group_id
    assert a in replay_group_id(settings, a)
    assert replay_transactional_id(settings, a) != settings.transactional_id
    assert a in replay_transactional_id(settings, a)


class _Consumer:
    """offsets_for_times/end_offsets of a two-partition topic."""

    def __init__(self, firsts, stops, ends):
        self.firsts, self.stops, self.ends = firsts, stops, ends

    def partitions_for_topic(self, _topic):
        return {0, 1}

    def end_offsets(self, tps):
        return {tp: self.ends[tp.partition] for tp in tps}

    def offsets_for_times(self, times):
        source = self.firsts if min(times.values()) == int(T0.timestamp() * 1000) else self.stops
        return {
            tp: None if source[tp.partition] is None else SimpleNamespace(offset=source[tp.partition])
            for tp in times
        }


def test_plan_ranges_uses_offsets_for_times_and_the_end_offsets():
    """A partition with nothing after --from has an empty range; one with nothing after --to runs to its end."""
    consumer = _Consumer(firsts={0: 5, 1: None}, stops={0: None, 1: None}, ends={0: 12, 1: 7})
    ranges = {tp.partition: span for tp, span in plan_ranges(consumer, "claims", T0, T1).items()}
    assert ranges == {0: (5, 12), 1: (7, 7)}
    consumer = _Consumer(firsts={0: 5, 1: 2}, stops={0: 9, 1: None}, ends={0: 12, 1: 7})
    ranges = {tp.partition: span for tp, span in plan_ranges(consumer, "claims", T0, T1).items()}
    assert ranges == {0: (5, 9), 1: (2, 7)}


def test_verdicts_ignore_decided_at_and_worker_version():
    """Two results that differ only in decided_at and worker version are the same verdict."""
    a = Verdict.of_result(_result())
    b = Verdict.of_result(_result(decided_at=T1, worker_version="2"))
    assert a.key() == b.key()
    c = Verdict.of_result(
        _result("APPROVED", "MET", "METASTATIC_BY_CODES", authorization_effective=date(2026, 1, 1))
    )
    assert a.key() != c.key()


def test_why_names_the_criterion_and_the_reject_codes_that_changed():
    """The reasons of a change name each changed criterion with its status and reason code, and the rejects."""
    before = Verdict.of_result(_result())
    after = Verdict.of_result(_result("APPROVED", "MET", "METASTATIC_BY_CODES"))
    assert why(before, after) == [
        "A: UNKNOWN(DISEASE_STATUS_NEEDED) -> MET(METASTATIC_BY_CODES)",
        "reject codes 75 -> -",
    ]
    assert why(None, after) == ["no live result for these coordinates"]


def test_the_decision_source_is_compared_and_old_on_file_results_read_as_on_file():
    """An approval on file and one evaluated afresh differ by decision source; a pre-v3 on-file result (named only in its summary) reads as ON_FILE."""
    window = {"authorization_effective": date(2026, 1, 1), "authorization_expiration": date(2026, 12, 31)}
    on_file = Verdict.of_result(
        _result("APPROVED", criteria=[], decision_source="ON_FILE", summary="Approved on file: x", **window)
    )
    legacy = Verdict.of_result(
        _result(
            "APPROVED", criteria=[], decision_source="AUTOMATED_RULE", summary="Approved on file: x", **window
        )
    )
    afresh = Verdict.of_result(
        _result("APPROVED", criteria=[], decision_source="AUTOMATED_RULE", summary="Approved.", **window)
    )
    assert on_file.key() == legacy.key()
    assert on_file.key() != afresh.key()
    assert why(on_file, afresh) == ["decision source ON_FILE -> AUTOMATED_RULE"]
    assert on_file.brief()["decision_source"] == "ON_FILE"


def test_diff_report_prints_transitions_by_reason(tmp_path):
    """The report has one line per transition with its count, each followed by its reasons."""
    summary = ReplaySummary(
        "r1",
        done=10,
        seconds=1.0,
        unchanged=7,
        transitions=Counter({("PENDED", "APPROVED"): 2, ("REFERRED", "PENDED"): 1}),
        reasons=Counter({("PENDED", "APPROVED", "A: x -> y"): 2, ("REFERRED", "PENDED", "A: p -> q"): 1}),
        changes=[{}, {}, {}],
    )
    summary.impact.extend(
        [Change(Cause.CRITERIA, "PENDED", "APPROVED", (("A", "x -> y"),))] * 2
        + [Change(Cause.ON_FILE, "REFERRED", "PENDED", (("A", "p -> q"),))]
    )
    text = diff_report(summary, "IXEMPRA-PA/2020.09-2", tmp_path / "c.jsonl").splitlines()
    assert text[1:5] == [
        "PENDED -> APPROVED: 2",
        "    A: x -> y: 2",
        "REFERRED -> PENDED: 1",
        "    A: p -> q: 1",
    ]
    assert text[0].endswith(
        "3 changed: 2 direct (criteria 2, reference data 0), 1 on file after them, 0 other; 7 unchanged"
    )
    assert "  CRITERIA: 2, +2, -0, n/a, 0" in text


def test_changes_file_as_csv_has_no_phi_columns(tmp_path):
    """The CSV form of the changes names claim id, coordinates, before, after and why, nothing else."""
    path = tmp_path / "changes.csv"
    after = Verdict.of_result(_result("APPROVED", "MET", "METASTATIC_BY_CODES"))
    change = {
        "claim_id": "clm-1",
        "topic": "claims",
        "partition": 0,
        "offset": 4,
        "before": Verdict.of_result(_result()).brief(),
        "after": after.brief(),
        "why": ["A: changed"],
        "cause": "CRITERIA",
    }
    _write_changes(path, [change])
    rows = list(csv.reader(path.open()))
    assert rows == [
        ["claim_id", "topic", "partition", "offset", "before", "after", "cause", "why"],
        ["clm-1", "claims", "0", "4", "PENDED", "APPROVED", "CRITERIA", "A: changed"],
    ]


def test_replay_refuses_the_live_results_topic_before_connecting(monkeypatch, capsys):
    """Without --allow-live-topic, a replay into the live results topic exits 2 with one line, nothing connects."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    code = main(["replay", "--from", "2026-11-30T08:00", "--output-topic", load_settings({}).results_topic])
    assert code == ExitCode.BAD_SETTINGS
    assert "--allow-live-topic" in capsys.readouterr().err


def test_replay_refuses_an_unknown_policy(monkeypatch, capsys):
    """An unknown --policy exits 2 naming the catalog."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    code = main(["replay", "--from", "2026-11-30T08:00", "--policy", "IXEMPRA-PA/1999.01-9"])
    assert code == ExitCode.BAD_SETTINGS
    assert "error:" in capsys.readouterr().err


def test_directory_is_pinned_for_the_run_and_names_its_release(tmp_path):
    """With CLAIMS_DIRECTORY_PATH the lookup answers from that index and the replay header names its release."""

    index = build_sample_index(tmp_path / "directory.idx")
    lookup, version = _directory(load_settings({"CLAIMS_DIRECTORY_PATH": str(index)}))
    assert version == Directory.open(index).version
    facts = lookup(make_claim(prescriber={"npi": NPIS[0], "taxonomy": None}))  # no taxonomy: look it up
    assert facts.directory_version == version
    assert facts.prescriber is not None
    assert facts.prescriber.npi == NPIS[0]
    assert _directory(load_settings({})) == (None, "none")


def test_replay_metrics_keep_their_labels_closed():
    """An outcome outside the closed set is counted as "other", never as its own label value."""
    metrics = ReplayMetrics()
    metrics.count("replay", "APPROVED", 3)
    metrics.count("replay", "clm-000123")
    registry = metrics.registry
    assert (
        registry.get_sample_value("claims_replay_records_total", {"mode": "replay", "outcome": "APPROVED"})
        == 3
    )
    assert (
        registry.get_sample_value("claims_replay_records_total", {"mode": "replay", "outcome": "other"}) == 1
    )
    values = {s.labels.get("outcome") for m in registry.collect() for s in m.samples}
    assert "clm-000123" not in values


def test_replay_refuses_a_replay_id_that_cannot_name_a_group(monkeypatch, capsys):
    """A --replay-id with spaces or slashes exits 2 before anything connects."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["replay", "--from", "2026-11-30T08:00", "--replay-id", "a b/c"]) == ExitCode.BAD_SETTINGS
    assert "--replay-id" in capsys.readouterr().err


def test_a_read_without_progress_past_the_outage_limit_is_an_outage():
    """A stalled replay read raises a Kafka timeout, which the CLI maps to exit 4 (unreachable)."""
    from kafka import errors as kerrors  # noqa: PLC0415 - only this test needs the Kafka error type

    from worker.kafka.failures import Kind, classify  # noqa: PLC0415
    from worker.kafka.ranges import Stall as _Stall  # noqa: PLC0415

    stall = _Stall(-1.0, "replaying")
    with pytest.raises(kerrors.KafkaTimeoutError) as raised:
        stall.check()
    assert classify(raised.value) is Kind.TRANSIENT
    assert "CLAIMS_OUTAGE_LIMIT_S" in str(raised.value)


_SECRET = "unit-test-secret-0123456789"  # noqa: S105 - a test secret
_STORE_TOPIC = "pharmacy.authorizations"


def _store_settings():
    return load_settings(
        {"CLAIMS_AUTHORIZATIONS_TOPIC": _STORE_TOPIC, "CLAIMS_MEMBER_PSEUDONYM_SECRET": _SECRET}
    )


def test_a_replay_seeds_its_own_store_from_the_store_topic_up_to_the_range_start(monkeypatch):
    """The seed reads the store topic from its beginning up to the range start, skips bad records, and is off without a topic."""
    auth = Authorization(
        number="12345678903",
        member="m" * 64,
        policy_id="IXEMPRA-PA",
        policy_version="2020.09-2",
        product="IXEMPRA",
        effective=date(2026, 1, 1),
        expiration=date(2026, 12, 31),
        source_kind="claim",
        source_id="clm-9",
        decided_at=T0,
    )
    key, value = encode_authorization(auth)
    calls = []

    def scan(settings, topic, since, until=None):
        calls.append((topic, since, until))
        yield 0, 0, SimpleNamespace(key=key, value=value)
        yield 0, 1, SimpleNamespace(key=b"1", value=b"not json")

    monkeypatch.setattr(replay_job, "_scan", scan)  # the module that seeds the store
    store = replay_module.seed_authorizations(_store_settings(), T1)
    assert store is not None
    assert calls == [(_STORE_TOPIC, None, T1)]
    assert store.table.get(auth.number) == auth
    assert store.rejected == 1
    assert store._consumer is None  # follows nothing, writes nothing
    assert replay_module.seed_authorizations(load_settings({}), T1) is None


def test_a_fill_after_an_approval_in_the_range_pays_on_file_in_the_replays_own_store():
    """Approval then a fill without clinical data: with the pinned store the diff sees no change, without it a spurious one."""
    codec, policy, settings = Codec(), default_policy(), _store_settings()
    claims = [
        make_claim(claim_id="c-approve", event_id="e1", dos="2026-03-10"),
        make_claim(claim_id="c-fill", event_id="e2", dos="2026-06-01", dx=()),
    ]
    records = [
        SimpleNamespace(
            topic="claims", partition=0, offset=n, key=None, value=codec.encode_claim(claim), headers=[]
        )
        for n, claim in enumerate(claims)
    ]
    # What the live worker published: judged with its store, the approval issued and committed in between.
    live_store = Authorizations(_SECRET.encode(), _STORE_TOPIC)
    verdicts = {}
    for record in records:
        judgement = judge(
            record,
            codec=codec,
            seen=SeenEvents(0),
            decided_at=T0,
            decider=Decider(policy, authorizations=live_store),
        )
        live_store.issue(judgement.claim, judgement.decision)
        live_store.commit()
        out = route(judgement, codec=codec, settings=settings, at=T0)
        verdicts[record.topic, record.partition, record.offset] = Verdict.of_result(
            codec.decode_result(out.value)
        )
    assert verdicts["claims", 0, 1].outcome == "APPROVED"

    def diff(store):
        job = ReplayJob(settings=settings, codec=codec, policy=policy, replay_id="r1", start=T0)
        summary = ReplaySummary("r1")
        run = Pass(job, None, None, {}, {}, {}, verdicts, set(), summary, store)
        for record in records:
            run.one(record, T0, [])
            if store is not None:
                store.commit()
        return summary

    pinned = Authorizations(_SECRET.encode(), _STORE_TOPIC)
    summary = diff(pinned)
    assert summary.changes == []
    assert summary.unchanged == 2
    assert summary.authorizations_issued == 1
    assert len(pinned.table) == 1
    unpinned = diff(None)
    assert [(c["before"]["outcome"], c["after"]["outcome"]) for c in unpinned.changes] == [
        ("APPROVED", "PENDED")
    ]


def test_the_reports_name_the_authorization_pinning():
    """Replay and diff summaries say which authorization state the run was pinned to."""
    summary = ReplaySummary("r1", authorizations_as_of=T0.isoformat(), authorizations_seeded=3)
    assert f"authorizations as of {T0.isoformat()}: 3 on file" in replay_report(summary, "P/1", "o", "d")
    assert "authorizations: none" in diff_report(ReplaySummary("r2"), "P/1", Path("x.jsonl"))


class _Rereader:
    """A consumer holding one partition's records: assign, seek, poll once, position."""

    def __init__(self, records):
        self.records, self.position_at = records, {}

    def assign(self, tps):
        self.assigned = list(tps)

    def seek(self, tp, offset):
        self.position_at[tp] = offset

    def poll(self, **_limits):
        batch = {}
        for tp, offset in self.position_at.items():
            batch[tp] = [r for r in self.records if r.offset >= offset]
            self.position_at[tp] = len(self.records)
        return batch

    def position(self, tp):
        return self.position_at[tp]


def test_a_resumed_replay_puts_the_approvals_it_published_before_on_file_again():
    """After a resume, the approval published before the stop is back in the replay's store, and the next fill pays on file."""
    codec, settings = Codec(), _store_settings()
    approval = make_claim(claim_id="c-approve", event_id="e1", dos="2026-03-10")
    fill = make_claim(claim_id="c-fill", event_id="e2", dos="2026-06-01", dx=())
    records = [
        SimpleNamespace(
            topic="claims", partition=0, offset=n, key=None, value=codec.encode_claim(c), headers=[]
        )
        for n, c in enumerate([approval, fill])
    ]
    tp = TopicPartition("claims", 0)
    store = Authorizations(_SECRET.encode(), _STORE_TOPIC)
    job = ReplayJob(
        settings=settings, codec=codec, policy=default_policy(), replay_id="r1", start=T0, output_topic="o"
    )
    summary = ReplaySummary("r1")
    consumer = _Rereader(records)
    run = Pass(job, consumer, None, {tp: (0, 2)}, {tp: 1}, {tp: 2}, {}, set(), summary, store)
    assert run.reissue() == 1  # only the part published before the stop (offset 0)
    assert len(store.table) == 1
    outputs = []
    run.one(records[1], T0, outputs)
    result = codec.decode_result(outputs[0].value)
    assert result["outcome"] == "APPROVED"
    assert "on file" in result["summary"]
    assert summary.outcomes == Counter({"APPROVED": 1})  # the re-read record is not counted again


def test_a_running_replay_rewrites_its_metrics_file_before_the_end(tmp_path, monkeypatch):
    """With --metrics-file the run rewrites the file as it goes (progress for a textfile collector), not only at the end."""
    monkeypatch.setattr(replay_module, "METRICS_FILE_PERIOD_S", 0.0)
    path = tmp_path / "replay.prom"
    seen: list[str] = []
    tp = TopicPartition("claims", 0)
    job = ReplayJob(
        settings=load_settings({}),
        codec=Codec(),
        policy=default_policy(),
        replay_id="r1",
        start=T0,
        metrics_file=path,
        progress=False,
        batch_hook=lambda _n: seen.append(path.read_text()),
    )
    job.metrics.range.set(4)
    run = Pass(job, None, None, {tp: (0, 4)}, {tp: 0}, {tp: 4}, {}, set(), ReplaySummary("r1", total=4), None)

    def step() -> int:
        run.positions[tp] += 2
        if run.positions[tp] >= 4:
            del run.todo[tp]
        return 2

    monkeypatch.setattr(run, "step", step)
    run.run()
    assert len(seen) == 2
    assert "claims_replay_remaining_records 2.0" in seen[0]
    assert "claims_replay_range_records 4.0" in seen[0]
    assert "claims_replay_remaining_records 0.0" in seen[1]


class _LimitedProducer:
    """A transactional producer that refuses a value over ``limit`` bytes, as kafka-python's max_request_size."""

    def __init__(self, limit: int, fail_commit: BaseException | None = None) -> None:
        self.limit, self.fail_commit = limit, fail_commit
        self.calls: list[str] = []
        self.open: list[tuple[str, int, bytes, dict[str, bytes]]] = []
        self.committed: list[tuple[str, int, bytes, dict[str, bytes]]] = []
        self.offsets: dict = {}

    def begin_transaction(self):
        self.calls.append("begin")
        self.open = []

    def send(self, topic, value=None, key=None, partition=None, headers=None):  # noqa: ARG002 - kafka-python's
        if len(value) > self.limit:
            raise kerrors.MessageSizeTooLargeError
        self.open.append((topic, partition, value, dict(headers or [])))

    def send_offsets_to_transaction(self, offsets, group):  # noqa: ARG002 - kafka-python's signature
        self.calls.append("offsets")
        self.offsets = {tp: o.offset for tp, o in offsets.items()}

    def commit_transaction(self):
        self.calls.append("commit")
        if self.fail_commit is not None:
            raise self.fail_commit
        self.committed.extend(self.open)

    def abort_transaction(self):
        self.calls.append("abort")
        self.open = []


def _too_large_pass(producer):
    """A replay pass over one partition: a claim, then 4,000 undecodable bytes (their dead letter is too large)."""
    codec = Codec()
    records = [
        SimpleNamespace(
            topic="claims",
            partition=0,
            offset=0,
            key=b"k0",
            value=codec.encode_claim(make_claim()),
            headers=[],
        ),
        SimpleNamespace(topic="claims", partition=0, offset=1, key=b"k1", value=b"\x00" * 4000, headers=[]),
    ]
    tp = TopicPartition("claims", 0)
    job = ReplayJob(
        settings=load_settings({}),
        codec=codec,
        policy=default_policy(),
        replay_id="r1",
        start=T0,
        output_topic="replayed",
        dead_letter_topic="replayed.dead-letter",
        clock=lambda: T0,
    )
    consumer = _Rereader(records)
    consumer.seek(tp, 0)
    summary = ReplaySummary("r1", total=2)
    return Pass(job, consumer, producer, {tp: (0, 2)}, {tp: 0}, {tp: 2}, {}, set(), summary, None), codec


def test_a_replayed_output_too_large_to_send_becomes_the_live_workers_too_large_dead_letter():
    """An output over max_request_size is sent as a small TOO_LARGE dead letter with the replay's headers, in the committed transaction."""
    producer = _LimitedProducer(limit=2000)  # a result is ~500 bytes; the 4,000-byte original's letter is not
    run, codec = _too_large_pass(producer)
    assert run.step() == 2
    assert producer.calls == ["begin", "offsets", "commit"]
    assert producer.offsets == {TopicPartition("claims", 0): 2}
    (_, _, result, _), (topic, partition, value, headers) = producer.committed
    assert codec.decode_result(result)["outcome"] == "APPROVED"
    letter = codec.decode_dead_letter(value)
    assert (topic, partition) == ("replayed.dead-letter", 0)
    assert letter["error_class"] == DeadLetterClass.TOO_LARGE.value
    assert letter["original_value"] is None
    assert tuple(letter["source"].values())[1:] == (0, 1)
    assert headers[replay_module.REPLAY_ID_HEADER] == b"r1"
    assert headers["claims-worker.error-class"] == b"TOO_LARGE"
    assert run.summary.outcomes == Counter({"APPROVED": 1, "DEAD_LETTER:TOO_LARGE": 1})
    assert run.job.metrics.registry.get_sample_value(
        "claims_replay_records_total", {"mode": "replay", "outcome": "DEAD_LETTER:TOO_LARGE"}
    ) == 1.0  # fmt: skip


def test_a_replay_step_whose_commit_fails_aborts_its_transaction():
    """A commit that fails aborts the step's open transaction and is raised: nothing of it is published."""
    producer = _LimitedProducer(limit=2000, fail_commit=kerrors.KafkaTimeoutError())
    run, _codec = _too_large_pass(producer)
    with pytest.raises(kerrors.KafkaTimeoutError):
        run.step()
    assert producer.calls == ["begin", "offsets", "commit", "abort"]
    assert producer.committed == []


def test_a_diff_sends_nothing_and_opens_no_transaction():
    """Without a producer (a diff) the step decides the records and sends nothing."""
    run, _codec = _too_large_pass(None)
    run.job.output_topic = None
    assert run.step() == 2
    assert run.queued == []
    assert len(run.summary.changes) == 2  # compared with the (absent) live verdicts instead


def test_narrow_keeps_the_asked_partitions_and_offsets_of_the_time_range():
    """--partition keeps those partitions; --offsets A-B (inclusive) clips each range; an unknown partition is exit 2."""
    from worker.kafka.io import TopicPartition  # noqa: PLC0415
    from worker.kafka.ranges import narrow  # noqa: PLC0415

    ranges = {TopicPartition("claims", 0): (5, 40), TopicPartition("claims", 1): (0, 10)}
    assert narrow(ranges) == ranges
    assert narrow(ranges, frozenset({1})) == {TopicPartition("claims", 1): (0, 10)}
    assert narrow(ranges, offsets=(8, 20)) == {
        TopicPartition("claims", 0): (8, 21),
        TopicPartition("claims", 1): (8, 10),
    }
    assert narrow(ranges, offsets=(None, 6)) == {
        TopicPartition("claims", 0): (5, 7),
        TopicPartition("claims", 1): (0, 7),
    }
    assert narrow(ranges, frozenset({1}), (30, None)) == {TopicPartition("claims", 1): (10, 10)}
    with pytest.raises(ConfigError, match="no partition 2"):
        narrow(ranges, frozenset({2}))


def test_a_selection_gets_its_own_default_replay_id_and_the_resume_line_pins_it():
    """--partition/--offsets change the default id; the resume command repeats the arguments with --replay-id."""
    import shlex  # noqa: PLC0415

    from worker.cli import _parser  # noqa: PLC0415
    from worker.cli.replay import _selection, resume_command  # noqa: PLC0415

    plain = _parser().parse_args(["replay", "--from", "2026-11-30T08:00"])
    picked = _parser().parse_args(
        ["replay", "--since", "2026-11-30T08:00", "--partition", "1", "--offsets", "10-", "--diff"]
    )
    assert _selection(plain) == ""
    assert _selection(picked) == "p=1;o=10-"
    base = default_replay_id(T0, None, "P/1", "out")
    assert default_replay_id(T0, None, "P/1", "out", "") == base
    assert default_replay_id(T0, None, "P/1", "out", _selection(picked)) != base
    line = resume_command(picked, "r1")
    assert shlex.split(line) == [
        "claims-worker", "replay", "--from", "2026-11-30T08:00", "--partition", "1", "--offsets", "10-",
        "--replay-id", "r1", "--diff",
    ]  # fmt: skip
    again = _parser().parse_args(shlex.split(line)[1:])
    assert (again.partition, again.offsets, again.replay_id) == ([1], (10, None), "r1")
    with pytest.raises(SystemExit):
        _parser().parse_args(["replay", "--from", "2026-11-30T08:00", "--offsets", "9-3"])


@pytest.mark.parametrize(("finished", "code"), [(False, ExitCode.INTERRUPTED), (True, ExitCode.OK)])
def test_sigint_exits_130_with_the_resume_line_unless_the_range_was_done(
    monkeypatch, capsys, tmp_path, finished, code
):
    """SIGINT before the range's end: exit 130 and one line with the command; after it: exit 0, no such line."""
    import os  # noqa: PLC0415
    import shlex  # noqa: PLC0415
    import signal  # noqa: PLC0415

    import worker.runtime.replay as runtime_replay  # noqa: PLC0415
    from worker.runtime.replay_job import ReplaySummary  # noqa: PLC0415

    def interrupted(job):
        os.kill(os.getpid(), signal.SIGINT)  # the replay's own handler sets its stop event
        assert job.stop()
        return ReplaySummary(job.replay_id, finished=finished)

    monkeypatch.setattr(runtime_replay, "run_replay", interrupted)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    changes = tmp_path / "changes.jsonl"
    try:
        got = main(
            ["replay", "--from", "2026-11-30T08:00", "--diff", "--changes", str(changes), "--replay-id", "d1"]
        )
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
    assert got == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "interrupted before the end" in line]
    if finished:
        assert lines == []
    else:
        command = f"claims-worker replay --from 2026-11-30T08:00 --changes {shlex.quote(str(changes))} --replay-id d1 --diff"
        assert lines == [
            f"replay d1: interrupted before the end of its range; to start it over, run: {command}"
        ]
