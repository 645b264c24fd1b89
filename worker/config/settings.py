"""The worker's settings, read once from the environment (prefix ``CLAIMS_``) and validated."""

from __future__ import annotations

import difflib
import os
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic_settings import PydanticBaseSettingsSource

__all__ = ["LogFormat", "Settings", "WireFormat", "env_names", "load_settings"]


class LogFormat(StrEnum):
    """How log lines are rendered."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class WireFormat(StrEnum):
    """How ``Codec.encode_*`` frames Avro records on the wire; decoding accepts both."""

    SINGLE_OBJECT = "single-object"
    CONFLUENT = "confluent"


_TOPIC = r"^[a-zA-Z0-9._-]{1,249}$"
Topic = Annotated[str, Field(pattern=_TOPIC)]


class Settings(BaseSettings):
    """Everything the worker can be told. Environment variables are ``CLAIMS_<NAME>`` unless noted."""

    model_config = SettingsConfigDict(env_prefix="CLAIMS_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "CLAIMS_BOOTSTRAP_SERVERS"),
        description="Kafka brokers, host:port[,host:port] (env KAFKA_BOOTSTRAP_SERVERS).",
    )
    claims_topic: Topic = Field("pharmacy.claims", description="Topic the claim events are read from.")
    results_topic: Topic = Field(
        "pharmacy.claims.adjudicated", description="Topic the adjudication results go to."
    )
    dead_letter_topic: Topic = Field(
        "pharmacy.claims.dead-letter", description="Topic for records that cannot be judged."
    )
    group_id: str = Field("claims-worker", min_length=1, description="Consumer group id.")
    transactional_id_prefix: str = Field(
        "claims-worker", min_length=1, description="Transactional id prefix; the id is <prefix>-<instance>."
    )
    instance: str = Field(
        "0",
        pattern=r"^[a-zA-Z0-9._-]{1,64}$",
        description="Stable slot of this instance (e.g. a StatefulSet ordinal); unique among live workers.",
    )
    batch_max_records: int = Field(500, ge=1, le=100_000, description="Most records per poll/transaction.")
    poll_timeout_ms: int = Field(500, ge=1, le=60_000, description="How long one poll waits for records.")
    linger_ms: int = Field(5, ge=0, le=10_000, description="Producer linger before a batch is sent.")
    transaction_timeout_ms: int = Field(
        60_000, ge=1_000, le=900_000, description="Broker-side timeout of an open transaction."
    )
    commit_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Watchdog on commit/abort; past it the outcome is indefinite."
    )
    dedup_window: int = Field(
        100_000, ge=0, le=10_000_000, description="Event ids remembered per partition to drop redeliveries."
    )
    wire_format: WireFormat = Field(WireFormat.SINGLE_OBJECT, description="Framing of produced records.")
    schema_registry_url: str | None = Field(
        None, description="Confluent schema registry URL (only for confluent framing)."
    )
    schema_registry_username: str | None = Field(None, description="Registry basic-auth user, if any.")
    schema_registry_password: SecretStr | None = Field(
        None, description="Registry basic-auth password, if any."
    )
    metrics_host: str = Field("0.0.0.0", description="Address of /metrics, /healthz and /readyz.")  # noqa: S104
    metrics_port: int = Field(
        9400, ge=0, le=65535, description="Port of the metrics server; 0 = any free port."
    )
    log_format: LogFormat = Field(LogFormat.AUTO, description="auto (console on a TTY), json or console.")
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level.")
    exit_when_idle_s: float | None = Field(
        None, gt=0, description="Stop after this long with nothing to read (for demos and batch runs)."
    )
    startup_retries: int = Field(10, ge=0, le=1000, description="Attempts to reach the brokers at start.")
    outage_limit_s: float = Field(
        300.0, gt=0, le=86_400, description="How long a running worker retries lost brokers before exiting 4."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read only what the caller passes: ``load_settings`` decides which environment is read."""
        del settings_cls, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)

    # -- prescriber directory (worker/directory, docs/directory.md) --------------------------------------
    directory_path: Path | None = Field(
        None, description="Prescriber directory index (`claims-worker directory build`); unset: no lookups."
    )
    directory_updates_topic: Topic | None = Field(
        None, description="Compacted topic of directory updates the worker follows over the index."
    )
    directory_catch_up_timeout_s: float = Field(
        120.0, gt=0, le=3_600, description="Longest read of the updates topic at start before exiting 4."
    )

    @model_validator(mode="after")
    def _directory_topic_distinct(self) -> Settings:
        if self.directory_updates_topic in {self.claims_topic, self.results_topic, self.dead_letter_topic}:
            msg = "the directory updates topic must differ from the claims, results and dead-letter topics"
            raise ValueError(msg)
        return self

    # -- end of prescriber directory ---------------------------------------------------------------------

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in filter(None, (s.strip() for s in value.split(","))):
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
                msg = "each server must be host:port with a port in 1..65535"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        topics = {self.claims_topic, self.results_topic, self.dead_letter_topic}
        if len(topics) != 3:  # noqa: PLR2004 - three topics
            msg = "claims, results and dead-letter topics must all differ"
            raise ValueError(msg)
        return self

    @property
    def transactional_id(self) -> str:
        """The producer's transactional id: stable per instance slot, unique among live workers."""
        return f"{self.transactional_id_prefix}-{self.instance}"

    def require_bootstrap(self) -> str:
        """Return the bootstrap servers, or raise ``ConfigError`` when none are set."""
        if not self.bootstrap_servers.strip():
            msg = "KAFKA_BOOTSTRAP_SERVERS is not set (e.g. KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092)"
            raise ConfigError(msg)
        return self.bootstrap_servers

    def masked(self) -> dict[str, Any]:
        """Return the settings as a dict with secrets masked, for `print-settings` and the start-up log."""
        return self.model_dump(mode="json")


_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
_BOOTSTRAP_ALIAS = "CLAIMS_BOOTSTRAP_SERVERS"


def _env_name(field: str) -> str:
    if field == "bootstrap_servers":
        return _BOOTSTRAP_ENV
    return f"CLAIMS_{field.upper()}"


def env_names() -> tuple[str, ...]:
    """Return every environment variable the settings read, in field order."""
    return tuple(_env_name(field) for field in Settings.model_fields)


def _unknown_variables(names: Mapping[str, str]) -> list[str]:
    """Describe each unknown ``CLAIMS_*`` variable, with the closest valid name when one is near."""
    known = {*env_names(), _BOOTSTRAP_ALIAS}
    claims_names = [name for name in known if name.startswith("CLAIMS_")]
    problems = []
    for name in sorted(names):
        if not name.startswith("CLAIMS_") or name in known:
            continue
        close = difflib.get_close_matches(name, claims_names, n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}?" if close else "no such setting (see claims-worker --help)"
        problems.append(f"{name}: {hint}")
    return problems


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``env`` only (default: the process environment); nothing else is read.

    Raises ``ConfigError`` naming each bad variable and its rule, and each unknown ``CLAIMS_*``
    variable with the closest valid name; never echoes a value (values may be secrets).
    """
    source = os.environ if env is None else env
    problems = _unknown_variables(source)
    if problems:
        raise ConfigError("unknown settings: " + "; ".join(problems))
    kwargs: dict[str, Any] = {}
    for field_name, field_info in Settings.model_fields.items():
        env_name = _env_name(field_name)
        value = source.get(env_name)
        if value is None and field_name == "bootstrap_servers":
            value = source.get(_BOOTSTRAP_ALIAS)
        if value is not None:
            kwargs[field_name if field_info.validation_alias is None else env_name] = value
    try:
        return Settings(**kwargs)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = str(error["loc"][0]) if error["loc"] else "settings"
            variable = _env_name(where) if where in Settings.model_fields else where
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("bad settings: " + "; ".join(problems)) from None
