"""A transactional request whose coordinator connection is down is sent again, not dropped.

kafka-python 3.0.12's ``Sender._maybe_send_pending_request`` drops such a request when
``await_ready`` raises (the chaos harness's broker SIGKILL: every worker's send_offsets waited for the
30 s watchdog); ``clients.keep_transactional_requests`` makes ``await_ready`` answer False instead.
These tests run kafka-python's own Sender and TransactionManager over a fake network client, so they
pin both the library internals the fix relies on and the fix itself.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kafka import errors as kerrors
from kafka.future import Future
from kafka.producer.sender import Sender
from kafka.producer.transaction_manager import TransactionManager
from kafka.structs import OffsetAndMetadata, TopicPartition

from worker.config.settings import load_settings
from worker.kafka import clients
from worker.kafka.clients import keep_transactional_requests

COORDINATOR = "coordinator-1"
TP = TopicPartition("claims", 0)


class FakeNetClient:
    """The parts of kafka-python's KafkaNetClient the Sender's transactional path uses; the broker is up or down."""

    def __init__(self) -> None:
        self.broker_up = True
        self.sent: list[str] = []
        self.cluster = SimpleNamespace(request_update=Future)

    def await_ready(self, node_id: object, timeout_ms: int = 30_000) -> bool:
        if not self.broker_up:
            # What KafkaNetClient.await_ready does for a node it cannot connect to: raise, never return False.
            raise kerrors.KafkaConnectionError(f"Node {node_id} not ready after {timeout_ms} ms")
        return True

    def least_loaded_node(self) -> object:
        return 1 if self.broker_up else None

    def poll(self, timeout_ms: int | None = None, future: Future | None = None) -> None:  # noqa: ARG002
        return None

    def send(self, node_id: object, request: Any) -> Future:  # noqa: ARG002 - kafka-python's signature
        """Answer at once, with no error, as the broker would once it is back."""
        name = type(request).__name__
        self.sent.append(name)
        if name == "FindCoordinatorRequest":
            response = SimpleNamespace(coordinators=[SimpleNamespace(error_code=0)])
        elif name == "AddOffsetsToTxnRequest":
            response = SimpleNamespace(error_code=0)
        elif name == "TxnOffsetCommitRequest":
            response = SimpleNamespace(topics=[(TP.topic, [(TP.partition, 0)])])
        else:  # pragma: no cover - the test drives only the requests above
            raise AssertionError(name)
        return Future().success(response)


class FakeAccumulator:
    """No produce batches in flight: the transactional queue alone decides what the Sender does."""

    has_incomplete = False

    def flush_in_progress(self) -> bool:
        return False

    def begin_flush(self) -> None:
        return None


def _in_transaction() -> TransactionManager:
    """A transaction manager with a producer id, a transaction open and its coordinator known."""
    metadata = SimpleNamespace(add_coordinator=lambda *_: COORDINATOR)
    tm = TransactionManager(
        transactional_id="claims-0", transaction_timeout_ms=10_000, retry_backoff_ms=0, metadata=metadata
    )
    tm.initialize_transactions()
    _, _, init = tm._pending_requests.pop()
    init.handle_response(SimpleNamespace(error_code=0, producer_id=7, producer_epoch=0))
    tm.begin_transaction()
    tm._transaction_coordinator = COORDINATOR  # learned before the broker went down
    return tm


def _sender(tm: TransactionManager, client: FakeNetClient) -> Sender:
    return Sender(client, None, FakeAccumulator(), transaction_manager=tm, retry_backoff_ms=0)


def _queued(tm: TransactionManager) -> list[str]:
    return sorted(type(handler).__name__ for _, _, handler in tm._pending_requests)


def _run(sender: Sender, tm: TransactionManager, steps: int = 10) -> None:
    """Run the Sender's transactional step until nothing is queued (at most ``steps`` times)."""
    for _ in range(steps):
        if not tm._pending_requests:
            return
        sender._maybe_send_pending_request()


def _send_offsets_across_an_outage(*, guarded: bool) -> tuple[Any, FakeNetClient, list[str]]:
    """send_offsets while the coordinator's connection is down, then the broker comes back."""
    tm, client = _in_transaction(), FakeNetClient()
    if guarded:
        assert keep_transactional_requests(SimpleNamespace(_sender=SimpleNamespace(_client=client)))
    sender = _sender(tm, client)
    result = tm.send_offsets_to_transaction({TP: OffsetAndMetadata(42, "", -1)}, "claims-group")
    client.broker_up = False
    sender._maybe_send_pending_request()  # AddOffsetsToTxn: the coordinator cannot be reached
    queued_in_outage = _queued(tm)
    client.broker_up = True
    _run(sender, tm)
    return result, client, queued_in_outage


class TestKafkaPythonDropsTheRequest:
    """Pins the kafka-python 3.0.x internals the fix is written against (fails once kafka-python changes them)."""

    def test_unguarded_sender_drops_add_offsets_when_the_coordinator_is_down(self):
        """Without the fix the AddOffsetsToTxn request is gone: only a FindCoordinator is queued, the result never completes."""
        result, client, queued_in_outage = _send_offsets_across_an_outage(guarded=False)
        assert queued_in_outage == ["FindCoordinatorHandler"]
        assert client.sent == ["FindCoordinatorRequest"]
        assert not result.is_done

    def test_sender_retries_the_request_when_await_ready_answers_false(self):
        """The branch the fix steers into: await_ready False -> coordinator looked up and the request queued again."""
        tm, client = _in_transaction(), FakeNetClient()
        client.await_ready = lambda *_, **__: False  # type: ignore[method-assign]
        tm.send_offsets_to_transaction({TP: OffsetAndMetadata(42, "", -1)}, "claims-group")
        _sender(tm, client)._maybe_send_pending_request()
        assert _queued(tm) == ["AddOffsetsToTxnHandler", "FindCoordinatorHandler"]
        assert client.sent == []

    def test_net_client_await_ready_raises_for_an_unreachable_node(self):
        """kafka-python's KafkaNetClient.await_ready raises (it never answers False) when a node cannot be reached."""
        from kafka.net.compat import KafkaNetClient  # noqa: PLC0415 - the internal pinned here

        unreachable = SimpleNamespace(_conns={}, get_connection=_raise_not_ready)
        client = KafkaNetClient(net=SimpleNamespace(), manager=unreachable)
        with pytest.raises(kerrors.KafkaConnectionError):
            client.await_ready("coordinator-1", timeout_ms=10)


def _raise_not_ready(node_id: object, **_: object) -> None:
    raise kerrors.NodeNotReadyError(node_id)


class TestKeepTransactionalRequests:
    """The worker's fix: the request is sent again once the coordinator is back, and the call completes."""

    def test_guarded_sender_finishes_send_offsets_after_the_outage(self):
        """With the fix the AddOffsetsToTxn stays queued, is sent after the new FindCoordinator, and send_offsets completes."""
        result, client, queued_in_outage = _send_offsets_across_an_outage(guarded=True)
        assert queued_in_outage == ["AddOffsetsToTxnHandler", "FindCoordinatorHandler"]
        assert client.sent == [
            "FindCoordinatorRequest",
            "AddOffsetsToTxnRequest",
            "FindCoordinatorRequest",  # the group coordinator, first needed by TxnOffsetCommit
            "TxnOffsetCommitRequest",
        ]
        assert result.succeeded

    def test_reachable_node_and_other_errors_pass_through(self):
        """A ready node still answers True, an unreachable one False, and an error not about reachability still raises."""
        client = FakeNetClient()
        producer = SimpleNamespace(_sender=SimpleNamespace(_client=client))
        keep_transactional_requests(producer)
        guarded = client.await_ready
        assert client.await_ready("coordinator-1") is True
        client.broker_up = False
        assert client.await_ready("coordinator-1") is False
        assert keep_transactional_requests(producer) is True
        assert client.await_ready is guarded  # applied twice: wrapped once

        class Refusing(FakeNetClient):
            def await_ready(self, node_id: object, timeout_ms: int = 30_000) -> bool:  # noqa: ARG002
                raise kerrors.SaslAuthenticationFailedError(str(node_id))

        refusing = Refusing()
        keep_transactional_requests(SimpleNamespace(_sender=SimpleNamespace(_client=refusing)))
        with pytest.raises(kerrors.SaslAuthenticationFailedError):
            refusing.await_ready("coordinator-1")

    def test_producer_without_the_internal_is_left_alone(self):
        """A producer without kafka-python 3.0's sender client (another version) is not touched and the call says so."""
        assert keep_transactional_requests(SimpleNamespace()) is False
        assert (
            keep_transactional_requests(SimpleNamespace(_sender=SimpleNamespace(_client=object()))) is False
        )

    def test_new_producer_guards_transactional_producers_only(self, monkeypatch):
        """clients.new_producer applies the fix to every transactional producer and to no other producer."""

        class FakeProducer:
            def __init__(self, **config: object) -> None:
                self.config = config
                self._sender = SimpleNamespace(_client=FakeNetClient())

        monkeypatch.setattr(clients, "KafkaProducer", FakeProducer)
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
        txn = clients.new_producer(settings, clients.Role.PRODUCER, transactional_id="claims-0")
        plain = clients.new_producer(settings, clients.Role.SEEDER)
        txn._sender._client.broker_up = plain._sender._client.broker_up = False
        assert txn._sender._client.await_ready("coordinator-1") is False
        with pytest.raises(kerrors.KafkaConnectionError):
            plain._sender._client.await_ready("coordinator-1")
