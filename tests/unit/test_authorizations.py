"""Prior authorizations on file: pseudonym, store records, claims paid on file, and the loop writing them."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from tests.unit.claims import make_claim
from tests.unit.fakes import FakeCluster, FakeConsumer, FakeProducer
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import DecisionSource, Outcome
from worker.errors import ConfigError
from worker.policy import decide, default_policy
from worker.policy.facts import Facts
from worker.runtime.compose import build_worker
from worker.state.authorization import (
    Authorization,
    BadAuthorization,
    Pseudonymizer,
    RevocationReason,
    decode_authorization,
    encode_authorization,
    member_pseudonym,
    revoked,
)
from worker.state.authorization_table import AuthorizationMetrics, AuthorizationTable
from worker.state.authorizations import Authorizations

POLICY = default_policy()
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
SECRET = b"unit-test-secret-0123456789"
STORE = "pharmacy.authorizations"
PHI = ("PHIMEMBER8675309", "ZZPHIFIRST", "ZZPHILAST", "1937-04-23")
PATIENT = {"member_id": PHI[0], "first_name": PHI[1], "last_name": PHI[2], "date_of_birth": PHI[3]}
OTHER = {"member_id": "OTHERMEMBER1", "last_name": "SYNTHETIC", "date_of_birth": "1960-02-02"}


def _usual(claim):
    return lambda: decide(claim, Facts(), POLICY, NOW)


def _approve(store: Authorizations, n: int = 1, patient=PATIENT, dos: str = "2025-03-10"):
    """Decide an approvable claim through the store, issue its authorization and commit; return the decision."""
    claim = make_claim(claim_id=f"approve-{n}", event_id=f"ea{n}", patient=patient, dos=dos)
    decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
    assert decision.outcome is Outcome.APPROVED
    record = store.issue(claim, decision)
    assert record is not None
    store.commit()
    return decision, record


def _fill(n: int, *, patient=PATIENT, dos: str = "2025-06-01", **fields):
    """A later fill that carries no clinical data (no diagnoses, no attestation)."""
    return make_claim(claim_id=f"fill-{n}", event_id=f"ef{n}", patient=patient, dos=dos, dx=(), **fields)


class TestPseudonym:
    def test_keyed_normalised_and_free_of_the_identity(self):
        """The pseudonym ignores case and blanks of the member id, changes with the secret and the date of birth, and holds no identity text."""
        claim = make_claim(patient=PATIENT)
        spaced = make_claim(patient={**PATIENT, "member_id": f" {PHI[0].lower()} "})
        other_dob = make_claim(patient={**PATIENT, "date_of_birth": "1937-04-24"})
        first = member_pseudonym(SECRET, claim.patient)
        assert first == member_pseudonym(SECRET, spaced.patient)
        assert first != member_pseudonym(SECRET, other_dob.patient)
        assert first != member_pseudonym(b"another-secret-0123456789", claim.patient)
        assert len(first) == 64
        assert all(phi.lower() not in first for phi in PHI)

    @pytest.mark.parametrize("secret", [SECRET, b"k" * 64, b"a-secret-longer-than-one-sha256-block-" * 3])
    def test_the_loops_pseudonymizer_is_the_same_hmac(self, secret):
        """Pseudonymizer (pads hashed once, keeps the GIL) gives exactly member_pseudonym's HMAC-SHA256, for short, block-sized and long keys."""
        pseudonym = Pseudonymizer(secret)
        for patient in (PATIENT, OTHER):
            claim = make_claim(patient=patient)
            assert pseudonym(claim.patient) == member_pseudonym(secret, claim.patient)


class TestCounts:
    def test_counts_kept_by_apply_equal_a_full_recount_and_follow_the_day(self):
        """The state counts, updated record by record (new, revoked, a late copy that would undo a revocation), equal a fresh count; a new day recounts."""
        day = date(2025, 6, 1)

        def auth(n: int, effective: date, **fields):
            return Authorization(
                number=f"{n:011d}",
                member=f"m{n}",
                policy_id="IXEMPRA-PA",
                policy_version="2020.09-2",
                product="70020191001",
                effective=effective,
                expiration=effective + timedelta(days=364),
                source_kind="claim",
                source_id=f"c{n}",
                decided_at=NOW,
                **fields,
            )

        table = AuthorizationTable()
        table.apply(auth(1, date(2025, 1, 1)))
        assert table.counts(day) == {"active": 1, "inactive": 0, "revoked": 0}
        table.apply(auth(2, date(2024, 1, 1)))  # expired by ``day``
        table.apply(revoked(auth(1, date(2025, 1, 1)), NOW, RevocationReason.ENTERED_IN_ERROR))
        table.apply(auth(1, date(2025, 1, 1)))  # an older copy read late: ignored
        table.apply(auth(3, date(2025, 5, 1)))
        expected = {"active": 1, "inactive": 1, "revoked": 1}
        assert table.counts(day) == expected
        fresh = AuthorizationTable()
        for n in ("00000000001", "00000000002", "00000000003"):
            held = table.get(n)
            assert held is not None
            fresh.apply(held)
        assert fresh.counts(day) == expected
        assert table.counts(date(2026, 6, 1)) == {"active": 0, "inactive": 2, "revoked": 1}


class TestRecords:
    def test_store_record_round_trips_and_holds_no_phi(self):
        """An approval's store record decodes to the same authorization and contains no member id, name or birth date."""
        store = Authorizations(SECRET, STORE)
        _, record = _approve(store)
        auth = decode_authorization(record.key, record.value)
        assert encode_authorization(auth) == (record.key, record.value)
        assert auth.number == record.key.decode()
        text = record.value.decode()
        assert all(phi not in text for phi in PHI)

    def test_unreadable_records_are_refused(self):
        """A tombstone, a wrong format or a key that differs from the value's number is a BadAuthorization."""
        store = Authorizations(SECRET, STORE)
        _, record = _approve(store)
        with pytest.raises(BadAuthorization):
            decode_authorization(record.key, None)
        with pytest.raises(BadAuthorization):
            decode_authorization(b"99999999999", record.value)
        with pytest.raises(BadAuthorization):
            decode_authorization(record.key, b'{"format": 9}')

    def test_the_store_refuses_to_start_without_a_secret(self):
        """An empty secret is a ConfigError (exit 2), never a store keyed by an unkeyed hash."""
        with pytest.raises(ConfigError):
            Authorizations(b"", STORE)


class TestOnFile:
    def test_a_later_fill_without_clinical_data_is_approved_on_file(self):
        """A fill inside the window pays on file: same PA number, original window, no criteria re-evaluated, nothing new issued."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        fill = _fill(1)
        assert decide(fill, Facts(), POLICY, NOW).outcome is Outcome.PENDED  # what happened before
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert decision.outcome is Outcome.APPROVED
        assert decision.authorization_number == first.authorization_number
        assert (decision.authorization_effective, decision.authorization_expiration) == (
            first.authorization_effective,
            first.authorization_expiration,
        )
        assert decision.criteria == ()
        assert decision.decision_source is DecisionSource.ON_FILE
        assert first.decision_source is DecisionSource.AUTOMATED_RULE  # the approval that issued it
        assert "on file" in decision.summary
        assert "not re-evaluated" in decision.summary
        assert store.issue(fill, decision) is None

    def test_an_approvable_claim_inside_the_window_reuses_the_authorization(self):
        """A second fully documented claim in the window gets the first number, not a new window."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        again = make_claim(claim_id="approve-again", patient=PATIENT, dos="2025-09-01")
        decision = store.decide(again, Facts(), POLICY, NOW, _usual(again))
        assert decision.authorization_number == first.authorization_number
        assert decision.authorization_effective == first.authorization_effective

    def test_a_fill_after_the_window_is_decided_afresh(self):
        """Past the expiration the fill is decided as usual (no clinical data: pended)."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        assert first.authorization_expiration is not None
        late = _fill(2, dos="2026-03-11")
        assert late.date_of_service > first.authorization_expiration
        decision = store.decide(late, Facts(), POLICY, NOW, _usual(late))
        assert decision.outcome is Outcome.PENDED

    def test_another_members_quoted_number_is_not_honoured(self):
        """Quoting someone else's PA number does not pay; the summary names the number and why."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        number = first.authorization_number
        assert number is not None
        claim = _fill(3, patient=OTHER, prior_authorization_number=number)
        decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
        assert decision.outcome is Outcome.PENDED
        assert f"Quoted PA number {number} (462-EV) not honoured: it was issued to another member" in (
            decision.summary
        )

    def test_quoted_numbers_unknown_and_own_match(self):
        """An unknown quoted number is named as unknown; the member's own quoted number pays on file."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        unknown = _fill(4, patient=OTHER, prior_authorization_number="12345678903")
        decision = store.decide(unknown, Facts(), POLICY, NOW, _usual(unknown))
        assert decision.outcome is Outcome.PENDED
        assert "no authorization with this number is on file" in decision.summary
        own = _fill(5, prior_authorization_number=first.authorization_number)
        paid = store.decide(own, Facts(), POLICY, NOW, _usual(own))
        assert (paid.authorization_number, paid.decision_source) == (
            first.authorization_number,
            DecisionSource.ON_FILE,
        )

    def test_a_revoked_authorization_no_longer_pays(self):
        """After a revocation the fill is decided as usual, and quoting the number says it was revoked."""
        store = Authorizations(SECRET, STORE)
        first, record = _approve(store)
        store.table.apply(
            revoked(decode_authorization(record.key, record.value), NOW, RevocationReason.CLINICAL_REVIEW)
        )
        fill = _fill(6, prior_authorization_number=first.authorization_number)
        decision = store.decide(fill, Facts(), POLICY, NOW, _usual(fill))
        assert decision.outcome is Outcome.PENDED
        assert "it was revoked" in decision.summary
        # An older copy read late does not undo the revocation.
        store.table.apply(decode_authorization(record.key, record.value))
        assert store.table.get(record.key.decode()).revoked

    def test_a_reversal_does_not_revoke(self):
        """A B2 reversal is REVERSED and the authorization still pays the next fill."""
        store = Authorizations(SECRET, STORE)
        first, _ = _approve(store)
        reversal = make_claim(claim_id="rev-1", patient=PATIENT, tx="B2", dos="2025-04-01")
        assert store.decide(reversal, Facts(), POLICY, NOW, _usual(reversal)).outcome is Outcome.REVERSED
        fill = _fill(7)
        assert (
            store.decide(fill, Facts(), POLICY, NOW, _usual(fill)).authorization_number
            == first.authorization_number
        )

    def test_an_aborted_approval_is_forgotten_and_a_committed_one_counted(self):
        """An aborted batch's authorization never pays; on-file approvals are counted only on commit."""
        registry = CollectorRegistry()
        store = Authorizations(SECRET, STORE, metrics=AuthorizationMetrics(registry))
        claim = make_claim(claim_id="approve-x", patient=PATIENT)
        decision = store.decide(claim, Facts(), POLICY, NOW, _usual(claim))
        assert store.issue(claim, decision) is not None
        store.abort()
        fill = _fill(8)
        assert store.decide(fill, Facts(), POLICY, NOW, _usual(fill)).outcome is Outcome.PENDED
        _approve(store)
        store.decide(_fill(9), Facts(), POLICY, NOW, _usual(_fill(9)))
        assert (
            registry.get_sample_value("claims_worker_on_file_approvals_total", {"via": "member_product"}) == 0
        )
        store.commit()
        assert (
            registry.get_sample_value("claims_worker_on_file_approvals_total", {"via": "member_product"}) == 1
        )
        assert registry.get_sample_value("claims_worker_authorizations_issued_total") == 1

    def test_restore_time_and_records_are_exposed(self):
        """AuthorizationMetrics.restored sets the restore-seconds and restored-records gauges (both start at 0)."""
        registry = CollectorRegistry()
        metrics = AuthorizationMetrics(registry)
        assert registry.get_sample_value("claims_worker_authorizations_restore_seconds") == 0
        metrics.restored(1.5, 42)
        assert registry.get_sample_value("claims_worker_authorizations_restore_seconds") == 1.5
        assert registry.get_sample_value("claims_worker_authorizations_restored_records") == 42

    def test_a_fill_racing_its_approval_on_another_worker_is_decided_as_usual(self):
        """A worker that has not yet read another worker's approval pends the clinical-data-free fill: never paid wrongly."""
        approving = Authorizations(SECRET, STORE)
        _approve(approving)
        behind = Authorizations(SECRET, STORE)  # has not followed the store topic yet
        fill = _fill(10)
        assert behind.decide(fill, Facts(), POLICY, NOW, _usual(fill)).outcome is Outcome.PENDED


class TestSettings:
    def test_topic_without_secret_is_a_bad_setting_and_the_secret_is_masked(self, tmp_path):
        """The store topic needs the secret (ConfigError, exit 2); the secret is masked and readable from a _FILE."""
        with pytest.raises(ConfigError, match="CLAIMS_MEMBER_PSEUDONYM_SECRET"):
            load_settings({"CLAIMS_AUTHORIZATIONS_TOPIC": STORE})
        secret_file = tmp_path / "secret"
        secret_file.write_text("file-secret-0123456789\n")
        settings = load_settings(
            {"CLAIMS_AUTHORIZATIONS_TOPIC": STORE, "CLAIMS_MEMBER_PSEUDONYM_SECRET_FILE": str(secret_file)}
        )
        assert settings.member_pseudonym_secret is not None
        assert settings.member_pseudonym_secret.get_secret_value() == "file-secret-0123456789"
        assert "file-secret" not in str(settings.masked())
        assert "file-secret" not in repr(settings)


class TestLoop:
    def test_the_approval_goes_on_file_in_the_same_transaction_and_pays_the_next_fill(self):
        """The loop writes the store record with the approving result and a fill on another partition pays on file."""
        codec = Codec()
        cluster = FakeCluster(partitions=2)
        cluster.append(
            0, codec.encode_claim(make_claim(claim_id="c-approve", event_id="e1", patient=PATIENT))
        )
        cluster.append(1, codec.encode_claim(_fill(11)))
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_EXIT_WHEN_IDLE_S": "0.2"})
        stop = threading.Event()
        registry = CollectorRegistry()
        store = Authorizations(SECRET, STORE, metrics=AuthorizationMetrics(registry))
        worker = build_worker(
            settings,
            consumer=FakeConsumer(cluster, stop),
            producer_factory=lambda: FakeProducer(cluster, {}),
            codec=codec,
            registry=registry,
            log=structlog.get_logger(),
            readback=cluster.read_back,
            clock=lambda: NOW,
            claims_partitions=2,
            authorizations=store,
        )
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        thread.join(10)
        if thread.is_alive():
            stop.set()
            thread.join()
            pytest.fail("the worker never drained the input")
        results = {r["claim_id"]: r for r in (codec.decode_result(p.value) for p in cluster.results())}
        stored = [p for p in cluster.published if p.topic == STORE]
        assert len(stored) == 1
        number = results["c-approve"]["authorization_number"]
        assert stored[0].key == number.encode()
        assert results["fill-11"]["outcome"] == "APPROVED"
        assert results["fill-11"]["authorization_number"] == number
        exposition = generate_latest(registry).decode()
        assert all(phi not in exposition for phi in PHI)
        assert all(phi.encode() not in p.value for p in cluster.published for phi in PHI)
        assert date(2025, 6, 1) <= date.fromisoformat(str(results["fill-11"]["authorization_expiration"]))


def test_show_results_names_an_on_file_approval_with_its_number_and_original_window():
    """`show-results` says "on file" with the PA number for an ON_FILE approval, and "authorized" for a fresh one."""
    from worker.ops.report import _why  # noqa: PLC0415 - the table's reason column

    approved = {
        "outcome": "APPROVED",
        "authorization_effective": date(2025, 3, 10),
        "authorization_expiration": date(2026, 3, 9),
        "authorization_number": "34015072480",
        "decision_source": "AUTOMATED_RULE",
    }
    assert _why(approved) == "authorized 2025-03-10 to 2026-03-09"
    on_file = {**approved, "decision_source": "ON_FILE"}
    assert _why(on_file) == "on file: PA 34015072480, original window 2025-03-10 to 2026-03-09"
