"""kafka_io.slot_membership: the group coordinator's answer to one heartbeat decides whether the slot is still ours."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from kafka import errors as kerrors

from worker.kafka.io import Membership, slot_membership


class _Coordinator:
    """The parts of kafka-python's ConsumerCoordinator that slot_membership uses, answering with ``error``."""

    def __init__(self, error: BaseException | None, *, member_id: str = "m-1", generation: int = 4) -> None:
        self.error = error
        self.metadata = SimpleNamespace(member_id=member_id, generation_id=generation)
        self.heartbeats = 0
        self.coordinator_found = True
        self._manager = SimpleNamespace(call_soon=lambda fn: fn(), wait_for=self._wait_for)
        self._net = SimpleNamespace(run=lambda fn: asyncio.run(fn()))

    def group_metadata(self) -> SimpleNamespace:
        return self.metadata

    async def ensure_coordinator_ready_async(self, timeout_ms=None) -> bool:  # noqa: ARG002 - kafka-python's signature
        return self.coordinator_found

    async def _send_heartbeat_request(self) -> None:
        self.heartbeats += 1
        if self.error is not None:
            raise self.error

    @staticmethod
    async def _wait_for(awaitable, timeout_ms) -> None:  # noqa: ARG004 - kafka-python's signature
        await awaitable


def _consumer(coordinator: _Coordinator) -> SimpleNamespace:
    return SimpleNamespace(_coordinator=coordinator)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, Membership.OURS),
        (kerrors.FencedInstanceIdError(), Membership.FENCED),
        (kerrors.RebalanceInProgressError(), Membership.OURS),
        (kerrors.UnknownMemberIdError(), Membership.OURS),
        (kerrors.IllegalGenerationError(), Membership.OURS),
        (kerrors.CoordinatorNotAvailableError(), Membership.UNKNOWN),
        (kerrors.KafkaTimeoutError(), Membership.UNKNOWN),
    ],
)
def test_the_heartbeat_answer_maps_to_the_slot_state(error, expected):
    """Only FENCED_INSTANCE_ID says a twin holds the slot; no answer is UNKNOWN; the rest leave it ours."""
    coordinator = _Coordinator(error)
    assert slot_membership(_consumer(coordinator), timeout_s=1.0) is expected
    assert coordinator.heartbeats == 1


def test_an_unknown_coordinator_is_no_answer():
    """When the group coordinator cannot be found in time, the answer is UNKNOWN (asked again later)."""
    coordinator = _Coordinator(None)
    coordinator.coordinator_found = False
    assert slot_membership(_consumer(coordinator), timeout_s=1.0) is Membership.UNKNOWN
    assert coordinator.heartbeats == 0


@pytest.mark.parametrize(("member_id", "generation"), [("", 4), ("m-1", -1)])
def test_a_consumer_not_in_the_group_asks_nothing_and_counts_as_ours(member_id, generation):
    """Without a member id of its own (never joined, or reset) there is nothing a twin could have taken."""
    coordinator = _Coordinator(kerrors.FencedInstanceIdError(), member_id=member_id, generation=generation)
    assert slot_membership(_consumer(coordinator), timeout_s=1.0) is Membership.OURS
    assert coordinator.heartbeats == 0
