"""The worker's per-record step (judge, then route) with the decisions rework: REJECTED answers, referrals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from tests.unit.claims import make_claim
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import Outcome
from worker.policy import catalog_choice, default_policy
from worker.runtime.judge import Decider, judge
from worker.runtime.route import route
from worker.state.dedupe import SeenEvents

SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
DECIDED_AT = datetime(2025, 3, 11, 8, 15, tzinfo=UTC)


@dataclass
class _Record:
    """A consumed record as the pipeline reads it."""

    value: bytes
    offset: int = 0
    topic: str = "claims"
    partition: int = 0
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def adjudicate(record, *, codec, settings, seen, policy, decided_at):
    """Judge and route one record as the worker's batch step does, staging its event id once sent."""
    judgement = judge(
        record,
        codec=codec,
        seen=seen,
        decided_at=decided_at,
        decider=Decider(policy, automated_denials=settings.automated_denials),
    )
    out = route(judgement, codec=codec, settings=settings, at=decided_at)
    if out.event_id is not None:
        seen.stage(record.partition, out.event_id)
    return out


@pytest.fixture(scope="module")
def codec():
    """One codec for the module."""
    return Codec()


def _bad_npi(codec, **overrides):
    raw = make_claim(**overrides).model_dump()
    raw["prescriber"]["npi"] = "1234567890"
    return codec.encode_claim(raw)


def test_malformed_npi_is_answered_rejected_25_not_dead_lettered(codec):
    """A claim with a bad NPI check digit becomes a REJECTED result (reject 25) on the results topic."""
    out = adjudicate(
        _Record(_bad_npi(codec)),
        codec=codec,
        settings=SETTINGS,
        seen=SeenEvents(100),
        policy=default_policy(),
        decided_at=DECIDED_AT,
    )
    assert out.topic == SETTINGS.results_topic
    assert out.outcome is Outcome.REJECTED
    assert out.error_class is None
    result = codec.decode_result(out.value)
    assert (result["outcome"], result["reject_codes"]) == ("REJECTED", ["25"])
    assert result["policy_version"] == default_policy().version


def test_redelivered_malformed_claim_is_a_duplicate_dead_letter(codec):
    """The same malformed event twice in one batch is answered once; the second is a DUPLICATE_EVENT."""
    seen = SeenEvents(100)
    value = _bad_npi(codec)
    first = adjudicate(
        _Record(value),
        codec=codec,
        settings=SETTINGS,
        seen=seen,
        policy=default_policy(),
        decided_at=DECIDED_AT,
    )
    second = adjudicate(
        _Record(value, offset=1),
        codec=codec,
        settings=SETTINGS,
        seen=seen,
        policy=default_policy(),
        decided_at=DECIDED_AT,
    )
    assert first.outcome is Outcome.REJECTED
    assert second.error_class is not None
    assert second.error_class.value == "DUPLICATE_EVENT"


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        pytest.param({}, Outcome.REFERRED, id="default-refers-not-met"),
        pytest.param({"CLAIMS_AUTOMATED_DENIALS": "true"}, Outcome.DENIED, id="opt-in-denies-not-met"),
    ],
)
def test_not_met_is_referred_unless_the_plan_opts_in(codec, env, outcome):
    """Criteria not met give REFERRED by default and DENIED only with CLAIMS_AUTOMATED_DENIALS=true."""
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env})
    value = codec.encode_claim(make_claim(dx=("C34.90", "C78.7")))
    out = adjudicate(
        _Record(value),
        codec=codec,
        settings=settings,
        seen=SeenEvents(100),
        policy=catalog_choice(settings.policy).named,
        decided_at=DECIDED_AT,
    )
    assert out.outcome is outcome
    assert out.reason_codes == ("OTHER_PRIMARY_CANCER",)
