"""The one place that builds Kafka clients: every client's config comes from ``client_config``.

Bootstrap servers, client id and the security options (TLS, SASL) are decided here once, so the
consumer, the transactional producer, the read-back consumer, the admin client, the report reader, the
sample seeder and ``check-access`` all connect the same way. No other module constructs a
kafka-python client (``tests/unit/test_clients.py`` fails if one does).

The dicts returned hold the password in plain text for kafka-python: never log one; log
``describe_config(config)`` instead.
"""

from __future__ import annotations

import socket
import ssl
import struct
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kerrors
from kafka.admin import KafkaAdminClient
from kafka.net.sasl import get_sasl_mechanism

from worker.config.certificate_dates import certificate_validity
from worker.config.choices import SecurityProtocol
from worker.errors import ConfigError, NotAuthorized
from worker.kafka.failures import BrokerUnreachable

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from worker.config.settings import Settings

__all__ = [
    "OPERATOR_ROLES",
    "Role",
    "check_login",
    "client_config",
    "describe_config",
    "keep_transactional_requests",
    "new_admin",
    "new_consumer",
    "new_producer",
]

_SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
_TLS = frozenset({SecurityProtocol.SSL, SecurityProtocol.SASL_SSL})
_SASL = frozenset({SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL})
_SASL_HANDSHAKE = 17
_SASL_AUTHENTICATE = 36
_API_VERSIONS = 18


class Role(StrEnum):
    """What a client is for; it names the client id (``<transactional id>-<role>``) seen by the brokers."""

    CONSUMER = "consumer"
    PRODUCER = "producer"
    READBACK = "readback"
    ADMIN = "admin"
    REPORT = "report"
    SEEDER = "seeder"
    ACCESS = "access"
    REPLAY = "replay"
    DIRECTORY = "directory"
    AUTHORIZATIONS = "authorizations"


RECONNECT_BACKOFF_MAX_MS = 1_000
# The clients of operator commands (create-topics, show-results, check-access, seed-samples, feed,
# replay): they give up a first contact after CLAIMS_ADMIN_TIMEOUT_S. kafka-python's own bound is its
# constructors' eager bootstrap (``bootstrap_timeout_ms``, 30 s), which made a wrong address take 32 s
# to fail. The long-running worker's consumer, producer and read-back keep it: its start-up retries
# (CLAIMS_STARTUP_RETRIES); its group watch's admin client (ADMIN) asks again every 30 s anyway.
OPERATOR_ROLES = frozenset({Role.ADMIN, Role.REPORT, Role.SEEDER, Role.ACCESS, Role.REPLAY})


def client_config(settings: Settings, role: Role | str) -> dict[str, Any]:
    """Return the kafka-python keyword arguments every client of ``role`` starts from.

    Raises ``ConfigError`` when no bootstrap servers are set.
    """
    role = Role(role)
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.require_bootstrap().split(",") if s.strip()],
        "client_id": f"{settings.transactional_id}-{role.value}",
        "security_protocol": protocol.value,
        # kafka-python backs off reconnects up to 30 s (the Java client: 1 s), so after a broker restart a
        # client could wait half a minute more before it even tries again (chaos: a 43 s stall).
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
    }
    if role in OPERATOR_ROLES:
        config["bootstrap_timeout_ms"] = int(settings.admin_timeout_s * 1000)
    if protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        config["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_cafile is not None:
            config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile is not None:
            config["ssl_certfile"] = str(settings.kafka_ssl_certfile)
        if settings.kafka_ssl_keyfile is not None:
            config["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
        if settings.kafka_ssl_key_password is not None:
            config["ssl_password"] = settings.kafka_ssl_key_password.get_secret_value()
    if protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        config["sasl_plain_username"] = settings.kafka_username
        password = settings.kafka_password
        config["sasl_plain_password"] = password.get_secret_value() if password is not None else None
    return config


def describe_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with its secrets masked, safe to log."""
    return {k: ("**********" if k in _SECRET_KEYS and v is not None else v) for k, v in config.items()}


_Client = TypeVar("_Client")


def _construct(kind: Callable[..., _Client], config: dict[str, Any]) -> _Client:
    """Build a kafka-python client; a first contact that timed out is ``BrokerUnreachable``.

    kafka-python's constructors bootstrap eagerly (its ``bootstrap_timeout_ms``): a timeout there means
    no bootstrap server answered, so the error names them instead of a bare ``KafkaTimeoutError``.
    """
    try:
        return kind(**config)
    except kerrors.KafkaTimeoutError as exc:
        bound = config.get("bootstrap_timeout_ms")
        raise BrokerUnreachable(
            list(config["bootstrap_servers"]), None if bound is None else bound / 1000
        ) from exc


def new_consumer(settings: Settings, role: Role | str, **overrides: object) -> KafkaConsumer:
    """Return a ``KafkaConsumer`` for ``role``: ``client_config`` plus the caller's ``overrides``.

    Raises ``BrokerUnreachable`` when no bootstrap server answers in time.
    """
    return _construct(KafkaConsumer, {**client_config(settings, role), **overrides})


def new_producer(settings: Settings, role: Role | str, **overrides: object) -> KafkaProducer:
    """Return a ``KafkaProducer`` for ``role``: ``client_config`` plus the caller's ``overrides``.

    A transactional producer (``transactional_id`` given) gets ``keep_transactional_requests``.
    Raises ``BrokerUnreachable`` when no bootstrap server answers in time.
    """
    producer = _construct(KafkaProducer, {**client_config(settings, role), **overrides})
    if overrides.get("transactional_id") is not None:
        keep_transactional_requests(producer)
    return producer


# What kafka-python's ``KafkaNetClient.await_ready`` raises for a node it cannot reach right now.
_UNREACHABLE = (kerrors.KafkaConnectionError, kerrors.NodeNotReadyError, kerrors.UnknownBrokerIdError)


def keep_transactional_requests(producer: KafkaProducer) -> bool:
    """Stop kafka-python 3.0.x from dropping a transactional request whose coordinator is unreachable.

    The bug (kafka-python 3.0.12, ``kafka/producer/sender.py``, ``Sender._maybe_send_pending_request``,
    L313-350): for a request that needs a coordinator (AddOffsetsToTxn, TxnOffsetCommit,
    AddPartitionsToTxn, EndTxn, InitProducerId) it sets ``target_node`` to the coordinator (L317), then
    ``self._client.await_ready(...)`` (L321) *raises* ``KafkaConnectionError`` when the connection is
    down (``kafka/net/compat.py`` ``KafkaNetClient.await_ready`` L60-73 never returns False). The
    ``except`` branch (L341-345) looks the coordinator up again and breaks with ``target_node`` still
    set, so ``if target_node is None: retry(handler)`` (L347) is skipped: the handler is gone, its
    result never completes, and ``send_offsets_to_transaction``/``commit_transaction`` wait for ever
    (chaos: every worker's commit in flight at a broker SIGKILL stalled until the 30 s watchdog after
    the broker was back). kafka-python's master (3.1.0.dev, #3110) always calls ``retry`` there.

    The fix: this producer's client answers ``await_ready`` with False for an unreachable node, which
    takes the branch written for that (L321-324: look the coordinator up, ``target_node = None``,
    retry), so the request is sent again once the new FindCoordinator answers. Returns False (and
    changes nothing) when the producer has no such client, e.g. another kafka-python version.
    ``tests/unit/test_txn_requests.py`` pins both the bug and this fix on kafka-python's own Sender.
    """
    client = getattr(getattr(producer, "_sender", None), "_client", None)
    await_ready = getattr(client, "await_ready", None)
    if client is None or not callable(await_ready):
        return False
    if getattr(await_ready, "keeps_transactional_requests", False):
        return True

    def await_ready_or_false(node_id: object, timeout_ms: int = 30_000) -> bool:
        try:
            return bool(await_ready(node_id, timeout_ms=timeout_ms))
        except _UNREACHABLE:
            return False

    await_ready_or_false.keeps_transactional_requests = True  # type: ignore[attr-defined]
    client.await_ready = await_ready_or_false
    return True


def new_admin(settings: Settings, role: Role | str = Role.ADMIN, **overrides: object) -> KafkaAdminClient:
    """Return a ``KafkaAdminClient`` for ``role``: ``client_config`` plus the caller's ``overrides``.

    Raises ``BrokerUnreachable`` when no bootstrap server answers in time.
    """
    return _construct(KafkaAdminClient, {**client_config(settings, role), **overrides})


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """Build the TLS context as kafka-python does from ``client_config`` (TLS 1.2+, CA, client cert)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cafile is not None:
        context.load_verify_locations(str(settings.kafka_ssl_cafile))
    else:
        context.load_default_certs()
    if settings.kafka_ssl_certfile is not None:
        key_password = settings.kafka_ssl_key_password
        try:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
                key_password.get_secret_value() if key_password is not None else None,
            )
        except ssl.SSLError:
            msg = (
                "CLAIMS_KAFKA_SSL_CERTFILE/KEYFILE cannot be loaded "
                "(not PEM, key does not match, or CLAIMS_KAFKA_SSL_KEY_PASSWORD is wrong)"
            )
            raise ConfigError(msg) from None
    return context


def _frame(api_key: int, version: int, correlation: int, client_id: str, body: bytes) -> bytes:
    """Return a size-prefixed Kafka request with a v1 header (api key, version, correlation, client id)."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation, len(cid)) + cid
    return struct.pack(">i", len(header) + len(body)) + header + body


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request and return its response body after the correlation id."""
    sock.sendall(request)
    size = struct.unpack(">i", _read_exactly(sock, 4))[0]
    return _read_exactly(sock, size)[4:]


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            msg = "the broker closed the connection"
            raise ConnectionError(msg)
        chunks += chunk
    return bytes(chunks)


def _sasl_login(sock: socket.socket, settings: Settings, server: str) -> None:
    """Log in: SaslHandshake v1, then SaslAuthenticate v0 rounds; ``NotAuthorized`` on refusal."""
    mechanism_name = settings.kafka_sasl_mechanism.value
    client_id = client_config(settings, Role.ACCESS)["client_id"]
    name = mechanism_name.encode()
    body = _exchange(sock, _frame(_SASL_HANDSHAKE, 1, 1, client_id, struct.pack(">h", len(name)) + name))
    if struct.unpack(">h", body[:2])[0] != 0:
        msg = f"the broker at {server} does not offer {mechanism_name} (CLAIMS_KAFKA_SASL_MECHANISM)"
        raise NotAuthorized(msg)
    password = settings.kafka_password
    mechanism = get_sasl_mechanism(mechanism_name)(
        host=server.rpartition(":")[0],
        sasl_mechanism=mechanism_name,
        sasl_plain_username=settings.kafka_username,
        sasl_plain_password=password.get_secret_value() if password is not None else None,
    )
    correlation = 2
    while not mechanism.is_done():
        token: bytes = mechanism.auth_bytes()
        reply = _exchange(
            sock, _frame(_SASL_AUTHENTICATE, 0, correlation, client_id, struct.pack(">i", len(token)) + token)
        )
        correlation += 1
        error = struct.unpack(">h", reply[:2])[0]
        if error != 0:
            msg = (
                f"authentication failed at {server}: the broker refused user {settings.kafka_username!r} "
                f"with {mechanism_name} (check CLAIMS_KAFKA_USERNAME and CLAIMS_KAFKA_PASSWORD)"
            )
            raise NotAuthorized(msg)
        message_len = struct.unpack(">h", reply[2:4])[0]
        rest = reply[4 + max(message_len, 0) :]
        mechanism.receive(rest[4 : 4 + struct.unpack(">i", rest[:4])[0]])
    if not mechanism.is_authenticated():
        msg = f"authentication failed at {server}: the broker's SCRAM proof did not verify"
        raise NotAuthorized(msg)


def check_login(settings: Settings, timeout_s: float = 10.0) -> None:
    """Connect to the first reachable bootstrap server and prove TLS trust and the SASL login.

    kafka-python reports a refused login or an untrusted certificate only as an endless "socket
    disconnected" retry loop, so the worker checks both itself before building clients. Raises
    ``NotAuthorized`` (exit 5) naming the broker and what to fix, ``ConfigError`` for an unreadable
    client key; returns quietly when no broker answers at all (that is an outage, retried elsewhere).
    """
    protocol = settings.kafka_security_protocol
    if protocol is SecurityProtocol.PLAINTEXT:
        return
    context = _ssl_context(settings) if protocol in _TLS else None
    for server in client_config(settings, Role.ACCESS)["bootstrap_servers"]:
        host, _, port = server.rpartition(":")
        try:
            raw = socket.create_connection((host, int(port)), timeout=timeout_s)
        except OSError:
            continue
        try:
            sock = raw if context is None else _tls(context, raw, host, server)
            if protocol in _SASL:
                _sasl_login(sock, settings, server)
            else:  # TLS 1.3 reports a refused client certificate only on the first read
                _exchange(
                    sock, _frame(_API_VERSIONS, 0, 1, client_config(settings, Role.ACCESS)["client_id"], b"")
                )
        except ssl.SSLError as exc:
            raise NotAuthorized(_refused_tls(server, exc, settings.kafka_ssl_certfile)) from None
        except (OSError, struct.error):
            continue
        finally:
            raw.close()
        return


def _refused_tls(server: str, exc: ssl.SSLError, certfile: Path | None) -> str:
    """Name what the broker's TLS alert most likely means (an expired certificate says so, with its date)."""
    if certfile is None:
        return (
            f"TLS: the broker at {server} refused the connection ({exc.reason}): it requires a client "
            "certificate (set CLAIMS_KAFKA_SSL_CERTFILE and CLAIMS_KAFKA_SSL_KEYFILE)"
        )
    validity = certificate_validity(certfile)
    now = datetime.now(UTC)  # the certificate's own clock, not a decision's: the wall clock is right here
    if validity is not None and now > validity.not_after:
        return (
            f"TLS: the broker at {server} refused the client certificate ({exc.reason}): "
            f"CLAIMS_KAFKA_SSL_CERTFILE {certfile} expired on {validity.not_after:%Y-%m-%d %H:%M} UTC;"
            " renew it"
        )
    if validity is not None and now < validity.not_before:
        return (
            f"TLS: the broker at {server} refused the client certificate ({exc.reason}): "
            f"CLAIMS_KAFKA_SSL_CERTFILE {certfile} is not valid before "
            f"{validity.not_before:%Y-%m-%d %H:%M} UTC (is this machine's clock right?)"
        )
    return (
        f"TLS: the broker at {server} refused the client certificate ({exc.reason}); "
        "is it signed by a CA the broker trusts?"
    )


def _tls(context: ssl.SSLContext, raw: socket.socket, host: str, server: str) -> ssl.SSLSocket:
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        msg = (
            f"TLS: the certificate of the broker at {server} is not trusted ({exc.verify_message}); "
            "check CLAIMS_KAFKA_SSL_CAFILE"
        )
        raise NotAuthorized(msg) from None
    except ssl.SSLError as exc:
        msg = f"TLS handshake with the broker at {server} failed ({exc.reason}); is that listener TLS?"
        raise NotAuthorized(msg) from None
