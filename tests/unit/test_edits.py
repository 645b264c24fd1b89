"""Plausibility edits (issue 23 rule 3): dates against the claim's own submission time, quantities, days supply."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.claims import make_claim
from tests.unit.worker_runs import results_of
from worker.contracts.codes import DecisionSource, Outcome
from worker.contracts.pa_request import decode_pa_request, encode_pa_request, request_claim
from worker.policy import Facts, decide, default_policy
from worker.policy.edits import failed_edits, submission_day
from worker.runtime.judge import Decider, no_facts
from worker.state.authorizations import Authorizations

POLICY = default_policy()
SUBMITTED = datetime(2025, 3, 10, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def _claim(dos: date, **fields):
    return make_claim(dos=dos.isoformat(), event_time=SUBMITTED, **fields)


def _codes(decision):
    return [(reject.code, reject.field) for reject in decision.rejects]


EDIT_CASES = [
    pytest.param(
        {"dos": SUBMITTED.date() + DAY}, Outcome.APPROVED, [], id="dos-one-day-after-submission-passes"
    ),
    pytest.param(
        {"dos": SUBMITTED.date() + 2 * DAY},
        Outcome.REJECTED,
        [("15", "date_of_service")],
        id="dos-two-days-after-submission-is-15",
    ),
    pytest.param(
        {"dos": SUBMITTED.date() - 365 * DAY},
        Outcome.APPROVED,
        [],
        id="dos-365-days-old-passes-timely-filing",
    ),
    pytest.param(
        {"dos": SUBMITTED.date() - 366 * DAY},
        Outcome.REJECTED,
        [("81", "date_of_service")],
        id="dos-366-days-old-is-81-claim-too-old",
    ),
    pytest.param(
        {
            "dos": SUBMITTED.date(),
            "patient": {"member_id": "M1", "last_name": "SYNTHETIC", "date_of_birth": "2025-03-11"},
        },
        Outcome.REJECTED,
        [("09", "patient.date_of_birth")],
        id="birth-after-dos-is-09",
    ),
    pytest.param(
        {"dos": SUBMITTED.date(), "quantity": 0},
        Outcome.REJECTED,
        [("E7", "quantity")],
        id="quantity-0-is-E7",
    ),
    pytest.param(
        {"dos": SUBMITTED.date(), "quantity": 10_000_000},
        Outcome.REJECTED,
        [("E7", "quantity")],
        id="absurd-quantity-is-E7",
    ),
    pytest.param(
        {"dos": SUBMITTED.date(), "days_supply": 0},
        Outcome.REJECTED,
        [("19", "days_supply")],
        id="days-supply-0-is-19",
    ),
    pytest.param(
        {"dos": SUBMITTED.date(), "days_supply": 366},
        Outcome.REJECTED,
        [("19", "days_supply")],
        id="days-supply-past-the-limit-is-19",
    ),
    pytest.param(
        {"dos": SUBMITTED.date() + 3 * DAY, "quantity": 0, "days_supply": 0},
        Outcome.REJECTED,
        [("15", "date_of_service"), ("E7", "quantity"), ("19", "days_supply")],
        id="every-failed-edit-is-named",
    ),
]


@pytest.mark.parametrize(("fields", "outcome", "rejects"), EDIT_CASES)
def test_plausibility_edits(fields, outcome, rejects):
    """Each implausible date or quantity is REJECTED with its NCPDP code and field; plausible ones are decided as usual."""
    decision = decide(_claim(**fields), Facts(), POLICY, SUBMITTED)
    assert decision.outcome is outcome
    if outcome is Outcome.REJECTED:
        assert _codes(decision) == rejects
        assert decision.decision_source is DecisionSource.FIELD_EDIT
        assert decision.authorization_number is None
        assert decision.authorization_effective is None
        assert decision.criteria == ()
        assert "date_of_birth" not in decision.summary or "1970" not in decision.summary


def test_edits_compare_with_the_claims_submission_not_the_decision_time():
    """The same claim decided years later (a replay) gets the same answer: only event_time counts, never decided_at."""
    claim = _claim(SUBMITTED.date())
    now = decide(claim, Facts(), POLICY, SUBMITTED)
    later = decide(claim, Facts(), POLICY, SUBMITTED + 1000 * DAY)
    assert now.outcome is later.outcome is Outcome.APPROVED
    old = _claim(SUBMITTED.date() + 5 * DAY)
    assert decide(old, Facts(), POLICY, SUBMITTED - 400 * DAY).outcome is Outcome.REJECTED


def test_submission_day_is_the_utc_date_of_event_time():
    """A claim's submission day is its event_time's UTC date, whatever offset the sender wrote."""
    late = datetime(2025, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-10)))  # 2025-03-11 09:30 UTC
    claim = make_claim(dos="2025-03-12", event_time=late.isoformat())
    assert submission_day(claim) == date(2025, 3, 11)
    assert decide(claim, Facts(), POLICY, SUBMITTED).outcome is Outcome.APPROVED  # one day after: allowed


def test_a_reversal_and_another_product_are_not_edited():
    """A B2 (approves nothing) is REVERSED whatever its quantity; another drug stays NOT_APPLICABLE (downstream edits it)."""
    reversal = _claim(SUBMITTED.date() + 10 * DAY, tx="B2", quantity=0, days_supply=0)
    assert decide(reversal, Facts(), POLICY, SUBMITTED).outcome is Outcome.REVERSED
    other = _claim(SUBMITTED.date() + 10 * DAY, ndc="00093-7474-89")
    assert decide(other, Facts(), POLICY, SUBMITTED).outcome is Outcome.NOT_APPLICABLE


def test_an_unidentified_product_is_edited_too():
    """A product that may be Ixempra (unidentified) is edited before it pends: an implausible date is REJECTED."""
    claim = _claim(SUBMITTED.date() + 5 * DAY, ndc="ABC", qualifier="07")
    assert _codes(decide(claim, Facts(), POLICY, SUBMITTED)) == [("15", "date_of_service")]


def test_an_implausible_fill_never_pays_on_file_and_puts_nothing_on_file():
    """With an authorization on file, a fill dated in the future is REJECTED, not paid on file; nothing new is issued."""
    store = Authorizations(b"unit-test-secret-0123456789", "store")
    approvable = _claim(SUBMITTED.date(), claim_id="first")
    first = Decider(POLICY, lookup_facts=no_facts, automated_denials=False, authorizations=store).decide(
        approvable, SUBMITTED
    )
    assert first.outcome is Outcome.APPROVED
    assert store.issue(approvable, first) is not None
    store.commit()
    fill = _claim(SUBMITTED.date() + 5 * DAY, claim_id="fill", event_id="e2", dx=())
    decision = Decider(POLICY, lookup_facts=no_facts, automated_denials=False, authorizations=store).decide(
        fill, SUBMITTED
    )
    assert decision.outcome is Outcome.REJECTED
    assert decision.decision_source is DecisionSource.FIELD_EDIT
    assert store.issue(fill, decision) is None
    good_fill = _claim(SUBMITTED.date(), claim_id="fill2", event_id="e3", dx=())
    paid = Decider(POLICY, lookup_facts=no_facts, automated_denials=False, authorizations=store).decide(
        good_fill, SUBMITTED
    )
    assert paid.decision_source is DecisionSource.ON_FILE


def _request(start: date):
    return {
        "request_id": "REQ-1",
        "requested_at": SUBMITTED,
        "patient": {
            "member_id": "M1",
            "first_name": None,
            "last_name": "L",
            "date_of_birth": date(1960, 1, 1),
        },
        "prescriber": {"npi": "1234567893", "taxonomy": "207RX0202X"},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": "70020-1910-01", "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": start,
    }


def test_a_pa_request_is_edited_on_its_dates_but_not_on_a_quantity_it_does_not_carry():
    """A request starting today is approved (no quantity needed); one starting in a week is REJECTED 15: no window after submission + 1 day."""
    today = request_claim(decode_pa_request(encode_pa_request(_request(SUBMITTED.date()))))
    approved = decide(today, Facts(), POLICY, SUBMITTED, dispensed=False)
    assert approved.outcome is Outcome.APPROVED
    later = request_claim(decode_pa_request(encode_pa_request(_request(SUBMITTED.date() + 7 * DAY))))
    assert failed_edits(later, POLICY, dispensed=False)
    assert _codes(decide(later, Facts(), POLICY, SUBMITTED, dispensed=False)) == [("15", "date_of_service")]


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(min_value=-400, max_value=30),
    quantity=st.sampled_from([0, 0.5, 1, 4, 10_000_000]),
    days=st.integers(min_value=0, max_value=999),
)
def test_no_window_ever_starts_after_submission_plus_a_day(offset, quantity, days):
    """Whatever the dates and quantities, an approval's window starts no later than the day after submission."""
    claim = _claim(SUBMITTED.date() + offset * DAY, quantity=quantity, days_supply=days)
    decision = decide(claim, Facts(), POLICY, SUBMITTED)
    if decision.outcome is Outcome.APPROVED:
        assert decision.authorization_effective is not None
        assert decision.authorization_effective <= SUBMITTED.date() + DAY
        assert SUBMITTED.date() - 365 * DAY <= decision.authorization_effective
        assert 0 < claim.quantity <= 9_999_999.999
        assert 0 < claim.days_supply <= 365


def test_the_worker_answers_an_implausible_claim_with_a_rejected_result():
    """Through decode -> decide -> result on the worker (fakes for Kafka): REJECTED, FIELD_EDIT, NCPDP answer R with 15."""
    claims = [
        _claim(SUBMITTED.date() + 9 * DAY, claim_id="future"),
        _claim(SUBMITTED.date(), claim_id="fine", event_id="e-fine"),
    ]
    results = results_of(claims, at=SUBMITTED)
    future = results["future"]
    assert future["outcome"] == "REJECTED"
    assert future["decision_source"] == "FIELD_EDIT"
    assert future["reject_codes"] == ["15"]
    assert future["ncpdp"]["response_status"] == "R"
    assert future["authorization_number"] is None
    assert results["fine"]["outcome"] == "APPROVED"
