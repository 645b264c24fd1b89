"""SeenEvents: bounded per-partition memory of published event ids, undone when a batch aborts."""

from __future__ import annotations

from worker.state.dedupe import SeenEvents


class TestSeenEvents:
    def test_staged_ids_are_seen_and_kept_on_commit(self):
        """An id staged in a batch is a duplicate for the rest of the batch and after commit."""
        seen = SeenEvents(10)
        seen.stage(0, "e1")
        assert seen.seen(0, "e1")
        seen.commit()
        assert seen.seen(0, "e1")

    def test_discard_forgets_the_aborted_batch_only(self):
        """Aborting a batch forgets its ids but keeps earlier committed ones."""
        seen = SeenEvents(10)
        seen.stage(0, "old")
        seen.commit()
        seen.stage(0, "new")
        seen.discard()
        assert seen.seen(0, "old")
        assert not seen.seen(0, "new")

    def test_partitions_are_separate(self):
        """An id seen on one partition is not a duplicate on another."""
        seen = SeenEvents(10)
        seen.load(0, ["e1"])
        assert not seen.seen(1, "e1")

    def test_window_evicts_the_oldest(self):
        """Past the window the oldest ids are forgotten first."""
        seen = SeenEvents(2)
        seen.load(0, ["a", "b", "c"])
        assert [seen.seen(0, x) for x in "abc"] == [False, True, True]

    def test_forget_unloads_a_partition(self):
        """A revoked partition must be read back again before its next batch."""
        seen = SeenEvents(5)
        seen.load(3, ["x"])
        assert seen.is_loaded(3)
        seen.forget(3)
        assert not seen.is_loaded(3)
        assert not seen.seen(3, "x")

    def test_zero_window_remembers_nothing(self):
        """A window of 0 turns duplicate detection off."""
        seen = SeenEvents(0)
        seen.stage(0, "e")
        assert not seen.seen(0, "e")
