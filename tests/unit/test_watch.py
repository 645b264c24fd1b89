"""The group watch: claims partitions a settled consumer group leaves without an owner are counted and logged."""

from __future__ import annotations

import threading

from kafka import errors as kerrors
from structlog.testing import capture_logs

from worker.ops.logs import get_logger
from worker.runtime.watch import GroupWatch, unowned_partitions

TOPIC = "pharmacy.claims"


def _group(state="Stable", *assignments, error=None):
    """A describe_groups answer for one group, each member owning ``assignments[i]`` (topic, partitions) pairs."""
    members = [
        {
            "member_id": f"m{i}",
            "group_instance_id": str(i),
            "member_assignment": {
                "assigned_partitions": [{"topic": t, "partitions": list(ps)} for t, ps in owned],
                "user_data": "",
            },
        }
        for i, owned in enumerate(assignments)
    ]
    return {"group_state": state, "members": members, "error": error}


class TestUnownedPartitions:
    """Which partitions of the claims topic no member of the settled group owns."""

    def test_a_partition_nobody_owns_is_named(self):
        """Members owning 0 and 2 of three partitions leave partition 1 unowned."""
        group = _group("Stable", [(TOPIC, [0])], [(TOPIC, [2])])
        assert unowned_partitions(group, TOPIC, 3) == {1}

    def test_every_partition_owned_is_healthy(self):
        """All partitions owned: nothing unowned (the alert stays quiet)."""
        group = _group("Stable", [(TOPIC, [0, 1])], [(TOPIC, [2])])
        assert unowned_partitions(group, TOPIC, 3) == set()

    def test_other_topics_do_not_count(self):
        """A member owning partition 1 of another topic does not own the claims topic's partition 1."""
        group = _group("Stable", [(TOPIC, [0, 2]), ("other", [1])])
        assert unowned_partitions(group, TOPIC, 3) == {1}

    def test_a_settled_group_without_members_owns_nothing(self):
        """A Stable group with no member leaves every partition unowned."""
        assert unowned_partitions(_group("Stable"), TOPIC, 2) == {0, 1}

    def test_a_group_in_a_rebalance_is_not_judged(self):
        """During a rebalance (or with an error, or no answer) the answer is None, not a count."""
        assert unowned_partitions(_group("PreparingRebalance", [(TOPIC, [0])]), TOPIC, 3) is None
        assert unowned_partitions(_group("CompletingRebalance", [(TOPIC, [0])]), TOPIC, 3) is None
        assert unowned_partitions(_group("Stable", error="COORDINATOR_NOT_AVAILABLE"), TOPIC, 3) is None
        assert unowned_partitions(None, TOPIC, 3) is None

    def test_an_assignment_kafka_python_could_not_decode_is_not_judged(self):
        """Raw bytes instead of a decoded assignment: no verdict rather than a false alarm."""
        group = _group("Stable", [(TOPIC, [0])])
        group["members"][0]["member_assignment"] = b"\x00\x01"
        assert unowned_partitions(group, TOPIC, 3) is None


class _Admin:
    """Answers describe_groups from a list (an exception in it is raised), counting closes."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.closed = 0

    def describe_groups(self, group_ids):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return {group_ids[0]: answer}

    def close(self):
        self.closed += 1


def _watch(admins, publish, **kwargs):
    """A watch over three claims partitions whose admin clients come from ``admins`` in turn."""
    made = iter(admins)
    publish = publish.append if isinstance(publish, list) else publish
    return GroupWatch(
        lambda: next(made),
        group_id="g",
        topic=TOPIC,
        partitions=lambda: 3,
        publish=publish,
        log=get_logger("test"),
        **kwargs,
    )


class TestGroupWatch:
    """The watch publishes the count, logs a change once, and survives a coordinator that does not answer."""

    def test_publishes_the_count_and_warns_once_when_it_persists(self):
        """1 unowned three times then 0: counts published each time; one warning, at the second sighting."""
        stuck = _group("Stable", [(TOPIC, [0])], [(TOPIC, [2])])
        healed = _group("Stable", [(TOPIC, [0, 1])], [(TOPIC, [2])])
        published: list[int] = []
        watch = _watch([_Admin([stuck, stuck, stuck, healed])], published)
        with capture_logs() as events:
            assert watch.check() == {1}
            first = [e for e in events if e["event"] == "partitions_unowned"]
            assert watch.check() == {1}
            assert watch.check() == {1}
            assert watch.check() == set()
        assert first == [], "one sighting may be the moment between a revoke and its follow-up join"
        assert published == [1, 1, 1, 0]
        warnings = [e for e in events if e["event"] == "partitions_unowned"]
        assert [e["partitions"] for e in warnings] == [[1]]

    def test_a_rebalance_publishes_nothing(self):
        """A group in a rebalance leaves the last published count as it was."""
        published: list[int] = []
        watch = _watch([_Admin([_group("PreparingRebalance")])], published)
        assert watch.check() is None
        assert published == []

    def test_an_unanswered_question_drops_the_client_and_asks_again_with_a_new_one(self):
        """A Kafka error closes the admin client; the next check makes a new one and answers."""
        first = _Admin([kerrors.NodeNotReadyError("coordinator")])
        second = _Admin([_group("Stable", [(TOPIC, [0, 1, 2])])])
        published: list[int] = []
        watch = _watch([first, second], published)
        assert watch.check() is None
        assert first.closed == 1
        assert watch.check() == set()
        assert published == [0]

    def test_the_thread_checks_until_stopped(self):
        """Started, it checks on its own thread; stop ends it and closes the client."""
        admin = _Admin([_group("Stable", [(TOPIC, [0])])])
        seen = threading.Event()
        published: list[int] = []

        def publish(n):
            published.append(n)
            if len(published) >= 2:
                seen.set()

        watch = _watch([admin], publish, interval_s=0.01)
        watch.start()
        try:
            assert seen.wait(10), "the thread did not check twice"
        finally:
            watch.stop()
        assert published[:2] == [2, 2]
        assert admin.closed == 1

    def test_an_odd_answer_does_not_end_the_thread(self):
        """An answer the watch cannot read (members not a list) is logged; the next check still publishes."""
        odd = {"group_state": "Stable", "members": 5, "error": None}
        admin = _Admin([odd, _group("Stable", [(TOPIC, [0, 1, 2])])])
        seen = threading.Event()
        published: list[int] = []

        def publish(n):
            published.append(n)
            seen.set()

        watch = _watch([admin], publish, interval_s=0.01)
        with capture_logs() as events:
            watch.start()
            try:
                assert seen.wait(10), "the thread stopped after the odd answer"
            finally:
                watch.stop()
        assert published[0] == 0
        assert any(e["event"] == "group_watch_failed" and e["error"] == "TypeError" for e in events)
