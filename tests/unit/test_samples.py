"""Tests of the synthetic samples: valid, obviously fake, cover the policy paths, decode, and dated from their day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from worker.contracts.codec import Codec
from worker.contracts.codes import DecisionSource, Outcome, TransactionCode
from worker.contracts.model import Claim, npi_is_valid
from worker.contracts.pa_request import decode_pa_request, encode_pa_request, request_claim
from worker.contracts.registry import load_schemas
from worker.errors import BadRecord, DeadLetterClass, DecodeError, MalformedClaim
from worker.policy import Facts, decide, default_policy
from worker.samples import (
    MEMBER_AGE_YEARS,
    SERVICE_DAYS_BEFORE,
    Sample,
    demo_fills,
    demo_request,
    directory_samples,
    poison_records,
    sample_claims,
    sample_records,
)
from worker.state.authorizations import Authorizations

NOW = datetime(2026, 12, 7, 14, 30, 5, 123456, tzinfo=UTC)
# Days that break naive date arithmetic: New Year, a leap day, a month end, and a zone east of UTC
# whose local date is already the next day.
NOWS = [
    pytest.param(NOW, id="a-weekday"),
    pytest.param(datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC), id="new-year"),
    pytest.param(datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), id="leap-day"),
    pytest.param(datetime(2031, 3, 31, 12, 0, tzinfo=UTC), id="month-end"),
    pytest.param(datetime(2027, 6, 30, 23, 30, tzinfo=timezone(timedelta(hours=14))), id="utc+14"),
]
TIMELY_FILING = timedelta(days=365)  # the lead's default limit (issue 23, rule 3)
POLICY = default_policy()


@pytest.fixture(scope="module")
def codec():
    """One codec for the module."""
    return Codec()


def test_labels_are_unique_and_cover_a_dozen_paths():
    """There are at least twelve samples, each with a distinct label, one of them written with claim v1."""
    samples = sample_claims(NOW)
    labels = [sample.label for sample in samples]
    assert len(labels) >= 12
    assert len(set(labels)) == len(labels)
    assert all(isinstance(sample, Sample) for sample in samples)
    assert [s.label for s in samples if s.schema_version == 1] == ["approve-v1-writer"]


def test_samples_are_obviously_synthetic():
    """Every patient is a TEST/SYNTH person and every NPI passes the check digit."""
    for _, claim, _ in sample_claims(NOW):
        assert isinstance(claim, Claim)
        assert claim.patient.last_name == "TEST"
        assert claim.patient.member_id.startswith("SYNTH")
        assert claim.claim_id.startswith("SYNTH")
        assert npi_is_valid(claim.prescriber.npi)


def test_samples_cover_the_required_cases():
    """The samples include both Ixempra NDCs, capecitabine, C79.81, no diagnosis, B2 and B3."""
    claims = [sample.claim for sample in sample_claims(NOW)]
    products = {claim.product.product_id for claim in claims}
    assert {"70020191001", "70020-1911-01", "00093747489"} <= products
    codes = {dx.code for claim in claims for dx in claim.diagnoses}
    assert {"C50.911", "C50.912", "C78.7", "C79.81"} <= codes
    assert any(not claim.diagnoses for claim in claims)
    transactions = {claim.transaction_code for claim in claims}
    assert transactions == set(TransactionCode)


def test_sample_records_decode(codec):
    """Every encoded sample decodes to its claim and carries its schema version's fingerprint."""
    fingerprints = {(v.family, v.version): v.fingerprint for v in load_schemas()}
    samples = {sample.label: sample for sample in sample_claims(NOW)}
    for label, key, value in sample_records(codec, NOW):
        sample = samples[label]
        assert codec.decode_claim(value) == sample.claim
        assert key == sample.claim.claim_id.encode()
        assert value[2:10] == fingerprints[("claim", sample.schema_version or 2)]


def test_poison_records_are_rejected(codec):
    """Every poison record raises BadRecord: undecodable ones (dead letters) and malformed ones (REJECTED results)."""
    classes = []
    kinds = set()
    for _, value in poison_records(codec, NOW):
        with pytest.raises(BadRecord) as info:
            codec.decode_claim(value)
        classes.append(info.value.error_class)
        kinds.add(type(info.value))
    assert kinds == {DecodeError, MalformedClaim}
    assert {DeadLetterClass.NOT_AVRO, DeadLetterClass.TRUNCATED, DeadLetterClass.UNKNOWN_SCHEMA} <= set(
        classes
    )
    assert DeadLetterClass.INVALID_FIELD in classes


def _all_records(now: datetime) -> list[dict]:
    """Every claim a demo produces at ``now`` as a record: samples, directory samples, fills, readable poison."""
    codec = Codec()
    claims = [s.claim for s in [*sample_claims(now), *directory_samples(now)]] + demo_fills(now)
    records = [claim.model_dump() for claim in claims]
    for _, value in poison_records(codec, now):
        try:
            records.append(codec.decode_claim_record(value))
        except DecodeError:
            continue  # not a claim at all: it has no dates
    return records


class TestRelativeDating:
    """Samples are dated from the moment they are produced, so a demo shows current windows (rule 10)."""

    @pytest.mark.parametrize("now", NOWS)
    def test_every_date_follows_now_and_passes_the_plausibility_edits(self, now):
        """Event time is now (UTC seconds); dates of service lie in [now - 365 days, now + 1 day]; births precede them."""
        at = now.astimezone(UTC).replace(microsecond=0)
        records = _all_records(now)
        assert len(records) == 12 + 5 + 2 + 2  # samples, directory samples, fills, answered poison
        for claim in records:
            served = claim["date_of_service"]
            assert claim["event_time"] == at, claim["claim_id"]
            assert at.date() - TIMELY_FILING <= served <= at.date() + timedelta(days=1)
            born = claim["patient"]["date_of_birth"]
            assert born < served
            assert 18 <= served.year - born.year <= 100
            if claim["transaction_code"] != TransactionCode.REVERSAL:
                assert claim["quantity"] > 0, claim["claim_id"]
                assert claim["days_supply"] > 0, claim["claim_id"]

    @pytest.mark.parametrize("now", NOWS)
    def test_first_fills_are_a_few_days_old_and_reversals_name_their_date(self, now):
        """First fills were served SERVICE_DAYS_BEFORE days before now; B2 and B3 carry their original's date of service."""
        today = now.astimezone(UTC).date()
        samples = {s.label: s.claim for s in [*sample_claims(now), *directory_samples(now)]}
        assert {c.date_of_service for c in samples.values()} == {today - timedelta(days=SERVICE_DAYS_BEFORE)}
        original = samples["approve-codes"]
        for label in ("reversal-b2", "rebill-b3"):
            assert samples[label].original_claim_id == original.claim_id
            assert samples[label].date_of_service == original.date_of_service
        assert {c.patient.date_of_birth for c in samples.values()} == {
            date(today.year - MEMBER_AGE_YEARS, 6, 15)
        }

    @pytest.mark.parametrize("now", NOWS)
    def test_approvals_are_current_and_the_later_fills_pay_on_file(self, now):
        """The sample approval and the demo request's approval hold today, and both later fills (served today) pay on file."""
        today = now.astimezone(UTC).date()
        decided_at = now.astimezone(UTC)
        store = Authorizations(b"unit-test-secret-0123456789", "store")
        first = next(s.claim for s in sample_claims(now) if s.label == "approve-codes")
        request = request_claim(decode_pa_request(encode_pa_request(demo_request(now))))
        assert request.event_time == decided_at.replace(microsecond=0)
        assert request.date_of_service == today
        for claim, dispensed in ((first, True), (request, False)):
            decision = decide(claim, Facts(), POLICY, decided_at, dispensed=dispensed)
            assert decision.outcome is Outcome.APPROVED, claim.claim_id
            assert decision.authorization_effective is not None
            assert decision.authorization_expiration is not None
            assert decision.authorization_effective <= today <= decision.authorization_expiration
            assert store.issue(claim, decision, source_kind="claim") is not None
        store.commit()
        fills = demo_fills(now)
        assert [fill.date_of_service for fill in fills] == [today, today]
        for fill in fills:
            assert not fill.diagnoses
            assert fill.attestation is None
            paid = store.decide(
                fill,
                Facts(),
                POLICY,
                decided_at,
                lambda: decide(fill, Facts(), POLICY, decided_at),  # noqa: B023
            )
            assert (paid.outcome, paid.decision_source) == (Outcome.APPROVED, DecisionSource.ON_FILE), (
                fill.claim_id
            )

    def test_the_same_now_gives_the_same_samples(self):
        """Given the same moment, samples, records, fills and the request are identical (no hidden clock)."""
        later = NOW + timedelta(microseconds=1)  # the same second
        assert sample_claims(NOW) == sample_claims(later)
        assert sample_records(Codec(), NOW) == sample_records(Codec(), later)
        assert poison_records(Codec(), NOW) == poison_records(Codec(), later)
        assert demo_fills(NOW) == demo_fills(later)
        assert demo_request(NOW) == demo_request(later)

    def test_a_naive_now_is_refused(self):
        """A now without a time zone is ambiguous and refused with ValueError."""
        with pytest.raises(ValueError, match="timezone-aware"):
            sample_claims(datetime(2026, 12, 7, 14, 30))  # noqa: DTZ001 - the point of the test

    def test_without_a_request_topic_there_is_one_fill(self):
        """Without the request door the demo produces only the approve-codes member's fill."""
        assert [fill.claim_id for fill in demo_fills(NOW, request_member=False)] == ["SYNTH-CLM-0001-FILL2"]
