"""The lean per-record path writes the very bytes of the reference path, for a large seeded claim mix.

The reference is the path before issue 29: every result built whole (``build_result``) and written
whole (``Codec.encode_result``), the route's counts computed from the decision as they were. The mix
holds Ixempra claims of every outcome, claims of other drugs (most of a real stream), reversals,
rebills, a malformed claim for every field ``bad_claims`` has a reject code for, unclean keys,
undecodable bytes and redelivered events, in batches that each share one decision time, so the
NOT_APPLICABLE decisions recur within a batch and change between batches.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.claims import NPIS, make_claim
from tests.unit.fakes import Rec
from worker import __version__
from worker.config.settings import load_settings
from worker.contracts import bad_claims
from worker.contracts.codec import Codec
from worker.contracts.codes import CriterionStatus, Outcome
from worker.contracts.fastwrite import Unsupported, compile_splice, compile_writer
from worker.contracts.results import SourceCoordinates, build_result
from worker.contracts.wire import EVENT_ID_HEADER, NOT_APPROVED
from worker.policy import default_policy
from worker.runtime.judge import Decider, Judgement, judge
from worker.runtime.route import Outgoing, route
from worker.state.dedupe import SeenEvents

SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
POLICY = default_policy()
START = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_IXEMPRA = ("70020191001", "70020-1910-01", "70020-1910-1", "70020191101", "7002019101")
_OTHER = ("00093747489", "00093-7474-89", "31722-775-12", "68817-134-50", "0409-0365-01")
_DX = (
    ("C50.911", "C78.7"),
    ("C50.911",),
    ("C50.912", "C77.3"),
    ("Z85.3", "C50.911"),
    ("C34.90", "C78.7"),
    (),
)

# One malformed value per field path ``bad_claims`` maps to a reject code (``key`` is the record key).
MALFORMED: dict[str, dict[str, Any]] = {
    "claim_id": {"claim_id": "c" * 65},  # no readable claim id: a dead letter, not a REJECTED result
    "event_id": {"event_id": "e" * 65},
    "original_claim_id": {"transaction_code": "B2", "original_claim_id": None},
    "service_provider_id": {"service_provider_id": "x" * 16},
    "prescription_reference_number": {"prescription_reference_number": "1" * 13},
    "fill_number": {"fill_number": 100},
    "patient.member_id": {"patient": {"member_id": "", "last_name": "SYN", "date_of_birth": "1970-01-01"}},
    "patient.first_name": {
        "patient": {
            "member_id": "M1",
            "first_name": "F" * 36,
            "last_name": "SYN",
            "date_of_birth": "1970-01-01",
        }
    },
    "patient.last_name": {"patient": {"member_id": "M1", "last_name": "", "date_of_birth": "1970-01-01"}},
    "product.product_id": {"product": {"product_id": "7002019", "qualifier": "03"}},
    "product.qualifier": {"product": {"product_id": "70020191001", "qualifier": "3"}},
    "quantity": {"quantity": -1.0},
    "days_supply": {"days_supply": -1},
    "diagnoses.code": {
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "50.9", "qualifier": "02"}]
    },
    "diagnoses.qualifier": {"diagnoses": [{"code": "C50.911", "qualifier": "2"}]},
    "prescriber.npi": {"prescriber": {"npi": "1234567890", "taxonomy": None}},
    "prescriber.taxonomy": {"prescriber": {"npi": NPIS[0], "taxonomy": "207RX0202"}},
    "prior_authorization_number": {"prior_authorization_number": "1" * 12},
    "prior_authorization_type_code": {"prior_authorization_type_code": "123"},
}
# Paths no decodable claim can break through one field: the record key (unclean keys are in the mix), a
# whole list or part, and fields whose Avro type admits only valid values (a bad enum index is CORRUPT).
_STRUCTURAL = {
    "key",
    "diagnoses",
    "prescriber",
    "transaction_code",
    "date_of_service",
    "patient.date_of_birth",
}


def _raw(rng: random.Random, n: int) -> dict[str, Any]:
    """A valid raw claim drawn from a plausible mix (as a record dict the codec can write)."""
    roll = rng.random()
    tx = "B1" if roll < 0.8 else ("B2" if roll < 0.9 else "B3")
    ndc = rng.choice(_OTHER) if rng.random() < 0.6 else rng.choice(_IXEMPRA)
    consult = {"status": "YES", "consultant_npi": NPIS[1]} if rng.random() < 0.2 else None
    claim = make_claim(
        dx=rng.choice(_DX),
        taxonomy=rng.choice(("207RX0202X", "207Q00000X", None)),
        status=rng.choice((None, None, "METASTATIC", "EARLY")),
        consult=consult,
        ndc=ndc,
        qualifier="03" if rng.random() < 0.95 else "28",
        tx=tx,
        event_id=f"evt-{n:06d}",
        claim_id=f"clm-{n:06d}",
        prescription_reference_number=f"{n:012d}",
        days_supply=rng.choice((21, 21, 21, 400)),
    )
    return claim.model_dump()


def _mix(codec: Codec, n: int, seed: int) -> list[Rec]:
    """Records of the seeded mix: valid, malformed (every field), unclean keys, bad bytes, redeliveries."""
    rng = random.Random(seed)
    kinds = sorted(MALFORMED)
    records: list[Rec] = []
    for i in range(n):
        raw = _raw(rng, i)
        key: bytes | None = raw["claim_id"].encode()
        roll = rng.random()
        if roll < 0.15:
            raw.update(MALFORMED[kinds[i % len(kinds)]])
        elif roll < 0.17:
            key = b"clm\x00bad"
        value = codec.encode_claim(raw)
        if rng.random() < 0.01:
            value = value[:-3]  # truncated: a dead letter
        records.append(Rec(value, offset=i, partition=i % 3, key=key, topic="claims"))
        if rng.random() < 0.02:
            records.append(
                Rec(value, offset=i, partition=i % 3, key=key, topic="claims")
            )  # redelivered: a duplicate
    return records


def _reference(judgement: Judgement, codec: Codec, at: datetime) -> Outgoing:
    """The route as it was: the result built and written whole, the counts from the decision."""
    if judgement.error is not None or judgement.claim is None or judgement.decision is None:
        return route(judgement, codec=codec, settings=SETTINGS, at=at)
    claim, decision, record = judgement.claim, judgement.decision, judgement.record
    source = SourceCoordinates(record.topic, record.partition, record.offset)
    result = build_result(
        claim, decision, source=source, worker_version=__version__, selection=judgement.selection
    )
    return Outgoing(
        topic=SETTINGS.results_topic,
        partition=record.partition,
        key=claim.claim_id.encode(),
        value=codec.encode_result(result),
        headers=[(EVENT_ID_HEADER, claim.event_id.encode())],
        outcome=decision.outcome,
        reason_codes=tuple(c.reason_code for c in decision.criteria if c.status != CriterionStatus.MET)
        if decision.outcome in NOT_APPROVED
        else (),
        reject_codes=decision.reject_codes,
        criteria=tuple((c.criterion_id, c.status) for c in decision.criteria),
        claim_id=claim.claim_id,
        event_id=claim.event_id,
        event_time=claim.event_time,
        decide_s=judgement.decide_s,
    )


def _run(records: list[Rec], batch: int = 250) -> tuple[list[Outgoing], list[Outgoing], Counter[str]]:
    """Judge and route ``records`` in batches, each at its own decision time: (lean, reference, outcomes)."""
    codec, reference_codec = Codec(), Codec()
    seen, decider = SeenEvents(100_000), Decider(POLICY)
    lean: list[Outgoing] = []
    expected: list[Outgoing] = []
    outcomes: Counter[str] = Counter()
    for start in range(0, len(records), batch):
        at = START + timedelta(seconds=start)
        for record in records[start : start + batch]:
            judgement = judge(record, codec=codec, seen=seen, decider=decider, decided_at=at)
            out = route(judgement, codec=codec, settings=SETTINGS, at=at)
            lean.append(out)
            expected.append(_reference(judgement, reference_codec, at))
            outcomes[out.outcome.value if out.outcome else str(out.error_class)] += 1
            if out.event_id is not None:
                seen.stage(record.partition, out.event_id)
    return lean, expected, outcomes


class TestLeanPath:
    """The lean path's records equal the reference path's, field for field and byte for byte."""

    def test_every_malformed_field_of_bad_claims_is_in_the_mix(self):
        """The mix holds one malformed value for each field path bad_claims names a reject code for."""
        fields = set(bad_claims._REJECT_FOR_FIELD)
        assert fields - _STRUCTURAL <= set(MALFORMED)

    def test_seeded_mix_writes_the_reference_bytes(self):
        """6,000 seeded records: every output's topic, key, value, headers and counts equal the reference."""
        lean, expected, outcomes = _run(_mix(Codec(), 6_000, seed=29))
        assert len(lean) == len(expected) > 6_000
        for got, want in zip(lean, expected, strict=True):
            assert got == want
        # The mix reaches every branch the bytes could differ on.
        for outcome in (Outcome.NOT_APPLICABLE, Outcome.APPROVED, Outcome.PENDED, Outcome.REFERRED):
            assert outcomes[outcome.value] > 10, outcome
        for outcome in (Outcome.REVERSED, Outcome.REJECTED):
            assert outcomes[outcome.value] > 10, outcome
        assert outcomes["DUPLICATE_EVENT"] > 0
        assert outcomes["TRUNCATED"] + outcomes["CORRUPT"] > 0

    def test_the_same_records_twice_write_the_same_bytes(self):
        """A second pass over the same records (remembered decisions and parts) writes the first pass's bytes."""
        records = _mix(Codec(), 1_500, seed=7)
        first, _, _ = _run(records)
        second, _, _ = _run(records)
        assert [o.value for o in first] == [o.value for o in second]

    def test_naive_event_time_falls_back_to_the_whole_record(self):
        """A claim whose event time has no zone is written as encode_result writes it (fastavro's path)."""
        codec = Codec()
        claim = make_claim(ndc=_OTHER[0]).model_copy(update={"event_time": datetime(2025, 3, 10, 9, 30)})  # noqa: DTZ001 - the case under test
        decision = Decider(POLICY).decide(claim, START)
        source = SourceCoordinates("claims", 0, 5)
        want = codec.encode_result(build_result(claim, decision, source=source, worker_version=__version__))
        for _ in range(3):  # first sight, second (runs made), third (runs reused)
            assert codec.encode_decided(claim, decision, source, __version__) == want


def test_one_decision_under_two_selections_writes_each_its_own_bytes():
    """The remembered runs are per selection: IN_EFFECT and PINNED results of one decision differ where they should."""
    from worker.contracts.codes import PolicySelection  # noqa: PLC0415

    codec = Codec()
    claim = make_claim(ndc=_OTHER[0])
    decision = Decider(POLICY).decide(claim, START)
    source = SourceCoordinates("claims", 0, 5)
    wanted = {
        selection: codec.encode_result(
            build_result(claim, decision, source=source, worker_version=__version__, selection=selection)
        )
        for selection in (PolicySelection.IN_EFFECT, PolicySelection.PINNED)
    }
    assert wanted[PolicySelection.IN_EFFECT] != wanted[PolicySelection.PINNED]
    for selection in (PolicySelection.IN_EFFECT, PolicySelection.PINNED) * 3:  # runs made, then reused
        assert codec.encode_decided(claim, decision, source, __version__, selection) == wanted[selection]


@pytest.fixture(scope="module")
def results() -> tuple[Codec, list[dict[str, Any]]]:
    """Result records of the seeded mix's decided claims."""
    codec = Codec()
    seen, decider = SeenEvents(0), Decider(POLICY)
    out = []
    for record in _mix(codec, 800, seed=3):
        judgement = judge(record, codec=codec, seen=seen, decider=decider, decided_at=START)
        if judgement.claim is not None and judgement.decision is not None:
            source = SourceCoordinates(record.topic, record.partition, record.offset)
            out.append(build_result(judgement.claim, judgement.decision, source=source, worker_version="t"))
    return codec, out


class TestSplice:
    """compile_splice writes what compile_writer writes, from the runs of the fixed fields."""

    def test_splice_equals_the_whole_writer(self, results):
        """For every result: runs of the fixed fields plus the variable ones equal the compiled writer's body."""
        codec, records = results
        schema = codec._families["result"].current.parsed
        whole = compile_writer(schema)
        variable = ("claim_id", "source_event_id", "transaction_code", "event_time", "source")
        splice = compile_splice(schema, variable)
        assert whole is not None
        assert splice is not None
        runs, write = splice
        assert len(records) > 500
        for record in records:
            assert write(runs(record), *(record[name] for name in variable)) == whole(record)

    def test_fields_out_of_order_or_missing_are_refused(self, results):
        """A variable field list out of schema order, or naming no field, compiles to None."""
        schema = results[0]._families["result"].current.parsed
        assert compile_splice(schema, ("source_event_id", "claim_id")) is None
        assert compile_splice(schema, ("claim_id", "no_such_field")) is None

    def test_a_value_the_writer_does_not_cover_raises_unsupported(self, results):
        """A variable value of the wrong type raises Unsupported, as the compiled writer would."""
        codec, records = results
        schema = codec._families["result"].current.parsed
        splice = compile_splice(schema, ("claim_id",))
        assert splice is not None
        runs, write = splice
        with pytest.raises(Unsupported):
            write(runs(records[0]), 42)
