"""The sentinel: operator faults (a topic gone or shrunk, another cluster, a twin on the slot) end the worker, named."""

from __future__ import annotations

from kafka import errors as kerrors
from structlog.testing import capture_logs

from worker.config.settings import Settings
from worker.errors import ExitCode
from worker.kafka.cluster import ClusterView, cluster_view
from worker.ops.logs import get_logger
from worker.runtime.sentinel import Sentinel
from worker.runtime.watch import GroupWatch

CLAIMS, RESULTS, DLQ = "pharmacy.claims", "pharmacy.claims.adjudicated", "pharmacy.claims.dead-letter"
SLOT = "claims-worker-w0"


def _settings(**overrides) -> Settings:
    return Settings(KAFKA_BOOTSTRAP_SERVERS="broker:9092", instance="w0", **overrides)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _sentinel(clock=None, member="m-ours", cluster_id="c1", stopped=None, **settings) -> Sentinel:
    return Sentinel(
        _settings(**settings),
        get_logger("test"),
        cluster_id=cluster_id,
        member_id=lambda: member,
        instance_id=SLOT,
        on_fatal=(lambda: stopped.append(True)) if stopped is not None else (lambda: None),
        clock=clock or _Clock(),
    )


def _view(cluster_id="c1", claims=2, results=2, dlq=2) -> ClusterView:
    counts = {CLAIMS: claims, RESULTS: results, DLQ: dlq}
    return ClusterView(cluster_id, {t: n for t, n in counts.items() if n is not None})


def _group(holder: str | None) -> dict:
    members = [{"member_id": "m-other-slot", "group_instance_id": "claims-worker-w1"}]
    if holder is not None:
        members.append({"member_id": holder, "group_instance_id": SLOT})
    return {"group_state": "Stable", "members": members, "error": None}


class TestTopics:
    """A topic deleted while the worker runs: reported at once, exit 2 past the limit, unless it comes back."""

    def test_a_deleted_topic_is_named_unready_and_exit_2_at_the_limit(self):
        """Missing: one ``topic_missing`` line and /readyz false; past CLAIMS_TOPIC_MISSING_LIMIT_S: exit 2."""
        clock, stopped = _Clock(), []
        sentinel = _sentinel(clock, stopped=stopped, topic_missing_limit_s=60)
        with capture_logs() as events:
            assert sentinel.look(_view(), None) is None
            assert sentinel.readiness() is None
            assert sentinel.look(_view(claims=0), None) is None
            clock.now = 59
            assert sentinel.look(_view(claims=0), None) is None
            ready, why = sentinel.readiness()
            clock.now = 60
            fault = sentinel.look(_view(claims=0), None)
        assert sentinel.claims_topic_missing
        assert (ready, CLAIMS in why) == (False, True)
        assert [e["topic"] for e in events if e["event"] == "topic_missing"] == [CLAIMS]
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.BAD_SETTINGS
        assert fault.message.startswith(f"topic {CLAIMS!r} was deleted while the worker ran")
        assert "recreate it with 2 partitions" in fault.message
        assert stopped == [True]
        assert [e["exit_code"] for e in events if e["event"] == "operator_fault"] == [2]

    def test_a_topic_recreated_in_time_is_forgiven(self):
        """Back before the limit: ``topic_back``, ready again, no exit."""
        clock = _Clock()
        sentinel = _sentinel(clock, topic_missing_limit_s=60)
        sentinel.look(_view(results=0), None)
        clock.now = 30
        with capture_logs() as events:
            assert sentinel.look(_view(), None) is None
        clock.now = 120
        assert sentinel.look(_view(), None) is None
        assert sentinel.readiness() is None
        assert [e["topic"] for e in events if e["event"] == "topic_back"] == [RESULTS]

    def test_an_output_topic_recreated_smaller_is_exit_2_at_once(self):
        """Results with 1 partition where claims has 2 (it had 2): exit 2 naming both counts."""
        sentinel = _sentinel()
        sentinel.look(_view(), None)
        fault = sentinel.look(_view(results=1), None)
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.BAD_SETTINGS
        assert f"topic {RESULTS!r} has 1 partitions; it needs at least 2" in fault.message
        assert "it had 2" in fault.message

    def test_a_topic_not_answered_about_is_not_judged(self):
        """No answer for a topic (another error code) is neither missing nor present."""
        sentinel = _sentinel()
        assert sentinel.look(_view(claims=None, results=None, dlq=None), None) is None
        assert sentinel.missing == {}

    def test_diagnose_counts_a_missing_topic_at_once(self):
        """After an internal error the fresh answer is judged without the limit's wait."""
        fault = _sentinel(topic_missing_limit_s=600).diagnose(_view(dlq=0))
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.BAD_SETTINGS
        assert DLQ in fault.message
        assert _sentinel().diagnose(_view()) is None
        assert _sentinel().diagnose(None) is None


class TestCluster:
    """A different cluster id behind the same bootstrap addresses: exit 2 naming both ids."""

    def test_another_cluster_id_is_exit_2(self):
        """Started against c1, the brokers now answer c2."""
        fault = _sentinel(cluster_id="c1").look(_view(cluster_id="c2"), None)
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.BAD_SETTINGS
        assert "now belong to another Kafka cluster (cluster id 'c1', now 'c2')" in fault.message
        assert "broker:9092" in fault.message

    def test_the_first_answer_is_adopted_when_the_start_did_not_know(self):
        """No id at start: the first answer's is kept; the same id again is fine."""
        sentinel = _sentinel(cluster_id=None)
        assert sentinel.look(_view(cluster_id="c1"), None) is None
        assert sentinel.look(_view(cluster_id="c1"), None) is None
        assert sentinel.look(_view(cluster_id="c2"), None) is not None


class TestSlot:
    """Another member id on this worker's static member slot at two checks in a row: a twin (exit 3)."""

    def test_a_twin_on_the_slot_is_exit_3_at_the_second_sighting(self):
        """One sighting may be our own rejoin not yet in our metadata; the second is a twin."""
        stopped: list[bool] = []
        sentinel = _sentinel(stopped=stopped)
        assert sentinel.look(None, _group("m-ours")) is None
        assert sentinel.look(None, _group("m-twin")) is None
        fault = sentinel.look(None, _group("m-twin"))
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.FENCED
        assert "another live worker uses instance slot 'w0'" in fault.message
        assert stopped == [True]

    def test_our_own_rejoin_is_not_a_twin(self):
        """Different ids at two checks (our rejoin, then it settles), or no member yet: nothing."""
        sentinel = _sentinel()
        assert sentinel.look(None, _group("m-new-1")) is None
        assert sentinel.look(None, _group("m-new-2")) is None
        assert sentinel.look(None, _group(None)) is None
        assert sentinel.look(None, _group("m-new-2")) is None
        unjoined = _sentinel(member="")
        for _ in range(3):
            assert unjoined.look(None, _group("m-twin")) is None


class _Manager:
    def run(self, call, *args):
        return call(*args)


class _MetadataAdmin:
    """A kafka-python admin client as the watch uses it: Metadata (with the cluster id) and DescribeGroups."""

    def __init__(self, topics: dict[str, int | None], group: dict, cluster_id: str = "c1") -> None:
        self._manager = _Manager()
        self.topics, self.group, self.cluster_id = topics, group, cluster_id
        self.removed: list[str] = []

    def _get_cluster_metadata(self, names):
        unknown = kerrors.UnknownTopicOrPartitionError.errno
        return {
            "cluster_id": self.cluster_id,
            "topics": [
                {
                    "name": n,
                    "error_code": 0 if self.topics.get(n) else unknown,
                    "partitions": [{"partition_index": p} for p in range(self.topics.get(n) or 0)],
                }
                for n in names
            ],
        }

    def describe_groups(self, group_ids):
        return {group_ids[0]: self.group}

    def remove_group_members(self, _group_id, members):
        self.removed.extend(m.group_instance_id for m in members)
        return dict.fromkeys(members, kerrors.NoError)

    def close(self):
        pass


class TestWatchWithSentinel:
    """The group watch hands its answers to the sentinel and never heals a claims topic that is gone."""

    def test_cluster_view_reads_counts_missing_topics_and_the_cluster_id(self):
        """Partitions counted, an unknown topic is 0, the cluster id kept."""
        admin = _MetadataAdmin({CLAIMS: 3, RESULTS: None}, {})
        assert cluster_view(admin, [CLAIMS, RESULTS]) == ClusterView("c1", {CLAIMS: 3, RESULTS: 0})

    def test_a_vanished_claims_topic_is_not_healed(self):
        """Every partition of a deleted topic looks unowned: the watch reports the topic, never removes itself."""
        empty = {"group_state": "Stable", "members": [{"member_id": "m-ours", "group_instance_id": SLOT}]}
        admin = _MetadataAdmin({CLAIMS: None, RESULTS: 2, DLQ: 2}, empty)
        published: list[int] = []
        watch = GroupWatch(
            lambda: admin,
            group_id="claims-worker",
            topic=CLAIMS,
            partitions=lambda: 2,
            publish=published.append,
            log=get_logger("test"),
            member=SLOT,
            sentinel=_sentinel(topic_missing_limit_s=600),
        )
        with capture_logs() as events:
            for _ in range(4):
                assert watch.check() is None
        assert admin.removed == []
        assert published == []
        assert [e["topic"] for e in events if e["event"] == "topic_missing"] == [CLAIMS]
        assert not [e for e in events if e["event"] == "partitions_unowned"]


def _watch_over(sentinel: Sentinel, *admins) -> GroupWatch:
    """A group watch with ``sentinel`` whose admin clients come from ``admins`` (an exception: no answer)."""
    made = iter(admins)

    def factory():
        admin = next(made)
        if isinstance(admin, Exception):
            raise admin
        return admin

    return GroupWatch(
        factory,
        group_id="claims-worker",
        topic=CLAIMS,
        partitions=lambda: 2,
        publish=lambda _n: None,
        log=get_logger("test"),
        sentinel=sentinel,
    )


HEALTHY = {CLAIMS: 2, RESULTS: 2, DLQ: 2}


class TestNamedExit:
    """After the loop: the sentinel's fault decides the code and the line; exit 70 gets one more look."""

    def test_a_fault_that_stopped_the_loop_gives_its_code_and_line(self):
        """The loop returned 0 (stopped by the sentinel): the fault's code (3) and message win."""
        sentinel = _sentinel()
        sentinel.look(None, _group("m-twin"))
        sentinel.look(None, _group("m-twin"))
        code, line = _watch_over(sentinel).named_exit(ExitCode.OK)
        assert code == ExitCode.FENCED
        assert "instance slot 'w0'" in (line or "")

    def test_without_a_fault_the_loop_code_stands(self):
        """No fault seen: whatever the loop returned (0, 4, 70) is the exit code; nothing is asked."""
        never = _watch_over(_sentinel())  # no admin client to give: asking would fail the test
        for code in (ExitCode.OK, ExitCode.UNREACHABLE, ExitCode.INTERNAL):
            assert never.named_exit(code) == (code, None)

    def test_diagnose_names_another_cluster_and_nothing_else(self):
        """The fresh look behind an internal error: another cluster id is named; a healthy answer or none is not."""
        fault = _watch_over(_sentinel(), _MetadataAdmin(HEALTHY, {}, cluster_id="c2")).diagnose()
        assert fault is not None
        assert fault.kind.exit_code == ExitCode.BAD_SETTINGS
        assert "another Kafka cluster" in fault.message
        assert _watch_over(_sentinel(), _MetadataAdmin(HEALTHY, {})).diagnose() is None
        assert _watch_over(_sentinel(), kerrors.NodeNotReadyError("no broker")).diagnose() is None

    def test_readyz_is_false_while_a_topic_is_missing(self):
        """The worker's own check answers unless the sentinel sees a fault."""
        sentinel = _sentinel()
        ready = sentinel.guard(lambda: (True, "2 partitions assigned"))
        assert ready() == (True, "2 partitions assigned")
        sentinel.look(_view(results=0), None)
        ok, why = ready()
        assert not ok
        assert RESULTS in why
