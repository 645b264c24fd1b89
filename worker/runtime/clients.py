"""The one place that builds Kafka clients: every client's config comes from ``client_config``.

Bootstrap servers, client id and the security options (TLS, SASL) are decided here once, so the
consumer, the transactional producer, the read-back consumer, the admin client, the report reader, the
sample seeder and ``check-access`` all connect the same way. No other module constructs a
kafka-python client (``tests/unit/test_clients.py`` fails if one does).

The dicts returned hold the password in plain text for kafka-python: never log one; log
``describe_config(config)`` instead.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from worker.config.settings import SecurityProtocol

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["Role", "client_config", "describe_config", "new_admin", "new_consumer", "new_producer"]

_SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})


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
    }
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


def new_consumer(settings: Settings, role: Role | str, **overrides: object) -> KafkaConsumer:
    """Return a ``KafkaConsumer`` for ``role``: ``client_config`` plus the caller's ``overrides``."""
    return KafkaConsumer(**{**client_config(settings, role), **overrides})


def new_producer(settings: Settings, role: Role | str, **overrides: object) -> KafkaProducer:
    """Return a ``KafkaProducer`` for ``role``: ``client_config`` plus the caller's ``overrides``."""
    return KafkaProducer(**{**client_config(settings, role), **overrides})


def new_admin(settings: Settings, role: Role | str = Role.ADMIN, **overrides: object) -> KafkaAdminClient:
    """Return a ``KafkaAdminClient`` for ``role``: ``client_config`` plus the caller's ``overrides``."""
    return KafkaAdminClient(**{**client_config(settings, role), **overrides})
