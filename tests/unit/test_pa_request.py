"""PA requests: the pa-request contract, its decision under the claims policy, and the fill that pays against it."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
import structlog
from prometheus_client import CollectorRegistry

from deploy.demo.nppes_sample import SAMPLE_RELEASE, build_sample_index
from tests.unit.claims import NPIS, make_claim
from tests.unit.fakes import FakeCluster, FakeConsumer, FakeProducer
from worker.config.roles import request_settings
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.contracts.codes import InformationNeed, Outcome
from worker.contracts.icd10cm import RELEASE as ICD10CM_RELEASE
from worker.contracts.pa_request import (
    decode_pa_request,
    encode_pa_request,
    pa_decision,
    request_claim,
)
from worker.contracts.wire import EVENT_ID_HEADER
from worker.errors import BadRecord, ConfigError, DeadLetterClass
from worker.kafka.failures import ExitCode
from worker.kafka.io import IndefiniteOutcome, Membership, TopicPartition
from worker.policy import decide, default_policy
from worker.policy.facts import Facts
from worker.runtime.compose import build_request_worker
from worker.runtime.judge import Decider
from worker.runtime.reference import open_reference
from worker.runtime.request_worker import serve_requests
from worker.runtime.requests import REQUESTS, judge_request, route_request
from worker.state.authorization import decode_authorization
from worker.state.authorizations import Authorizations
from worker.state.dedupe import SeenEvents

POLICY = default_policy()
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PATIENT = {
    "member_id": "PHIMEMBER8675309",
    "first_name": "ZZPHIFIRST",
    "last_name": "ZZPHILAST",
    "date_of_birth": date(1937, 4, 23),
}
PHI = ("PHIMEMBER8675309", "ZZPHIFIRST", "ZZPHILAST", "1937-04-23")


def _request(**overrides):
    record = {
        "request_id": "REQ-0001",
        "requested_at": NOW,
        "patient": PATIENT,
        "prescriber": {"npi": NPIS[0], "taxonomy": "207RX0202X"},
        "consultant": None,
        "consultation_status": "UNKNOWN",
        "product": {"product_id": "70020-1910-01", "qualifier": "03"},
        "diagnoses": [{"code": "C50.911", "qualifier": "02"}, {"code": "C78.7", "qualifier": "02"}],
        "disease_status": "METASTATIC",
        "requested_start": date(2025, 3, 1),
    }
    record.update(overrides)
    return record


def _decide(request, store=None):
    claim = request_claim(decode_pa_request(encode_pa_request(request)))
    decision = Decider(
        POLICY,
        lookup_facts=lambda _claim: Facts(),
        automated_denials=False,
        authorizations=store,
        dispensed=False,
    ).decide(claim, NOW)
    return claim, decision


def test_an_approved_request_goes_on_file_and_the_fill_pays_against_it():
    """An approvable request is APPROVED with a PA number from its start date; a later clinical-data-free fill pays on file with that number."""
    store = Authorizations(b"unit-test-secret-0123456789", "store")
    claim, decision = _decide(_request(), store)
    assert decision.outcome is Outcome.APPROVED
    assert decision.authorization_effective == date(2025, 3, 1)
    record = store.issue(claim, decision, source_kind="request")
    assert record is not None
    assert decode_authorization(record.key, record.value).source_kind == "request"
    store.commit()
    fill = make_claim(patient={**PATIENT, "date_of_birth": "1937-04-23"}, dx=(), dos="2025-05-01")
    paid = store.decide(fill, Facts(), POLICY, NOW, lambda: decide(fill, Facts(), POLICY, NOW))
    assert paid.outcome is Outcome.APPROVED
    assert paid.authorization_number == decision.authorization_number


def test_a_request_without_diagnoses_is_pended_with_what_is_needed_and_the_answer_has_no_phi():
    """A request with no diagnosis pends and its answer lists the need, with no member id, name or birth date."""
    _, decision = _decide(_request(diagnoses=[], disease_status="UNKNOWN"))
    assert decision.outcome is Outcome.PENDED
    answer = pa_decision("REQ-0001", decision)
    assert answer["pa_number"] is None
    assert InformationNeed.DIAGNOSIS_CODE.value in answer["needs"]
    assert all(phi not in str(answer) for phi in PHI)


def test_bad_requests_follow_the_dead_letter_rules():
    """Bytes that are not Avro, a truncated body and an invalid field raise BadRecord with the claims' classes."""
    with pytest.raises(BadRecord) as not_avro:
        decode_pa_request(b"garbage")
    assert not_avro.value.error_class is DeadLetterClass.NOT_AVRO
    good = encode_pa_request(_request())
    with pytest.raises(BadRecord) as truncated:
        decode_pa_request(good[:20])
    assert truncated.value.error_class is DeadLetterClass.TRUNCATED
    with pytest.raises(BadRecord) as invalid:
        request_claim(
            decode_pa_request(encode_pa_request(_request(prescriber={"npi": "123", "taxonomy": None})))
        )
    assert invalid.value.error_class is DeadLetterClass.INVALID_FIELD
    assert "123" not in invalid.value.reason


# --- serve-requests: the directory and the answered-requests filter --------------------------------

SECRET = b"unit-test-secret-0123456789"


def _settings(**env):
    return load_settings(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "CLAIMS_AUTHORIZATIONS_TOPIC": "store",
            "CLAIMS_MEMBER_PSEUDONYM_SECRET": SECRET.decode(),
            "CLAIMS_PA_REQUESTS_TOPIC": "pa-requests",
            "CLAIMS_PA_DECISIONS_TOPIC": "pa-decisions",
            **env,
        }
    )


def _record(request, offset=0, value=None):
    value = encode_pa_request(request) if value is None else value
    return SimpleNamespace(
        topic="pa-requests",
        partition=0,
        offset=offset,
        key=request["request_id"].encode(),
        value=value,
        headers=[],
    )


def _answer(record, settings, seen, store=None, lookup_facts=lambda _claim: Facts()):
    """Judge and route one request record as the request door does; stage its id as the pipeline does."""
    view = request_settings(settings)
    store = store or Authorizations(SECRET, "store")
    judgement = judge_request(
        record,
        codec=Codec(),
        seen=seen,
        decided_at=NOW,
        decider=Decider(POLICY, lookup_facts, authorizations=store, dispensed=REQUESTS.dispensed),
    )
    out = route_request(judgement, codec=Codec(), settings=view, at=NOW)
    if out.event_id is not None:
        seen.stage(record.partition, out.event_id)
    if judgement.claim is not None and judgement.decision is not None:
        store.issue(judgement.claim, judgement.decision, source_kind=REQUESTS.source_kind)
    body = (
        json.loads(out.value)
        if out.topic == settings.pa_decisions_topic
        else Codec().decode_dead_letter(out.value)
    )
    return out.topic, body, out.headers, out.partition


def test_a_request_without_taxonomy_is_decided_through_the_directory_and_names_its_version(tmp_path):
    """With CLAIMS_DIRECTORY_PATH, a request whose prescriber sends no taxonomy is approved on the directory's oncology entry and the answer names the directory release; without it, it is not approved."""
    settings = _settings(CLAIMS_DIRECTORY_PATH=str(build_sample_index(tmp_path / "sample.idx")))
    request = _request(prescriber={"npi": "1234567893", "taxonomy": None})  # the sample's oncologist
    reference = open_reference(settings, structlog.get_logger(), threading.Event())
    assert reference is not None
    try:
        _, answer, _, _ = _answer(_record(request), settings, SeenEvents(10), lookup_facts=reference.facts)
    finally:
        reference.close()
    assert answer["outcome"] == "APPROVED"
    assert answer["reference_versions"] == {
        "prescriber-directory": SAMPLE_RELEASE,
        "icd-10-cm": ICD10CM_RELEASE,
    }
    _, blind, _, _ = _answer(_record(request), _settings(), SeenEvents(10))
    assert blind["outcome"] != "APPROVED"
    assert blind["reference_versions"] == {"icd-10-cm": ICD10CM_RELEASE}  # no directory read


def test_serve_requests_with_a_missing_directory_index_is_a_bad_setting(tmp_path):
    """A CLAIMS_DIRECTORY_PATH that names no index stops serve-requests with ConfigError (exit 2) before any Kafka client."""
    settings = _settings(CLAIMS_DIRECTORY_PATH=str(tmp_path / "missing.idx"))
    with pytest.raises(ConfigError, match="CLAIMS_DIRECTORY_PATH"):
        serve_requests(settings, threading.Event(), structlog.get_logger())


def test_serve_requests_on_a_metrics_port_in_use_is_a_bad_setting():
    """serve-requests serves metrics and health: a taken CLAIMS_METRICS_PORT is ConfigError (exit 2) naming it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = _settings(CLAIMS_METRICS_HOST="127.0.0.1", CLAIMS_METRICS_PORT=str(port))
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve_requests(settings, threading.Event(), structlog.get_logger())


def test_a_resent_request_is_dead_lettered_as_a_duplicate_and_not_decided_again():
    """A request id already answered on its partition (restored from PA-decisions, or earlier in the batch) goes to the dead letters as DUPLICATE_EVENT; an aborted batch forgets its ids."""
    settings = _settings()
    seen = SeenEvents(10)
    seen.load_ids(0, ["REQ-0001"])  # what the read-back of PA-decisions partition 0's headers restores
    topic, letter, _, partition = _answer(_record(_request()), settings, seen)
    assert (topic, partition) == (settings.dead_letter_topic, 0)
    assert letter["error_class"] == DeadLetterClass.DUPLICATE_EVENT.value

    store = Authorizations(SECRET, "store")
    other = _request(request_id="REQ-0002")
    topic, answer, headers, partition = _answer(_record(other, 1), settings, seen, store)
    assert (topic, answer["outcome"], partition) == (settings.pa_decisions_topic, "APPROVED", 0)
    assert headers == [(EVENT_ID_HEADER, b"REQ-0002")]
    topic, _, _, _ = _answer(_record(other, 2), settings, seen, store)  # resent in the same batch
    assert topic == settings.dead_letter_topic
    seen.abort()
    store.abort()
    topic, _, _, _ = _answer(_record(other, 1), settings, seen, store)  # the batch is retried
    assert topic == settings.pa_decisions_topic


def test_the_request_door_runs_on_its_own_topics_group_and_transactional_id():
    """request_settings swaps in the requests and decisions topics, a -pa-requests group and id prefix, and refuses missing topics."""
    settings = _settings(CLAIMS_INSTANCE="2")
    view = request_settings(settings)
    assert (view.claims_topic, view.results_topic) == ("pa-requests", "pa-decisions")
    assert view.dead_letter_topic == settings.dead_letter_topic
    assert view.group_id == f"{settings.group_id}-pa-requests"
    assert view.transactional_id == f"{settings.transactional_id_prefix}-pa-requests-2"
    assert view.authorizations_topic == settings.authorizations_topic
    with pytest.raises(ConfigError, match="CLAIMS_PA_REQUESTS_TOPIC"):
        request_settings(load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}))


# --- the request door through the Pipeline: the claims' transaction session, over the in-memory Kafka ---

REQUESTS_TOPIC, DECISIONS_TOPIC, STORE_TOPIC = "pa-requests", "pa-decisions", "store"


class _RequestHarness:
    """``build_request_worker`` over a ``FakeCluster`` whose input is the requests topic and output PA decisions."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.stop = threading.Event()
        self.registry = CollectorRegistry()
        self.producers = []
        self.faults = []  # per producer, in creation order
        self.store = Authorizations(SECRET, STORE_TOPIC)
        self.worker = build_request_worker(
            _settings(),
            consumer=FakeConsumer(cluster, self.stop),
            producer_factory=self._producer,
            registry=self.registry,
            log=structlog.get_logger(),
            readback=cluster.read_back,
            lookup_facts=lambda _claim: Facts(),
            clock=lambda: NOW,
            claims_partitions=len(cluster.logs),
            authorizations=self.store,
            membership=lambda: Membership.OURS,  # the group still knows this process as the slot
        )
        self.worker.backoff_s = (0.01, 0.05)

    def _producer(self):
        faults = self.faults[len(self.producers)] if len(self.producers) < len(self.faults) else {}
        producer = FakeProducer(self.cluster, faults)
        self.producers.append(producer)
        return producer

    def run(self):
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("code", self.worker.run(self.stop)))
        thread.start()
        thread.join(10)
        if thread.is_alive():
            self.stop.set()
            thread.join()
            pytest.fail("the request worker never drained the requests (records lost or stuck)")
        return result["code"]

    def answers(self):
        return [(p.partition, json.loads(p.value)) for p in self.cluster.results()]

    def letters(self):
        return [Codec().decode_dead_letter(p.value)["error_class"] for p in self.cluster.dead_letters()]

    def stored(self):
        return [p for p in self.cluster.published if p.topic == STORE_TOPIC]


def _requests_cluster(partitions=2):
    return FakeCluster(partitions, topic=REQUESTS_TOPIC, output=DECISIONS_TOPIC)


def test_requests_run_through_the_pipeline_answer_on_their_partition_and_go_on_file_once():
    """A request is answered on its own partition number of PA-decisions with its approval on file in the same transaction; a bad one is dead-lettered."""
    cluster = _requests_cluster()
    cluster.append(1, encode_pa_request(_request()), key=b"REQ-0001")
    cluster.append(0, b"not a request", key=b"REQ-BAD")
    h = _RequestHarness(cluster)
    assert h.run() == ExitCode.OK
    [(partition, answer)] = h.answers()
    assert (partition, answer["request_id"], answer["outcome"]) == (1, "REQ-0001", "APPROVED")
    [stored] = h.stored()
    assert stored.key == answer["pa_number"].encode()
    assert decode_authorization(stored.key, stored.value).source_kind == "request"
    assert h.letters() == [DeadLetterClass.NOT_AVRO.value]
    assert cluster.committed == {TopicPartition(REQUESTS_TOPIC, 0): 1, TopicPartition(REQUESTS_TOPIC, 1): 1}
    assert h.producers[0].calls.count("commit") == 1  # one transaction for the batch
    assert all(phi.encode() not in p.value for p in cluster.published for phi in PHI)


def test_an_unknown_commit_outcome_on_the_request_path_replaces_the_producer_not_the_process():
    """A request commit that landed but reported an unknown outcome: a new producer, the filter read back, and the redelivered request is a duplicate, answered and stored once."""
    cluster = _requests_cluster(1)
    cluster.append(0, encode_pa_request(_request()), key=b"REQ-0001")
    h = _RequestHarness(cluster)

    def scenario(consumer):
        if consumer.polls == 1:
            h.producers[0].commit_lands_then_raise.append(IndefiniteOutcome("commit: outcome unknown"))
        if len(h.producers) == 2 and len(cluster.logs[0]) == 1:
            cluster.append(0, encode_pa_request(_request()), key=b"REQ-0001")  # the requester resends

    h.worker.consumer.on_poll = scenario
    assert h.run() == ExitCode.OK  # before: exit 4, the restart fenced the producer
    assert len(h.producers) == 2
    assert h.registry.get_sample_value("claims_worker_producer_recreations_total") == 1
    assert [a["request_id"] for _, a in h.answers()] == ["REQ-0001"]
    assert len(h.stored()) == 1
    assert h.letters() == [DeadLetterClass.DUPLICATE_EVENT.value]


def test_a_request_commit_that_did_not_land_is_decided_again_after_the_replacement():
    """An unknown commit outcome that did not land: the new producer's transaction answers and stores the request exactly once."""
    cluster = _requests_cluster(1)
    cluster.append(0, encode_pa_request(_request()), key=b"REQ-0001")
    h = _RequestHarness(cluster)
    h.faults = [{"commit": [IndefiniteOutcome("commit_transaction did not complete")]}]
    assert h.run() == ExitCode.OK
    assert len(h.producers) == 2
    assert [a["request_id"] for _, a in h.answers()] == ["REQ-0001"]
    assert len(h.stored()) == 1
    assert h.letters() == []
