"""The closed choices some settings take: the log format, the Kafka security protocol and SASL mechanism."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LogFormat", "SaslMechanism", "SecurityProtocol"]


class LogFormat(StrEnum):
    """How log lines are rendered."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class SecurityProtocol(StrEnum):
    """How the worker talks to the brokers (Kafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    """SASL mechanisms the worker can authenticate with (Kafka's ``sasl.mechanism``)."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
