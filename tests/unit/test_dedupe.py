"""SeenEvents and its read-back: bounded FIFO memory that changes only with what commits, read back newest-first."""

from __future__ import annotations

import threading

from worker.config.settings import load_settings
from worker.contracts.wire import EVENT_ID_HEADER
from worker.kafka import io as kafka_io
from worker.kafka.io import read_event_ids
from worker.state.dedupe import SeenEvents
from worker.state.store import Restored


class TestSeenEvents:
    def test_staged_ids_are_seen_and_kept_on_commit(self):
        """An id staged in a batch is a duplicate for the rest of the batch and after commit."""
        seen = SeenEvents(10)
        seen.stage(0, "e1")
        assert seen.seen(0, "e1")
        seen.commit()
        assert seen.seen(0, "e1")

    def test_abort_forgets_the_aborted_batch_only(self):
        """Aborting a batch forgets its ids but keeps earlier committed ones."""
        seen = SeenEvents(10)
        seen.stage(0, "old")
        seen.commit()
        seen.stage(0, "new")
        seen.abort()
        assert seen.seen(0, "old")
        assert not seen.seen(0, "new")

    def test_abort_restores_ids_evicted_by_staging_in_their_place(self):
        """Ids the aborted batch pushed out of the window come back, in the original order."""
        seen = SeenEvents(3)
        seen.load_ids(0, ["a", "b", "c"])
        seen.stage(0, "d")
        seen.stage(0, "e")
        assert seen.snapshot(0) == ["c", "d", "e"]
        seen.abort()
        assert seen.snapshot(0) == ["a", "b", "c"]

    def test_abort_after_commit_undoes_nothing_committed(self):
        """A commit ends the journal: a later abort leaves the committed ids and evictions alone."""
        seen = SeenEvents(2)
        seen.load_ids(0, ["a", "b"])
        seen.stage(0, "c")
        seen.commit()
        seen.abort()
        assert seen.snapshot(0) == ["b", "c"]

    def test_partitions_are_separate(self):
        """An id seen on one partition is not a duplicate on another."""
        seen = SeenEvents(10)
        seen.load_ids(0, ["e1"])
        assert not seen.seen(1, "e1")

    def test_window_evicts_the_oldest_first(self):
        """Past the window the oldest ids are forgotten first, whether loaded or staged."""
        seen = SeenEvents(2)
        seen.load_ids(0, ["a", "b", "c"])
        assert [seen.seen(0, x) for x in "abc"] == [False, True, True]
        seen.stage(0, "d")
        seen.commit()
        assert seen.snapshot(0) == ["c", "d"]

    def test_a_full_window_keeps_its_size_over_many_batches(self):
        """Far past the window the memory holds exactly ``window`` ids, the newest ones."""
        seen = SeenEvents(1_000)
        for batch in range(50):
            for i in range(500):
                seen.stage(0, f"{batch}-{i}")
            seen.commit()
        ids = seen.snapshot(0)
        assert len(ids) == 1_000
        assert ids[0] == "48-0"
        assert ids[-1] == "49-499"

    def test_forget_unloads_a_partition_and_drops_its_journal(self):
        """A revoked partition must be read back again before its next batch; its staged ids are gone."""
        seen = SeenEvents(5)
        seen.load(Restored(3, ["x"]))
        seen.stage(3, "y")
        assert seen.is_loaded(3)
        seen.forget(3)
        seen.abort()
        assert not seen.is_loaded(3)
        assert not seen.seen(3, "x")

    def test_zero_window_remembers_nothing(self):
        """A window of 0 turns duplicate detection off."""
        seen = SeenEvents(0)
        seen.stage(0, "e")
        assert not seen.seen(0, "e")

    def test_restore_uses_the_reader(self):
        """restore asks the reader for the partition and load installs what it returned."""
        seen = SeenEvents(10, reader=lambda p, _stop: Restored(p, ["r1", "r2"]))
        seen.load(seen.restore(4, threading.Event()))
        assert seen.snapshot(4) == ["r1", "r2"]


class _Record:
    def __init__(self, offset: int, event_id: str) -> None:
        self.offset = offset
        self.headers = [(EVENT_ID_HEADER, event_id.encode())]


class _LogConsumer:
    """A read-back consumer over a list of event ids at offsets 0..n-1; can set ``stop`` after N polls."""

    def __init__(
        self, n: int, stop: threading.Event | None = None, stop_after_polls: int | None = None
    ) -> None:
        self.n, self.pos, self.polls = n, 0, 0
        self.stop, self.stop_after = stop, stop_after_polls
        self.tp = None

    def assign(self, tps):
        self.tp = tps[0]

    def beginning_offsets(self, tps):
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps):
        return dict.fromkeys(tps, self.n)

    def seek(self, tp, offset):  # noqa: ARG002 - kafka-python's signature
        self.pos = offset

    def position(self, tp):  # noqa: ARG002 - kafka-python's signature
        return self.pos

    def poll(self, timeout_ms=0):  # noqa: ARG002 - kafka-python's signature
        self.polls += 1
        records = [_Record(o, f"e{o}") for o in range(self.pos, min(self.n, self.pos + 1000))]
        self.pos += len(records)
        if self.stop is not None and self.polls == self.stop_after:
            self.stop.set()
        return {self.tp: records} if records else {}

    def close(self):
        pass


class TestReadBack:
    SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})

    def test_reads_the_newest_window_in_order(self):
        """The read-back returns the newest ``window`` ids, oldest first, and says it is complete."""
        restored = read_event_ids(
            self.SETTINGS, "r", 0, 7_000, timeout_s=60, consumer_factory=lambda _s: _LogConsumer(20_000)
        )
        assert restored.complete
        assert restored.state == [f"e{o}" for o in range(13_000, 20_000)]

    def test_a_cut_short_read_keeps_the_newest_ids_and_says_so(self):
        """Stopped after its first poll, the read-back holds ids from the newest end, marked incomplete."""
        stop = threading.Event()
        restored = read_event_ids(
            self.SETTINGS,
            "r",
            0,
            50_000,
            timeout_s=60,
            stop=stop,
            consumer_factory=lambda _s: _LogConsumer(100_000, stop, stop_after_polls=1),
        )
        assert not restored.complete
        assert restored.detail == "stopped"
        assert restored.state, "what was read is kept"
        newest_chunk = 100_000 - kafka_io._READBACK_CHUNK
        assert min(int(e[1:]) for e in restored.state) >= newest_chunk, "only the newest chunk was read"

    def test_a_zero_window_reads_nothing(self):
        """With a window of 0 the read-back never connects."""

        def never(_s):
            raise AssertionError("must not connect")

        assert read_event_ids(self.SETTINGS, "r", 0, 0, timeout_s=1, consumer_factory=never).state == []
