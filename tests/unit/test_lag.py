"""The lag command's rendering and the worker's lag-in-seconds bookkeeping, without a broker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from worker.cli.lag import group_line, lag_json, lag_table, member_state
from worker.kafka.io import TopicPartition
from worker.kafka.lag import GroupLag, Member, PartitionLag, members_of
from worker.ops.escaping import printable_lines
from worker.runtime.waiting import OldestWaiting

NOW_S = 1_800_000_000.0
TOPIC = "pharmacy.claims"
W1 = Member("w1-1a2b", "claims-worker-0", "claims-worker-0-consumer", "/10.0.0.7", (0, 1))


def _partition(n: int, committed: int | None, end: int, waited_s: float | None, owner: Member | None = None):
    oldest = None if waited_s is None else int((NOW_S - waited_s) * 1000)
    return PartitionLag(n, committed, start=0, end=end, oldest_ms=oldest, owner=owner)


def _lag(state: str, members: tuple[Member, ...], *partitions: PartitionLag) -> GroupLag:
    return GroupLag("claims-worker", TOPIC, state, members, partitions, read_at=NOW_S)


class TestPartitionLag:
    """Lag in records counts from the committed offset (else the log start); seconds from the oldest waiting."""

    def test_lag_counts_from_the_committed_offset(self):
        """Committed 10 of 15: 5 records, and the seconds since the oldest waiting record was written."""
        p = _partition(0, 10, 15, waited_s=42.5)
        assert (p.lag_records, p.lag_seconds(NOW_S)) == (5, 42.5)

    def test_no_lag_is_zero_seconds_whatever_the_timestamp(self):
        """At the end offset the lag is 0 records and 0 seconds."""
        assert _partition(0, 15, 15, waited_s=None).lag_seconds(NOW_S) == 0

    def test_never_committed_counts_from_the_log_start(self):
        """A partition the group never committed lags by everything from the log start."""
        p = PartitionLag(1, None, start=4, end=9, oldest_ms=None, owner=None)
        assert p.lag_records == 5

    def test_a_committed_offset_below_the_log_start_counts_from_the_start(self):
        """Records deleted by retention are not lag: the worker resumes at the log start."""
        assert PartitionLag(0, 2, start=6, end=9, oldest_ms=None, owner=None).lag_records == 3

    def test_only_markers_waiting_is_zero_seconds(self):
        """Offsets past the committed one but no record to decide (transaction markers): 0 seconds."""
        p = _partition(0, 10, 11, waited_s=None)
        assert (p.lag_records, p.lag_seconds(NOW_S)) == (1, 0)

    def test_a_timestamp_in_the_future_is_zero_seconds(self):
        """A producer clock ahead of ours gives 0 seconds, never negative."""
        assert _partition(0, 1, 2, waited_s=-30).lag_seconds(NOW_S) == 0


class TestGroupLine:
    """The group line says what the group is; only a Stable group with members is active."""

    @pytest.mark.parametrize(
        ("state", "members", "expected"),
        [
            pytest.param("Empty", (), "no members (group Empty)", id="empty"),
            pytest.param("Stable", (W1,), "active, 1 member (group Stable)", id="stable"),
            pytest.param(
                "PreparingRebalance",
                (W1,),
                "rebalancing, 1 member (group PreparingRebalance)",
                id="rebalancing",
            ),
            pytest.param(
                "Dead", (), "does not exist (no members, nothing committed on this topic)", id="dead"
            ),
        ],
    )
    def test_group_line(self, state, members, expected):
        """Each group state is described in words, with the coordinator's own state name."""
        lag = _lag(state, members, _partition(0, None if state == "Dead" else 3, 3, None))
        assert group_line(lag) == f"group claims-worker on {TOPIC}: {expected}"

    def test_an_empty_group_is_never_active(self):
        """An Empty group with committed offsets is shown without members, in the table and the JSON."""
        lag = _lag("Empty", (), _partition(0, 3, 8, 12.0))
        text = "\n".join(lag_table(lag))
        assert "no members (group Empty)" in text
        assert "active" not in text
        document = json.loads(lag_json(lag))
        assert (document["active"], document["members"], document["exists"]) == (False, [], True)


class TestTable:
    """The table has one row per partition, a total row, and the members with their states."""

    def test_rows_total_and_members(self):
        """Each partition's committed, end, lag and seconds; the total sums records and takes the oldest."""
        lag = _lag("Stable", (W1,), _partition(0, 10, 15, 42.5, W1), _partition(1, 7, 7, None, W1))
        lines = lag_table(lag)
        assert lines[0] == f"group claims-worker on {TOPIC}: active, 1 member (group Stable)"
        assert lines[1].split() == ["PARTITION", "COMMITTED", "END", "LAG_RECORDS", "LAG_SECONDS", "OWNER"]
        owner = "claims-worker-0-consumer@/10.0.0.7 [claims-worker-0]"
        assert lines[2].split() == ["0", "10", "15", "5", "42.5", *owner.split()]
        assert lines[3].split() == ["1", "7", "7", "0", "0.0", *owner.split()]
        assert lines[4].split() == ["total", "5", "42.5"]
        assert lines[6].split() == ["MEMBER", "SLOT", "CLIENT", "HOST", "STATE"]
        assert lines[7].split() == [
            "w1-1a2b",
            "claims-worker-0",
            "claims-worker-0-consumer",
            "/10.0.0.7",
            "assigned",
            "0,1",
        ]
        assert "static member" in lines[8]

    def test_never_committed_is_a_dash_with_a_note(self):
        """A partition without a committed offset shows '-' and the note says where the lag counts from."""
        lines = lag_table(_lag("Dead", (), _partition(0, None, 4, 3.0)))
        assert lines[2].split()[:4] == ["0", "-", "4", "4"]
        assert any(line.startswith("'-': never committed") for line in lines)

    def test_control_characters_in_member_fields_are_escaped_when_printed(self):
        """A client id with an escape sequence reaches the terminal as text (echo escapes it)."""
        evil = Member("m\x1b[2J", None, "cli\x07ent", "/h\rost", (0,))
        lines = lag_table(_lag("Stable", (evil,), _partition(0, 1, 2, 5.0, evil)))
        shown = printable_lines("\n".join(lines))
        assert not {"\x1b", "\x07", "\r"} & set(shown)
        assert {"m\\u001b[2J", "cli\\u0007ent"} <= set(shown.split())

    def test_json_through_escaping_stays_the_same_json(self):
        """The JSON document printed through the escaping is still valid JSON with the same values."""
        evil = Member("m\x1b[2J", None, "c", "/h", (0,))
        lag = _lag("Stable", (evil,), _partition(0, 1, 2, 5.0, evil))
        document = json.loads(printable_lines(lag_json(lag)))
        assert document["members"][0]["member_id"] == "m\x1b[2J"
        assert document["partitions"][0] == {
            "partition": 0,
            "committed": 1,
            "start": 0,
            "end": 2,
            "lag_records": 1,
            "lag_seconds": 5.0,
            "oldest_waiting_timestamp": datetime.fromtimestamp(NOW_S - 5, UTC).isoformat(
                timespec="milliseconds"
            ),
            "owner": "m\x1b[2J",
        }


class TestMembers:
    """Members come from describe_groups, each with its partitions of the topic."""

    def test_members_of_a_described_group(self):
        """Assignments are read per topic; an undecodable one leaves the member without partitions."""
        described = {
            "group_state": "Stable",
            "members": [
                {
                    "member_id": "b",
                    "group_instance_id": "claims-worker-1",
                    "client_id": "c1",
                    "client_host": "/h1",
                    "member_assignment": {
                        "assigned_partitions": [
                            {"topic": TOPIC, "partitions": [3, 1]},
                            {"topic": "other", "partitions": [0]},
                        ]
                    },
                },
                {
                    "member_id": "a",
                    "group_instance_id": None,
                    "client_id": "c0",
                    "client_host": "/h0",
                    "member_assignment": b"?",
                },
            ],
        }
        members = members_of(described, TOPIC)
        assert [(m.member_id, m.instance_id, m.partitions) for m in members] == [
            ("a", None, ()),
            ("b", "claims-worker-1", (1, 3)),
        ]

    @pytest.mark.parametrize(
        ("state", "partitions", "expected"),
        [
            pytest.param("Stable", (2,), "assigned 2", id="assigned"),
            pytest.param("Stable", (), "idle (no partitions of this topic)", id="idle"),
            pytest.param("CompletingRebalance", (2,), "joining (CompletingRebalance)", id="joining"),
        ],
    )
    def test_member_state(self, state, partitions, expected):
        """A member's state is its assignment in a settled group, or that it is joining a rebalance."""
        assert member_state(Member("m", None, "c", "/h", partitions), state) == expected


@dataclass
class _Rec:
    timestamp: int


TP = TopicPartition(TOPIC, 0)


class TestOldestWaiting:
    """The worker's lag in seconds: the oldest record polled and not committed, else the last decided one."""

    def test_the_first_record_polled_since_the_commit_is_the_oldest(self):
        """Across polls of one open transaction the first record's timestamp stays the oldest."""
        waiting = OldestWaiting()
        waiting.polled({TP: [_Rec(100_000), _Rec(101_000)]})
        waiting.polled({TP: [_Rec(105_000)]})
        assert waiting.age_s(TP, lag_records=3, now_s=160.0) == 60.0

    def test_after_a_commit_the_last_decided_record_bounds_the_age(self):
        """Between a commit and the next poll, the age is that of the last record the commit decided."""
        waiting = OldestWaiting()
        batch = {TP: [_Rec(100_000), _Rec(130_000)]}
        waiting.polled(batch)
        waiting.held(batch)
        waiting.committed([TP])
        assert waiting.age_s(TP, lag_records=2, now_s=160.0) == 30.0
        waiting.polled({TP: [_Rec(140_000)]})
        assert waiting.age_s(TP, lag_records=2, now_s=160.0) == 20.0

    def test_no_lag_is_zero_and_unknown_is_none(self):
        """Lag 0 is 0 seconds; a partition never polled (or forgotten, or without timestamps) is unknown."""
        waiting = OldestWaiting()
        assert waiting.age_s(TP, lag_records=0, now_s=160.0) == 0
        assert waiting.age_s(TP, lag_records=4, now_s=160.0) is None
        waiting.polled({TP: [_Rec(100_000)]})
        waiting.forget([TP])
        assert waiting.age_s(TP, lag_records=4, now_s=160.0) is None
        waiting.polled({TP: [_Rec(-1)]})
        assert waiting.age_s(TP, lag_records=4, now_s=160.0) is None
