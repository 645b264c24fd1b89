"""The error taxonomy, the one backoff and the stoppable start-up retries."""

from __future__ import annotations

import random
import threading

import pytest
import structlog
from kafka import errors as kerrors

from worker.cli.run import with_retries
from worker.config.settings import load_settings
from worker.errors import ConfigError, RegistryUnavailable
from worker.kafka.failures import (
    Backoff,
    ExitCode,
    Kind,
    OutageTooLong,
    Stopped,
    classify,
    describe,
    interruptible,
    is_transient,
)
from worker.kafka.io import IndefiniteOutcome

SETTINGS = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CLAIMS_INSTANCE": "7"})


class TestClassify:
    @pytest.mark.parametrize(
        ("error", "kind"),
        [
            (kerrors.ProducerFencedError(), Kind.FENCED),
            (kerrors.InvalidProducerEpochError(), Kind.FENCED),
            (kerrors.FencedInstanceIdError(), Kind.FENCED),
            (kerrors.TopicAuthorizationFailedError({"t"}), Kind.NOT_AUTHORIZED),
            (kerrors.GroupAuthorizationFailedError("g"), Kind.NOT_AUTHORIZED),
            (kerrors.TransactionalIdAuthorizationFailedError(), Kind.NOT_AUTHORIZED),
            (kerrors.SaslAuthenticationFailedError(), Kind.NOT_AUTHORIZED),
            (kerrors.UnsupportedVersionError(), Kind.UNSUPPORTED_VERSION),
            (ConfigError("x"), Kind.BAD_SETTINGS),
            (kerrors.KafkaTimeoutError(), Kind.TRANSIENT),
            (kerrors.KafkaConnectionError(), Kind.TRANSIENT),
            (kerrors.CommitFailedError(), Kind.TRANSIENT),
            (kerrors.KafkaError("abortable"), Kind.TRANSIENT),
            (RegistryUnavailable("down"), Kind.TRANSIENT),
            (IndefiniteOutcome("late"), Kind.TRANSIENT),
            (ZeroDivisionError(), Kind.INTERNAL),
        ],
    )
    def test_each_error_has_one_kind(self, error, kind):
        """Every error maps to exactly the kind that decides what the worker does."""
        assert classify(error) is kind
        assert is_transient(error) is (kind is Kind.TRANSIENT)

    def test_exit_codes_are_the_documented_ones(self):
        """Kinds end the process with the exit codes the README and --help document."""
        assert [k.exit_code for k in Kind] == [3, 5, 6, 2, 4, 70]
        assert ExitCode.INTERNAL == 70

    def test_authorization_messages_name_what_was_refused(self):
        """The operator's line names the topic, the group or the transactional id."""
        assert "'pharmacy.claims.adjudicated'" in describe(
            kerrors.TopicAuthorizationFailedError({"pharmacy.claims.adjudicated"}), SETTINGS
        )
        assert repr(SETTINGS.group_id) in describe(kerrors.GroupAuthorizationFailedError(), SETTINGS)
        assert "claims-worker-7" in describe(kerrors.TransactionalIdAuthorizationFailedError(), SETTINGS)

    def test_a_fenced_static_member_names_the_slot(self):
        """A FencedInstanceIdError says another live worker uses this instance slot."""
        assert "'7'" in describe(kerrors.FencedInstanceIdError(), SETTINGS)


class TestBackoff:
    def test_each_delay_is_drawn_between_the_base_and_three_times_the_last_up_to_the_cap(self):
        """Decorrelated jitter: base <= delay <= min(cap, 3 x previous delay), and repeated failures reach the cap."""
        backoff = Backoff(threading.Event(), base_s=0.5, cap_s=10, rng=random.Random(25))
        delays = [backoff.failed(RuntimeError()) for _ in range(40)]
        previous = 0.5
        for delay in delays:
            assert 0.5 <= delay <= min(10, 3 * previous)
            previous = delay
        assert max(delays) == 10
        assert len(set(delays)) > 10, "the delays are drawn, not a fixed ladder"

    def test_workers_failing_together_spread_their_retries(self):
        """Fifty workers (own seeds) failing at once spread their first retry over [base, 3 x base]."""
        firsts = [
            Backoff(threading.Event(), rng=random.Random(seed)).failed(RuntimeError()) for seed in range(50)
        ]
        assert all(0.5 <= d <= 1.5 for d in firsts)
        assert min(firsts) < 0.75
        assert max(firsts) > 1.25

    def test_success_brings_the_delay_back_to_the_first_range(self):
        """After ``succeeded`` the next delay is again within [base, 3 x base], however long the outage was."""
        backoff = Backoff(threading.Event(), base_s=0.5, cap_s=10, rng=random.Random(3))
        for _ in range(20):
            backoff.failed(RuntimeError())
        backoff.succeeded()
        assert 0.5 <= backoff.failed(RuntimeError()) <= 1.5

    def test_the_outage_clock_runs_until_success(self):
        """Past the limit since the first failure it raises OutageTooLong; success starts a new clock."""
        now = [0.0]
        backoff = Backoff(threading.Event(), limit_s=10, clock=lambda: now[0])
        backoff.failed(RuntimeError())
        now[0] = 11
        with pytest.raises(OutageTooLong):
            backoff.failed(RuntimeError())
        backoff.succeeded()
        assert backoff.attempts == 0
        backoff.failed(RuntimeError())
        assert backoff.since == 11

    def test_attempts_limit(self):
        """With max_attempts the (n+1)-th failure raises OutageTooLong."""
        backoff = Backoff(threading.Event(), max_attempts=2)
        backoff.failed(RuntimeError())
        backoff.failed(RuntimeError())
        with pytest.raises(OutageTooLong):
            backoff.failed(RuntimeError())

    def test_a_stop_ends_the_wait(self):
        """wait raises Stopped instead of sleeping when the stop event is set."""
        stop = threading.Event()
        stop.set()
        with pytest.raises(Stopped):
            Backoff(stop).wait(3600)


class TestStoppableStartUp:
    def test_a_blocking_call_is_abandoned_on_stop(self):
        """A call that would block for ever (a client constructor) gives way to a stop request."""
        stop, never = threading.Event(), threading.Event()
        threading.Thread(target=stop.set).start()
        with pytest.raises(Stopped):
            interruptible(never.wait, stop, "test")

    def test_retries_stop_when_told(self):
        """Start-up retries of an unreachable broker end with Stopped once the stop event is set."""
        stop = threading.Event()
        calls = []

        def unreachable():
            calls.append(1)
            stop.set()
            raise kerrors.KafkaTimeoutError

        with pytest.raises(Stopped):
            with_retries(100, unreachable, structlog.get_logger(), stop=stop)
        assert calls == [1]

    def test_a_permanent_error_is_not_retried(self):
        """A non-transient error at start-up is raised at once."""
        calls = []

        def refused():
            calls.append(1)
            raise kerrors.TopicAuthorizationFailedError({"t"})

        with pytest.raises(kerrors.TopicAuthorizationFailedError):
            with_retries(100, refused, structlog.get_logger(), stop=threading.Event())
        assert calls == [1]
