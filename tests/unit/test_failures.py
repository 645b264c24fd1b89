"""The error taxonomy, the one backoff and the stoppable start-up retries."""

from __future__ import annotations

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
    def test_delays_double_up_to_the_cap(self):
        """Each failure doubles the delay until the cap."""
        backoff = Backoff(threading.Event(), base_s=1, cap_s=5)
        assert [backoff.failed(RuntimeError()) for _ in range(5)] == [1, 2, 4, 5, 5]

    def test_the_outage_clock_runs_until_success(self):
        """Past the limit since the first failure it raises OutageTooLong; success starts a new clock."""
        now = [0.0]
        backoff = Backoff(threading.Event(), limit_s=10, clock=lambda: now[0])
        backoff.failed(RuntimeError())
        now[0] = 11
        with pytest.raises(OutageTooLong):
            backoff.failed(RuntimeError())
        backoff.succeeded()
        assert backoff.failed(RuntimeError()) == 0.5

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
