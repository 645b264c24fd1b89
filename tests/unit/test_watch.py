"""The group watch: claims partitions a settled consumer group leaves without an owner are counted and logged."""

from __future__ import annotations

import threading

from kafka import errors as kerrors
from structlog.testing import capture_logs

from worker.ops.logs import get_logger
from worker.runtime.watch import GroupWatch, healer, unowned_partitions

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

    def __init__(self, answers, removal=kerrors.NoError):
        self.answers = list(answers)
        self.closed = 0
        self.removal = removal  # the coordinator's answer to a removal (an exception instance is raised)
        self.removed: list[tuple[str, str | None, str | None]] = []

    def remove_group_members(self, group_id, members):
        if isinstance(self.removal, Exception):
            raise self.removal
        self.removed.extend((group_id, m.group_instance_id, m.reason) for m in members)
        return dict.fromkeys(members, self.removal)

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


class TestHeal:
    """Two checks in a row with the same partitions unowned: the first static member removes itself."""

    STUCK = _group("Stable", [(TOPIC, [0])], [(TOPIC, [2])])  # members "0" and "1"; partition 1 unowned
    HEALED = _group("Stable", [(TOPIC, [0, 1])], [(TOPIC, [2])])

    def test_the_first_slot_removes_itself_at_the_second_sighting(self):
        """Member "0" (sorts first) asks the coordinator to remove it, once, naming the partitions; counted."""
        admin = _Admin([self.STUCK, self.STUCK, self.HEALED])
        healed: list[bool] = []
        watch = _watch([admin], [], member="0", healed=lambda: healed.append(True))
        with capture_logs() as events:
            assert watch.check() == {1}
            assert admin.removed == [], (
                "one sighting may be the moment between a revoke and its follow-up join"
            )
            assert watch.check() == {1}
            assert watch.check() == set()
        assert admin.removed == [("g", "0", "claims-worker: partitions [1] unowned; rebalance")]
        assert healed == [True]
        assert [e["partitions"] for e in events if e["event"] == "group_heal_requested"] == [[1]]

    def test_the_other_slots_wait(self):
        """Member "1" sees the same answer and does nothing: one worker acts for the group."""
        admin = _Admin([self.STUCK])
        watch = _watch([admin], [], member="1")
        for _ in range(4):
            assert watch.check() == {1}
        assert admin.removed == []

    def test_without_a_member_id_the_watch_only_watches(self):
        """No static member id (``member=None``): counted and logged, never removed."""
        admin = _Admin([self.STUCK])
        watch = _watch([admin], [])
        for _ in range(3):
            watch.check()
        assert admin.removed == []

    def test_a_heal_waits_two_more_checks_before_the_next(self):
        """Still stuck after a heal: the next removal comes two checks later, not at every check."""
        admin = _Admin([self.STUCK])
        watch = _watch([admin], [], member="0")
        for _ in range(5):
            watch.check()
        assert [member for _, member, _ in admin.removed] == ["0", "0"]  # at checks 2 and 4

    def test_a_refused_or_unanswered_removal_is_logged_and_tried_again(self):
        """The coordinator refuses (an error code) or does not answer: logged, not counted, retried later."""
        healed: list[bool] = []
        refused = _Admin([self.STUCK], removal=kerrors.UnknownMemberIdError)
        watch = _watch([refused], [], member="0", healed=lambda: healed.append(True))
        with capture_logs() as events:
            watch.check()
            watch.check()
        assert [e["error"] for e in events if e["event"] == "group_heal_failed"] == ["UnknownMemberIdError"]

        down = _Admin([self.STUCK], removal=kerrors.NodeNotReadyError("coordinator"))
        again = _Admin([self.STUCK])
        watch = _watch([down, again], [], member="0", healed=lambda: healed.append(True))
        watch.check()
        watch.check()  # the removal raises: the client is dropped
        assert down.closed == 1
        watch.check()
        watch.check()  # a new client, and the removal goes through
        assert [member for _, member, _ in again.removed] == ["0"]
        assert healed == [True]

    def test_the_healer_is_the_static_member_that_sorts_first(self):
        """Dynamic members (no instance id) and odd entries are skipped; no static member: nobody."""
        group = _group("Stable", [(TOPIC, [0])], [(TOPIC, [1])], [(TOPIC, [2])])
        group["members"][0]["group_instance_id"] = None
        group["members"].append("odd")
        assert healer(group) == "1"
        assert healer(_group("Stable")) is None
        assert healer(None) is None
