"""The first producer starts with the process (cli.run._EarlyProducer): handed out once, then new ones."""

from __future__ import annotations

import threading

import pytest
from kafka import errors as kerrors

from worker.cli.run import _EarlyProducer


def test_the_early_producer_is_handed_out_first_then_new_ones_are_made():
    """The first factory call returns the producer made at start; later calls make fresh ones."""
    made: list[object] = []
    release = threading.Event()

    def make() -> object:
        if not made:
            release.wait(5)  # the first one is still being made when the worker first asks
        made.append(object())
        return made[-1]

    early = _EarlyProducer(make)  # type: ignore[arg-type]
    release.set()
    first = early.factory()
    assert first is made[0]
    second = early.factory()
    assert second is made[1]
    assert second is not first


def test_an_early_failure_is_raised_by_the_first_call_and_the_next_call_retries():
    """What making the early producer raised comes out of the first factory call; the next call makes one."""
    calls = {"n": 0}

    def make() -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise kerrors.KafkaTimeoutError
        return "producer"

    early = _EarlyProducer(make)  # type: ignore[arg-type]
    with pytest.raises(kerrors.KafkaTimeoutError):
        early.factory()
    assert early.factory() == "producer"
