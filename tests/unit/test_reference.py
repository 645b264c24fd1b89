"""The worker's directory lookup (worker/runtime/reference.py): facts per claim, overlay, metrics, start-up."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
import structlog
from kafka.errors import KafkaTimeoutError
from prometheus_client import CollectorRegistry

from deploy.demo.nppes_sample import SAMPLE_RELEASE, build_sample_index
from tests.unit.claims import make_claim
from tests.unit.fakes import FakeCluster, FakeConsumer, FakeProducer
from tests.unit.worker_runs import results_of
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import Outcome
from worker.contracts.icd10cm import RELEASE as ICD10CM_RELEASE
from worker.contracts.pa_request import decode_pa_request, encode_pa_request, pa_decision, request_claim
from worker.directory import Directory, Entry
from worker.directory.updates import DirectoryUpdates, encode_update
from worker.errors import ConfigError
from worker.kafka.access import worker_needs
from worker.kafka.failures import Kind, Stopped, classify
from worker.ops.directory_metrics import DirectoryMetrics
from worker.policy import catalog_policy, decide
from worker.policy.decision import DIRECTORY_REFERENCE
from worker.policy.definition import DEFAULT_POLICY_REF
from worker.policy.facts import ProviderStatus
from worker.runtime.compose import build_worker
from worker.runtime.judge import Decider
from worker.runtime.reference import ReferenceData, lookup, open_reference
from worker.state.authorizations import Authorizations

ICD10CM = {"icd-10-cm": ICD10CM_RELEASE}  # recorded whenever the criteria read ICD-10 codes
ONCOLOGY = "207RX0202X"
HEM_ONC = "207RH0003X"
SECONDARY_ONCOLOGY = "1111111112"  # internal medicine primary, oncology secondary (bundled sample)
FAMILY_PHYSICIAN = "1987654328"
CONSULTANT = "1555000011"  # hematology & oncology
ORGANISATION = "2222222228"
UNLISTED = "1999999992"  # valid check digit, not in the sample
DEACTIVATED = "1444444446"  # deactivated 2024-01-15 in the sample
REACTIVATED_ONCOLOGIST = "1777777776"  # deactivated 2022-03-01, reactivated 2022-06-01
DECIDED_AT = datetime(2025, 3, 10, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    """The bundled sample directory, built once for the module."""
    return build_sample_index(tmp_path_factory.mktemp("dir") / "sample.idx")


@pytest.fixture
def directory(index_path):
    """A freshly opened sample directory (its own, empty overlay)."""
    with Directory.open(index_path) as opened:
        yield opened


@pytest.fixture(scope="module")
def policy():
    """The bundled Ixempra policy."""
    return catalog_policy(DEFAULT_POLICY_REF)


def _prescribed_by(npi, **fields):
    return make_claim(taxonomy=None, prescriber={"npi": npi}, **fields)


def _consulted(prescriber, consultant, **consultation):
    return make_claim(
        taxonomy=None,
        prescriber={"npi": prescriber},
        dx=("C50.912",),
        attestation={
            "disease_status": "RECURRENT",
            "consultation": {"status": "YES", "consultant_npi": consultant, **consultation},
        },
    )


def _b(decision):
    return next(c for c in decision.criteria if c.criterion_id == "B")


def test_prescriber_with_oncology_only_as_secondary_is_approved_through_the_directory(directory, policy):
    """A claim without a taxonomy whose prescriber lists oncology as a secondary taxonomy is approved, citing the directory version."""
    facts = lookup(directory, _prescribed_by(SECONDARY_ONCOLOGY))
    assert facts.prescriber is not None
    assert facts.prescriber.status is ProviderStatus.ACTIVE
    assert ONCOLOGY in facts.prescriber.taxonomies
    assert facts.prescriber.primary_taxonomy != ONCOLOGY
    assert facts.consultant is None
    assert facts.directory_version == SAMPLE_RELEASE
    decision = decide(_prescribed_by(SECONDARY_ONCOLOGY), facts, policy, DECIDED_AT)
    assert decision.outcome is Outcome.APPROVED
    assert any(f"source=directory {SAMPLE_RELEASE}" in item for item in _b(decision).evidence)
    assert dict(decision.reference_versions) == {DIRECTORY_REFERENCE: SAMPLE_RELEASE, **ICD10CM}


def test_a_taxonomy_sent_on_the_claim_does_not_skip_the_lookup(directory):
    """A claim that sends the prescriber's taxonomy is still looked up: the directory alone says whether the NPI is active."""
    facts = lookup(directory, make_claim(taxonomy=ONCOLOGY))
    assert facts.prescriber is not None
    assert facts.prescriber.status is ProviderStatus.ACTIVE
    assert facts.directory_version == SAMPLE_RELEASE


def test_consultant_is_resolved_through_the_directory(directory, policy):
    """A non-oncologist's claim naming a consultant NPI without taxonomy is approved on the consultant's directory entry."""
    claim = _consulted(FAMILY_PHYSICIAN, CONSULTANT)
    facts = lookup(directory, claim)
    assert facts.consultant is not None
    assert facts.consultant.npi == CONSULTANT
    assert facts.consultant.taxonomies == (HEM_ONC,)
    assert facts.prescriber is not None
    assert facts.prescriber.status is ProviderStatus.ACTIVE
    decision = decide(claim, facts, policy, DECIDED_AT)
    assert decision.outcome is Outcome.APPROVED
    assert _b(decision).reason_code == "CONSULTANT_IS_SPECIALIST"


def test_consultant_taxonomy_sent_on_the_claim_does_not_skip_the_lookup(directory):
    """A consultant whose taxonomy the claim sends is looked up too, as is the prescriber."""
    facts = lookup(directory, _consulted(FAMILY_PHYSICIAN, CONSULTANT, consultant_taxonomy=ONCOLOGY))
    assert facts.consultant is not None
    assert facts.consultant.npi == CONSULTANT
    assert facts.prescriber is not None


@pytest.mark.parametrize(
    ("npi", "status"),
    [(ORGANISATION, ProviderStatus.ORGANISATION), (UNLISTED, ProviderStatus.NOT_FOUND)],
)
def test_organisation_and_unknown_npis_pend_with_reject_56(directory, policy, npi, status):
    """An organisation NPI and an NPI the directory does not list are not prescribers: pended, reject 56 among the rejects."""
    claim = _prescribed_by(npi)
    facts = lookup(directory, claim)
    assert facts.prescriber is not None
    assert facts.prescriber.status is status
    decision = decide(claim, facts, policy, DECIDED_AT)
    assert decision.outcome is Outcome.PENDED
    assert "56" in {reject.code for reject in decision.rejects}


def test_an_overlay_update_wins_over_the_index_and_is_named_in_the_version(directory, policy):
    """An update newer than the index makes a family physician an oncologist: approved, version names index+update."""
    claim = _prescribed_by(FAMILY_PHYSICIAN)
    before = decide(claim, lookup(directory, claim), policy, DECIDED_AT)
    assert before.outcome is not Outcome.APPROVED
    directory.apply(
        int(FAMILY_PHYSICIAN), Entry(1, (ONCOLOGY,), 0, version="weekly-20240715"), date(2024, 7, 15)
    )
    facts = lookup(directory, claim)
    assert facts.prescriber is not None
    assert facts.prescriber.taxonomies == (ONCOLOGY,)
    assert facts.directory_version == f"{SAMPLE_RELEASE}+weekly-20240715"
    after = decide(claim, facts, policy, DECIDED_AT)
    assert after.outcome is Outcome.APPROVED
    assert any("source=directory weekly-20240715" in item for item in _b(after).evidence)
    assert dict(after.reference_versions) == {
        DIRECTORY_REFERENCE: f"{SAMPLE_RELEASE}+weekly-20240715",
        **ICD10CM,
    }


class _FakeConsumer:
    """Just enough of KafkaConsumer for the follower: records handed out by poll()."""

    def __init__(self, records, end=None, position=0):
        self.records = list(records)
        self.polls = 0
        self.end, self.at = end, position

    def highwater(self, _tp):
        return self.end

    def position(self, _tp, timeout_ms=None):
        assert timeout_ms == 0, "the lag gauge must not wait on the broker"
        return self.at

    def partitions_for_topic(self, _topic):
        return {0}

    def assign(self, partitions):
        self.assigned = partitions

    def seek_to_beginning(self, *partitions):
        self.sought = partitions

    def poll(self, timeout_ms, max_records):  # noqa: ARG002 - KafkaConsumer's signature
        self.polls += 1
        batch, self.records = self.records[:max_records], self.records[max_records:]
        return {"tp": batch} if batch else {}

    def close(self):
        self.closed = True


class _Record:
    def __init__(self, key, value):
        self.topic, self.partition, self.offset, self.key, self.value = "t", 0, 0, key, value


def _sample(registry, name, labels=None):
    return registry.get_sample_value(name, labels or {})


def test_refresh_applies_fetched_updates_and_counts_lookups(directory):
    """refresh() applies what the follower fetched (the next lookup sees it) and flushes lookup and update counts."""
    key, value = encode_update(int(FAMILY_PHYSICIAN), Entry(1, (ONCOLOGY,), 0), "weekly", date(2024, 7, 15))
    consumer = _FakeConsumer([_Record(key, value), _Record(b"1234567893", b"not json")], end=7, position=4)
    registry = CollectorRegistry()
    reference = ReferenceData(
        directory, DirectoryUpdates(directory, consumer, "t"), DirectoryMetrics(registry)
    )
    assert reference.facts(_prescribed_by(FAMILY_PHYSICIAN)).prescriber.taxonomies != (ONCOLOGY,)
    reference.facts(_prescribed_by(UNLISTED))
    reference.refresh()
    assert consumer.polls == 1
    assert reference.facts(_prescribed_by(FAMILY_PHYSICIAN)).prescriber.taxonomies == (ONCOLOGY,)
    reference.refresh()
    lookups = "claims_worker_directory_lookups_total"
    assert _sample(registry, lookups, {"role": "prescriber", "status": "ACTIVE"}) == 2
    assert _sample(registry, lookups, {"role": "prescriber", "status": "NOT_FOUND"}) == 1
    assert _sample(registry, lookups, {"role": "consultant", "status": "ACTIVE"}) == 0
    assert _sample(registry, "claims_worker_directory_updates_applied_total") == 1
    assert _sample(registry, "claims_worker_directory_updates_rejected_total") == 1
    assert _sample(registry, "claims_worker_directory_overlay_npis") == 1
    assert _sample(registry, "claims_worker_directory_updates_lag_records") == 3
    assert (
        _sample(
            registry,
            "claims_worker_directory_info",
            {"version": SAMPLE_RELEASE, "release_date": "2024-07-08"},
        )
        == 1
    )
    assert (
        _sample(registry, "claims_worker_directory_release_timestamp_seconds")
        == datetime(2024, 7, 8, tzinfo=UTC).timestamp()
    )


def test_updates_lag_comes_from_the_last_fetch_and_waits_for_a_high_watermark(directory):
    """The lag gauge is high watermark minus position, set once a fetch has reported the watermark."""
    consumer = _FakeConsumer([], end=None, position=4)
    registry = CollectorRegistry()
    reference = ReferenceData(
        directory, DirectoryUpdates(directory, consumer, "t"), DirectoryMetrics(registry)
    )
    lag = "claims_worker_directory_updates_lag_records"
    assert _sample(registry, lag) == 0  # no fetch yet: nothing known, the gauge keeps its start value
    consumer.end = 10
    reference.refresh()
    assert _sample(registry, lag) == 6
    consumer.at = 10
    reference.refresh()
    assert _sample(registry, lag) == 0


def test_open_reference_without_a_path_is_none_and_says_identities_are_unverified():
    """With CLAIMS_DIRECTORY_PATH unset the worker looks nothing up and says once that specialties are self-reported."""
    with structlog.testing.capture_logs() as logs:
        assert open_reference(load_settings({}), structlog.get_logger(), threading.Event()) is None
    [event] = [e for e in logs if e["event"] == "prescriber_identity_unverified"]
    assert event["log_level"] == "warning"
    assert "self-reported" in event["detail"]
    assert "unverified" in event["detail"]


def test_open_reference_with_a_missing_index_is_a_bad_setting(tmp_path):
    """A missing index is a ConfigError (exit 2) naming the setting and the path."""
    settings = load_settings({"CLAIMS_DIRECTORY_PATH": str(tmp_path / "absent.idx")})
    with pytest.raises(ConfigError, match=r"CLAIMS_DIRECTORY_PATH: .*absent\.idx"):
        open_reference(settings, structlog.get_logger(), threading.Event())


def test_open_reference_with_a_damaged_index_is_a_bad_setting(tmp_path):
    """A file that is not an index is a ConfigError (exit 2), not an internal error."""
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"CWNPIDX1" + b"\0" * 64)
    settings = load_settings({"CLAIMS_DIRECTORY_PATH": str(bad)})
    with pytest.raises(ConfigError, match="CLAIMS_DIRECTORY_PATH"):
        open_reference(settings, structlog.get_logger(), threading.Event())


def test_open_reference_opens_the_index_and_follows_nothing_without_a_topic(index_path):
    """With a path and no updates topic the reference data has the index's version and no follower."""
    settings = load_settings({"CLAIMS_DIRECTORY_PATH": str(index_path)})
    reference = open_reference(settings, structlog.get_logger(), threading.Event())
    try:
        assert reference is not None
        assert reference.directory.version == SAMPLE_RELEASE
        assert reference.updates is None
        reference.refresh()  # no follower: nothing to poll, nothing raised
    finally:
        reference.close()


def test_directory_metrics_have_every_closed_child_at_zero_and_refuse_free_text_versions():
    """Every role x ProviderStatus lookup series exists at 0 from the start; a version that is not a code is shown as OTHER."""
    registry = CollectorRegistry()
    metrics = DirectoryMetrics(registry)
    for role in ("prescriber", "consultant"):
        for status in ProviderStatus:
            labels = {"role": role, "status": status.value}
            assert _sample(registry, "claims_worker_directory_lookups_total", labels) == 0
    metrics.set_directory("release with spaces/and slashes", date(2024, 7, 8))
    assert (
        _sample(registry, "claims_worker_directory_info", {"version": "OTHER", "release_date": "2024-07-08"})
        == 1
    )
    with pytest.raises(KeyError):
        metrics.record_lookup("pharmacist", "ACTIVE")


class _SlowFollower:
    """A follower whose catch-up fails (timeout) or blocks until released (for the stop test)."""

    def __init__(self, error=None):
        self.error = error
        self.release = threading.Event()
        self.closed = False

    def catch_up(self, _timeout_s):
        if self.error is not None:
            raise self.error
        self.release.wait(10)
        return 0


def test_catch_up_past_the_timeout_is_a_kafka_outage_exit_4(index_path):
    """A catch-up that times out raises KafkaTimeoutError, which the start-up maps to exit 4."""
    settings = load_settings(
        {"CLAIMS_DIRECTORY_PATH": str(index_path), "CLAIMS_DIRECTORY_UPDATES_TOPIC": "directory-updates"}
    )
    follower = _SlowFollower(KafkaTimeoutError("not read to its end"))
    with pytest.raises(KafkaTimeoutError) as raised:
        open_reference(settings, structlog.get_logger(), threading.Event(), connect=lambda _make: follower)
    assert classify(raised.value) is Kind.TRANSIENT  # run.py: a transient failure at start-up exits 4


def test_catch_up_is_stoppable(index_path):
    """A stop during catch-up raises Stopped at once instead of waiting for the topic's end."""
    settings = load_settings(
        {"CLAIMS_DIRECTORY_PATH": str(index_path), "CLAIMS_DIRECTORY_UPDATES_TOPIC": "directory-updates"}
    )
    follower = _SlowFollower()
    stop = threading.Event()
    stop.set()
    try:
        with pytest.raises(Stopped):
            open_reference(settings, structlog.get_logger(), stop, connect=lambda _make: follower)
    finally:
        follower.release.set()


class _CountingReference(ReferenceData):
    """ReferenceData that counts its refresh calls."""

    refreshes = 0

    def refresh(self):
        self.refreshes += 1
        super().refresh()


def test_the_worker_refreshes_once_per_pass_and_results_carry_the_directory_version(directory):
    """build_worker(reference=...) looks claims up through the directory, applies updates before a pass's poll, and
    the published result names the directory version (index plus the update that answered)."""
    key, value = encode_update(int(FAMILY_PHYSICIAN), Entry(1, (ONCOLOGY,), 0), "weekly", date(2024, 7, 15))
    cluster = FakeCluster()
    codec = Codec()
    cluster.append(0, codec.encode_claim(_prescribed_by(FAMILY_PHYSICIAN, event_id="e1", claim_id="c1")))
    stop = threading.Event()
    reference = _CountingReference(
        directory, DirectoryUpdates(directory, _FakeConsumer([_Record(key, value)]), "t"), None
    )
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_EXIT_WHEN_IDLE_S": "0.2"})
    worker = build_worker(
        settings,
        consumer=FakeConsumer(cluster, stop),
        producer_factory=lambda: FakeProducer(cluster, {}),
        codec=codec,
        registry=CollectorRegistry(),
        log=structlog.get_logger(),
        readback=cluster.read_back,
        clock=lambda: DECIDED_AT,
        claims_partitions=len(cluster.logs),
        reference=reference,
    )
    passes = []
    poll_once = worker.poll_once
    worker.poll_once = lambda: passes.append(1) or poll_once()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    thread.join(10)
    if thread.is_alive():
        stop.set()
        thread.join()
        pytest.fail("the worker never went idle")
    [result] = [codec.decode_result(r.value) for r in cluster.results()]
    assert result["outcome"] == "APPROVED"
    assert result["reference_versions"] == {DIRECTORY_REFERENCE: f"{SAMPLE_RELEASE}+weekly", **ICD10CM}
    assert reference.refreshes == len(passes) > 0


def test_following_updates_needs_read_on_the_updates_topic_only_when_a_directory_is_set(index_path):
    """check-access asks for Read on the updates topic exactly when the worker will follow it."""
    base = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_DIRECTORY_UPDATES_TOPIC": "directory-updates"}
    without = worker_needs(load_settings(base))
    assert all(need.name != "directory-updates" for need in without)
    needs = worker_needs(load_settings({**base, "CLAIMS_DIRECTORY_PATH": str(index_path)}))
    [need] = [n for n in needs if n.name == "directory-updates"]
    assert need.operation.value == "READ"
    assert len(needs) == len(without) + 1


def _run_worker(directory, claims):
    """Run the worker (fakes for Kafka, the sample directory) over ``claims``; return its decoded results."""
    return results_of(claims, at=DECIDED_AT, reference=ReferenceData(directory))


@pytest.mark.parametrize(
    ("npi", "when", "status"),
    [
        pytest.param(DEACTIVATED, date(2025, 3, 10), "DEACTIVATED", id="deactivated-on-the-date-of-service"),
        pytest.param(ORGANISATION, date(2025, 3, 10), "ORGANISATION", id="organisation"),
        pytest.param(UNLISTED, date(2025, 3, 10), "NOT_FOUND", id="absent-from-the-directory"),
        pytest.param(
            REACTIVATED_ONCOLOGIST,
            date(2022, 4, 1),
            "DEACTIVATED",
            id="between-deactivation-and-reactivation",
        ),
    ],
)
def test_a_sent_oncology_taxonomy_never_rescues_an_npi_the_directory_rejects(directory, npi, when, status):
    """Through the worker (decode, lookup, decide, result): a claim sending 207RX0202X for a rejected NPI pends with 56."""
    claim = make_claim(
        taxonomy=ONCOLOGY,
        prescriber={"npi": npi, "taxonomy": ONCOLOGY},
        claim_id="c-sent",
        dos=when,
        event_time=datetime.combine(when, datetime.min.time(), UTC),
    )
    bare = make_claim(
        taxonomy=None,
        prescriber={"npi": npi},
        claim_id="c-bare",
        event_id="e-bare",
        dos=when,
        event_time=datetime.combine(when, datetime.min.time(), UTC),
    )
    results = _run_worker(directory, [claim, bare])
    sent, without = results["c-sent"], results["c-bare"]
    assert sent["outcome"] == without["outcome"] == "PENDED"
    assert "56" in sent["reject_codes"]
    assert sent["reject_codes"] == without["reject_codes"]
    assert sent["needs"] == without["needs"] == ["PRESCRIBER_IDENTITY"]
    b = next(c for c in sent["criteria"] if c["criterion_id"] == "B")
    assert b["reason_code"] == "PRESCRIBER_NOT_RESOLVED"
    assert f"{status} (source=directory" in b["evidence"][0]
    assert sent["authorization_number"] is None


def test_a_reactivated_oncologist_is_approved_after_the_reactivation(directory):
    """The same NPI on a date after its reactivation is an active oncologist: approved on the directory's word."""
    when = date(2022, 7, 1)
    claim = make_claim(
        taxonomy=None,
        prescriber={"npi": REACTIVATED_ONCOLOGIST},
        dos=when,
        event_time=datetime.combine(when, datetime.min.time(), UTC),
    )
    [result] = _run_worker(directory, [claim]).values()
    assert result["outcome"] == "APPROVED"


def test_sent_and_directory_specialties_that_disagree_ask_in_both_directions(directory):
    """Sent oncology against a directory family physician asks; sent family medicine against a directory oncologist asks too."""
    claims = [
        make_claim(prescriber={"npi": FAMILY_PHYSICIAN, "taxonomy": ONCOLOGY}, claim_id="c-up"),
        make_claim(
            prescriber={"npi": SECONDARY_ONCOLOGY, "taxonomy": "207Q00000X"}, claim_id="c-down", event_id="e2"
        ),
        # Agreement: the sent internal medicine code is one the directory lists beside oncology.
        make_claim(
            prescriber={"npi": SECONDARY_ONCOLOGY, "taxonomy": "207R00000X"},
            claim_id="c-agree",
            event_id="e3",
        ),
    ]
    results = _run_worker(directory, claims)
    for claim_id in ("c-up", "c-down"):
        asked = results[claim_id]
        assert asked["outcome"] == "PENDED", claim_id
        assert asked["needs"] == ["PRESCRIBER_SPECIALTY"]
        b = next(c for c in asked["criteria"] if c["criterion_id"] == "B")
        assert b["reason_code"] == "PRESCRIBER_SPECIALTY_NOT_CONFIRMED"
    assert results["c-agree"]["outcome"] == "APPROVED"


def test_a_pa_request_sending_oncology_for_a_deactivated_npi_pends_56_and_goes_on_no_file(directory):
    """The request door: a taxonomy sent on a PA request does not rescue a deactivated prescriber; nothing goes on file."""
    request = {
        "request_id": "REQ-DEACT",
        "requested_at": datetime(2025, 3, 10, 9, tzinfo=UTC),
        "patient": {
            "member_id": "M1",
            "first_name": None,
            "last_name": "L",
            "date_of_birth": date(1960, 1, 1),
        },
        "prescriber": {"npi": DEACTIVATED, "taxonomy": ONCOLOGY},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": "70020-1910-01", "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": date(2025, 3, 10),
    }
    claim = request_claim(decode_pa_request(encode_pa_request(request)))
    store = Authorizations(b"unit-test-secret-0123456789", "store")
    decision = Decider(
        catalog_policy(DEFAULT_POLICY_REF),
        lookup_facts=ReferenceData(directory).facts,
        automated_denials=False,
        authorizations=store,
        dispensed=False,
    ).decide(claim, DECIDED_AT)
    assert decision.outcome is Outcome.PENDED
    assert "56" in decision.reject_codes
    assert pa_decision(claim.claim_id, decision)["pa_number"] is None
    assert store.issue(claim, decision, source_kind="request") is None
    assert len(store.table) == 0
