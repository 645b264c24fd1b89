"""Issue 23 on the authorization store: the fill's own prescriber, unique PA numbers, quoted numbers, revocation codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from tests.unit.claims import NPIS, make_claim
from tests.unit.fakes import FakeCluster
from tests.unit.worker_runs import results_of
from worker.cli import authorizations as cli_authorizations
from worker.cli import main
from worker.contracts.codec import Codec
from worker.contracts.codes import DecisionSource, Outcome
from worker.contracts.pa_request import REQUEST_PHARMACY, pa_decision, request_claim
from worker.contracts.results import SourceCoordinates, build_result
from worker.errors import ClaimsWorkerError
from worker.policy import decide, default_policy
from worker.policy.decision import authorization_number, is_pa_number
from worker.policy.facts import Facts, ProviderFacts, ProviderStatus
from worker.runtime.judge import Decider
from worker.state.authorization import RevocationReason, decode_authorization, encode_authorization, revoked
from worker.state.authorization_table import AuthorizationMetrics
from worker.state.authorizations import Authorizations

POLICY = default_policy()
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SECRET = b"unit-test-secret-0123456789"
STORE = "pharmacy.authorizations"
PHARMACY = "1234567893"  # make_claim's service provider id
# Found by a birthday search over authorization_number for one pharmacy (0.4 s): the same PA number.
COLLIDING = ("clm-023758", "clm-161685")
COLLIDING_REQUESTS = ("REQ-149753", "REQ-176187")
MEMBER_A = {"member_id": "SYNTHMEMA001", "last_name": "SYNTHETIC", "date_of_birth": "1961-01-01"}
MEMBER_B = {"member_id": "SYNTHMEMB002", "last_name": "SYNTHETIC", "date_of_birth": "1962-02-02"}
SENTINEL = "ZZPHI867530"  # 11 characters of free text in 462-EV: must never be echoed


def _usual(claim, facts=None):
    return lambda: decide(claim, facts or Facts(), POLICY, NOW)


def _directory(status: ProviderStatus) -> Facts:
    return Facts(prescriber=ProviderFacts(npi=NPIS[0], status=status), directory_version="2025-03-01")


def _approve(store: Authorizations, claim_id: str, patient: dict) -> str:
    claim = make_claim(claim_id=claim_id, event_id=f"e-{claim_id}", patient=patient)
    decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
    assert decision.outcome is Outcome.APPROVED
    assert store.issue(claim, decision) is not None
    store.commit()
    assert decision.authorization_number is not None
    return decision.authorization_number


def _fill(n: int, patient: dict, **fields):
    """A later fill without clinical data, whose prescriber sends no taxonomy (the directory speaks for it)."""
    return make_claim(
        claim_id=f"fill-{n}",
        event_id=f"ef-{n}",
        patient=patient,
        dos="2025-06-01",
        dx=(),
        taxonomy=None,
        **fields,
    )


class TestPrescriberOnFile:
    @pytest.mark.parametrize(
        "status", [ProviderStatus.DEACTIVATED, ProviderStatus.ORGANISATION, ProviderStatus.NOT_FOUND]
    )
    def test_a_ruled_out_prescriber_is_not_paid_on_file_and_the_authorization_stays(self, status):
        """A fill whose prescriber the directory rules out pends with 56, names the authorization not used, and the authorization still pays the next fill."""
        registry = CollectorRegistry()
        store = Authorizations(SECRET, STORE, metrics=AuthorizationMetrics(registry))
        number = _approve(store, "approve-1", MEMBER_A)
        fill, facts = _fill(1, MEMBER_A), _directory(status)
        decision = store.decide(fill, facts, POLICY, NOW, _usual(fill, facts))
        assert decision.outcome is Outcome.PENDED
        assert "56" in decision.reject_codes
        assert decision.decision_source is not DecisionSource.ON_FILE
        assert f"Prior authorization {number} on file was not used: the prescriber NPI" in decision.summary
        assert "It stays on file." in decision.summary
        assert store.issue(fill, decision) is None
        store.commit()
        assert (
            registry.get_sample_value("claims_worker_on_file_not_used_total", {"prescriber": status.value})
            == 1
        )
        held = store.table.get(number)
        assert held is not None
        assert not held.revoked
        active = _directory(ProviderStatus.ACTIVE)
        again = _fill(2, MEMBER_A)
        paid = store.decide(again, active, POLICY, NOW, _usual(again, active))
        assert (paid.outcome, paid.decision_source, paid.authorization_number) == (
            Outcome.APPROVED,
            DecisionSource.ON_FILE,
            number,
        )

    def test_a_quoted_own_number_does_not_rescue_a_ruled_out_prescriber(self):
        """Quoting the member's own valid PA number does not pay a fill from a deactivated prescriber."""
        store = Authorizations(SECRET, STORE)
        number = _approve(store, "approve-2", MEMBER_A)
        fill, facts = (
            _fill(3, MEMBER_A, prior_authorization_number=number),
            _directory(ProviderStatus.DEACTIVATED),
        )
        decision = store.decide(fill, facts, POLICY, NOW, _usual(fill, facts))
        assert decision.outcome is Outcome.PENDED
        assert "56" in decision.reject_codes
        assert "3X" not in decision.reject_codes  # the number is on file
        assert f"Prior authorization {number} on file was not used" in decision.summary

    def test_without_a_directory_the_on_file_payment_is_unchanged(self):
        """With no directory read (facts.prescriber is None) the fill pays on file as before."""
        store = Authorizations(SECRET, STORE)
        number = _approve(store, "approve-3", MEMBER_A)
        fill = _fill(4, MEMBER_A)
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert (decision.decision_source, decision.authorization_number) == (DecisionSource.ON_FILE, number)

    @pytest.mark.parametrize("door", ["claim", "request"])
    def test_the_decider_looks_the_facts_up_once_and_checks_the_prescriber(self, door):
        """The worker's Decider (claims and PA requests) looks up once and pends a deactivated prescriber's fill with 56."""
        store = Authorizations(SECRET, STORE)
        _approve(store, "approve-4", MEMBER_A)
        if door == "claim":
            claim = _fill(5, MEMBER_A)
        else:
            claim = request_claim(
                {
                    "request_id": "REQ-0005",
                    "requested_at": datetime(2025, 6, 1, 9, 0, tzinfo=UTC),  # asks for today's start
                    "patient": MEMBER_A,
                    "prescriber": {"npi": NPIS[0], "taxonomy": None},
                    "product": {"product_id": "70020191001", "qualifier": "03"},
                    "diagnoses": [],
                    "requested_start": "2025-06-01",
                }
            )
        lookups: list[str] = []

        def lookup(looked: object) -> Facts:
            lookups.append(str(looked))
            return _directory(ProviderStatus.DEACTIVATED)

        decision = Decider(
            POLICY,
            lookup_facts=lookup,
            automated_denials=False,
            authorizations=store,
            dispensed=door == "claim",
        ).decide(claim, NOW)
        assert len(lookups) == 1
        assert decision.outcome is Outcome.PENDED
        assert "56" in decision.reject_codes
        assert "on file was not used" in decision.summary
        if door == "request":
            answer = pa_decision(claim.claim_id, decision)
            assert (answer["outcome"], answer["pa_number"]) == ("PENDED", None)


class TestUniqueNumbers:
    def test_the_search_pair_collides(self):
        """The fixture pair of claim ids (and of request ids) has one PA number: the collision these tests force."""
        assert authorization_number(POLICY.policy_id, PHARMACY, COLLIDING[0]) == authorization_number(
            POLICY.policy_id, PHARMACY, COLLIDING[1]
        )
        assert authorization_number(POLICY.policy_id, REQUEST_PHARMACY, COLLIDING_REQUESTS[0]) == (
            authorization_number(POLICY.policy_id, REQUEST_PHARMACY, COLLIDING_REQUESTS[1])
        )

    def test_a_colliding_approval_is_renumbered_counted_logged_and_both_members_pay_on_file(self):
        """The second approval gets the first free rehash, its record carries it, one collision is counted and logged without PHI, and both members' fills pay."""
        registry = CollectorRegistry()
        store = Authorizations(
            SECRET, STORE, metrics=AuthorizationMetrics(registry), log=structlog.get_logger()
        )
        first = _approve(store, COLLIDING[0], MEMBER_A)
        claim = make_claim(claim_id=COLLIDING[1], event_id="e-b", patient=MEMBER_B)
        with capture_logs() as logs:
            decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
        resolved = authorization_number(POLICY.policy_id, PHARMACY, COLLIDING[1], 1)
        assert first == authorization_number(POLICY.policy_id, PHARMACY, COLLIDING[1])
        assert decision.authorization_number == resolved != first
        assert is_pa_number(resolved)
        record = store.issue(claim, decision)
        assert record is not None
        assert record.key == resolved.encode()
        assert decode_authorization(record.key, record.value).number == resolved
        assert registry.get_sample_value("claims_worker_authorization_number_collisions_total") == 0
        store.commit()
        assert registry.get_sample_value("claims_worker_authorization_number_collisions_total") == 1
        assert [(e["event"], e["claim_id"], e["pa_number"], e["resolved_pa_number"]) for e in logs] == [
            ("authorization_number_collision", COLLIDING[1], first, resolved)
        ]
        assert all(value not in repr(logs) for value in (*MEMBER_B.values(), *MEMBER_A.values()))
        result = build_result(claim, decision, source=SourceCoordinates("claims", 0, 7), worker_version="t")
        assert result["authorization_number"] == resolved
        for n, (member, number) in enumerate(((MEMBER_A, first), (MEMBER_B, resolved))):
            fill = _fill(10 + n, member)
            paid = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
            assert (paid.decision_source, paid.authorization_number) == (DecisionSource.ON_FILE, number)

    def test_a_collision_with_an_approval_staged_in_the_same_batch_is_renumbered(self):
        """An uncommitted approval earlier in the batch holds its number too: the second is renumbered before either commits."""
        store = Authorizations(SECRET, STORE)
        a = make_claim(claim_id=COLLIDING[0], event_id="e-a", patient=MEMBER_A)
        b = make_claim(claim_id=COLLIDING[1], event_id="e-b", patient=MEMBER_B)
        first = store.decide(a, Facts(), POLICY, NOW, _usual(a))
        assert store.issue(a, first) is not None
        second = store.decide(b, Facts(), POLICY, NOW, _usual(b))
        assert second.authorization_number != first.authorization_number
        assert store.issue(b, second) is not None
        store.commit()
        assert len(store.table) == 2

    def test_a_replay_with_the_store_pinned_reproduces_the_number_and_a_redelivery_keeps_it(self):
        """A pinned store holding the first approval renumbers the claim exactly as live did; the claim's own (revoked) record keeps its number."""
        live = Authorizations(SECRET, STORE)
        first = live.table.get(_approve(live, COLLIDING[0], MEMBER_A))
        assert first is not None
        claim = make_claim(claim_id=COLLIDING[1], event_id="e-b", patient=MEMBER_B)
        live_number = live.decide(claim, Facts(), POLICY, NOW, _usual(claim)).authorization_number
        pinned = Authorizations(SECRET, STORE)  # as replay's seed_authorizations builds it
        pinned.table.apply(first)
        assert pinned.decide(claim, Facts(), POLICY, NOW, _usual(claim)).authorization_number == live_number
        decision = live.decide(claim, Facts(), POLICY, NOW, _usual(claim))
        record = live.issue(claim, decision)
        assert record is not None
        live.commit()
        live.table.apply(
            revoked(decode_authorization(record.key, record.value), NOW, RevocationReason.DUPLICATE)
        )
        again = live.decide(claim, Facts(), POLICY, NOW, _usual(claim))  # revoked: decided afresh
        assert again.authorization_number == live_number
        assert live.issue(claim, again) is None  # its own number: nothing new, no collision

    def test_issue_refuses_a_number_another_member_holds(self):
        """An approval that reaches issue with another member's number (not renumbered) is an error, never a silent drop."""
        store = Authorizations(SECRET, STORE)
        _approve(store, COLLIDING[0], MEMBER_A)
        claim = make_claim(claim_id=COLLIDING[1], event_id="e-b", patient=MEMBER_B)
        with pytest.raises(ClaimsWorkerError, match="another member"):
            store.issue(claim, decide(claim, Facts(), POLICY, NOW))

    def test_colliding_pa_requests_get_distinct_numbers_in_their_answers(self):
        """Two PA requests with one hashed number: the second answer carries the renumbered PA number its store record has."""
        store = Authorizations(SECRET, STORE)
        answers, keys = [], []
        for request_id, member in zip(COLLIDING_REQUESTS, (MEMBER_A, MEMBER_B), strict=True):
            claim = request_claim(
                {
                    "request_id": request_id,
                    "requested_at": NOW,
                    "patient": member,
                    "prescriber": {"npi": NPIS[0], "taxonomy": "207RX0202X"},
                    "product": {"product_id": "70020191001", "qualifier": "03"},
                    "diagnoses": [
                        {"code": "C50.911", "qualifier": "02"},
                        {"code": "C78.7", "qualifier": "02"},
                    ],
                    "disease_status": "METASTATIC",
                    "requested_start": "2025-03-10",
                }
            )
            decision = Decider(
                POLICY,
                lookup_facts=lambda _c: Facts(),
                automated_denials=False,
                authorizations=store,
                dispensed=False,
            ).decide(claim, NOW)
            record = store.issue(claim, decision, source_kind="request")
            assert record is not None
            answers.append(pa_decision(request_id, decision)["pa_number"])
            keys.append(record.key.decode())
        store.commit()
        assert answers == keys
        assert answers[0] != answers[1]

    def test_through_the_loop_result_and_store_record_agree_on_the_resolved_number(self):
        """Two colliding approvals in one batch: distinct numbers in the results, the same ones as the store records' keys."""
        cluster = FakeCluster(partitions=1)
        claims = [
            make_claim(claim_id=claim_id, event_id=f"e-{claim_id}", patient=member)
            for claim_id, member in zip(COLLIDING, (MEMBER_A, MEMBER_B), strict=True)
        ]
        registry = CollectorRegistry()
        store = Authorizations(SECRET, STORE, metrics=AuthorizationMetrics(registry))
        decoded = results_of(claims, at=NOW, cluster=cluster, registry=registry, authorizations=store)
        results = {claim_id: r["authorization_number"] for claim_id, r in decoded.items()}
        stored = sorted(p.key.decode() for p in cluster.published if p.topic == STORE)
        assert sorted(results.values()) == stored
        assert results[COLLIDING[0]] != results[COLLIDING[1]]
        assert registry.get_sample_value("claims_worker_authorization_number_collisions_total") == 1


class TestQuotedNumbers:
    def test_a_well_formed_number_not_on_file_gets_3x_and_is_named(self):
        """A quoted 11-digit Luhn-valid number that is not on file: 3X beside the pend's own codes, the number named."""
        store = Authorizations(SECRET, STORE)
        quoted = authorization_number(POLICY.policy_id, PHARMACY, "never-approved")
        fill = _fill(20, MEMBER_A, prior_authorization_number=quoted)
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert decision.outcome is Outcome.PENDED
        assert decision.reject_codes[0] == "75"
        assert decision.reject_codes[-1] == "3X"
        assert f"Quoted PA number {quoted} (462-EV) not honoured: no authorization" in decision.summary

    @pytest.mark.parametrize("sent", [SENTINEL, "12345678901", "1234567890", "4779966053\t"])
    def test_a_malformed_value_is_not_found_and_never_echoed(self, sent):
        """Free text, a bad check digit or a short value in 462-EV: 3X, and the value appears in no summary, result or log."""
        registry = CollectorRegistry()
        store = Authorizations(
            SECRET, STORE, metrics=AuthorizationMetrics(registry), log=structlog.get_logger()
        )
        fill = _fill(21, MEMBER_A, prior_authorization_number=sent)
        with capture_logs() as logs:
            decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert "3X" in decision.reject_codes
        assert (
            "The quoted PA number (462-EV) not honoured: it is not a well-formed PA number"
            in decision.summary
        )
        encoded = Codec().encode_result(
            build_result(fill, decision, source=SourceCoordinates("c", 0, 1), worker_version="t")
        )
        assert sent.strip().encode() not in encoded
        assert sent.strip() not in decision.summary
        assert sent.strip() not in repr(logs)
        store.commit()
        assert (
            registry.get_sample_value("claims_worker_quoted_pa_not_honoured_total", {"why": "malformed"}) == 1
        )

    def test_a_malformed_value_beside_the_members_own_authorization_still_pays_without_echo(self):
        """The member's own authorization pays on file (no 3X on an approval); the malformed value is not echoed."""
        store = Authorizations(SECRET, STORE)
        number = _approve(store, "approve-22", MEMBER_A)
        fill = _fill(22, MEMBER_A, prior_authorization_number=SENTINEL)
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert (decision.outcome, decision.authorization_number) == (Outcome.APPROVED, number)
        assert decision.rejects == ()
        assert SENTINEL not in decision.summary
        assert "not a well-formed PA number" in decision.summary

    def test_another_members_number_is_named_but_not_3x(self):
        """A number on file for another member is not "not found": the pend names why, without 3X."""
        store = Authorizations(SECRET, STORE)
        number = _approve(store, "approve-23", MEMBER_A)
        fill = _fill(23, MEMBER_B, prior_authorization_number=number)
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert decision.outcome is Outcome.PENDED
        assert "3X" not in decision.reject_codes
        assert "issued to another member" in decision.summary

    def test_an_approval_afresh_carries_no_3x(self):
        """A fully documented claim quoting an unknown number is approved afresh: 3X only goes on a non-approval."""
        store = Authorizations(SECRET, STORE)
        claim = make_claim(claim_id="approve-24", patient=MEMBER_A, prior_authorization_number="12345678903")
        decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
        assert decision.outcome is Outcome.APPROVED
        assert decision.rejects == ()


class TestRevocationReasons:
    def test_the_cli_lists_exactly_the_store_codes(self):
        """The revoke command's reason list is RevocationReason's codes, in order."""
        assert tuple(RevocationReason) == cli_authorizations._REASONS

    def test_codes_parse_loosely_and_free_text_is_refused(self):
        """Case, blanks and hyphens are ignored in a code; free text names no code."""
        assert RevocationReason.parse(" entered-in error ") is RevocationReason.ENTERED_IN_ERROR
        assert RevocationReason.parse("the member called, Jane Doe") is None
        assert RevocationReason.parse("") is None

    def test_an_unknown_reason_is_one_line_and_exit_2_without_echo(self, monkeypatch, capsys):
        """`authorizations revoke N --reason <free text>` prints one error line listing the codes, never the text, and exits 2 before any Kafka call."""
        monkeypatch.setenv("CLAIMS_AUTHORIZATIONS_TOPIC", STORE)
        monkeypatch.setenv("CLAIMS_MEMBER_PSEUDONYM_SECRET", SECRET.decode())
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
        code = main(["authorizations", "revoke", "12345678903", "--reason", f"called by {SENTINEL}"])
        out = capsys.readouterr()
        assert code == 2
        assert out.out == ""
        lines = out.err.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: --reason must be one of ENTERED_IN_ERROR")
        assert SENTINEL not in out.err

    def test_old_records_with_a_free_text_reason_stay_readable(self):
        """A revocation written before the codes (free text in revoked_reason) decodes and still stops payment."""
        store = Authorizations(SECRET, STORE)
        number = _approve(store, "approve-30", MEMBER_A)
        held = store.table.get(number)
        assert held is not None
        key, value = encode_authorization(revoked(held, NOW, RevocationReason.ENTERED_IN_ERROR))
        old = value.replace(b'"ENTERED_IN_ERROR"', b'"entered in error"')
        auth = decode_authorization(key, old)
        assert (auth.revoked, auth.revoked_reason) == (True, "entered in error")
        store.table.apply(auth)
        fill = _fill(30, MEMBER_A)
        assert store.decide(fill, Facts(), POLICY, NOW, _usual(fill)).outcome is Outcome.PENDED
