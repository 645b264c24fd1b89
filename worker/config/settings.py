"""The worker's settings, read once from the environment (prefix ``CLAIMS_``) and validated."""

from __future__ import annotations

import difflib
import os
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.config.choices import LogFormat, SaslMechanism, SecurityProtocol
from worker.config.secrets import (
    SECRET_FILE_VARIABLES,
    SECRETS_DIR_VARIABLE,
    read_secret_files,
    read_secrets_dir,
)
from worker.contracts.wire import WireFormat
from worker.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic_settings import PydanticBaseSettingsSource

__all__ = [
    "Settings",
    "WireFormat",
    "env_names",
    "known_env_names",
    "load_settings",
    "mask_url",
]


_TOPIC = r"^[a-zA-Z0-9._-]{1,249}$"
# The member pseudonym key (docs/security.md, "Member pseudonyms"): refused with fewer distinct characters,
# or when it repeats a pattern this short ("aaaa...", "abab...", "abcdabcd..."): no random key does either.
_MIN_SECRET_DISTINCT = 4
_MAX_SECRET_PERIOD = 4
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
    batch_max_records: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Records per fetch and partition (x256 B); most per poll at commit interval 0.",
    )
    poll_timeout_ms: int = Field(500, ge=1, le=60_000, description="How long one poll waits for records.")
    linger_ms: int = Field(5, ge=0, le=10_000, description="Producer linger before a batch is sent.")
    transaction_timeout_ms: int = Field(
        60_000, ge=1_000, le=900_000, description="Broker-side timeout of an open transaction."
    )
    commit_interval_ms: int = Field(
        500,
        ge=0,
        le=60_000,
        description="Longest a transaction stays open over several polls before it commits (0: per poll).",
    )
    transaction_max_records: int = Field(
        5_000, ge=1, le=1_000_000, description="Most records one transaction holds (over several polls)."
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
    admin_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="How long an operator command (create-topics, show-results, replay...) waits for a"
        " first broker answer before exiting 4.",
    )
    outage_limit_s: float = Field(
        300.0, gt=0, le=86_400, description="How long a running worker retries lost brokers before exiting 4."
    )
    group_watch_interval_s: float = Field(
        30.0,
        gt=0,
        le=3_600,
        description="Seconds between the group watch's checks: unowned partitions, deleted or shrunk topics,"
        " another cluster id, a twin on this slot (docs/operations.md).",
    )
    topic_missing_limit_s: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="How long a claims, results or dead-letter topic deleted while the worker runs may stay"
        " missing before the worker exits 2 (/readyz is false meanwhile).",
    )
    # --- Kafka and registry security (docs/security.md). Secrets are SecretStr: masked everywhere. ---
    kafka_security_protocol: SecurityProtocol = Field(
        SecurityProtocol.PLAINTEXT, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        SaslMechanism.SCRAM_SHA_512, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)."
    )
    kafka_username: str | None = Field(None, description="SASL user name (SASL_* only).")
    kafka_password: SecretStr | None = Field(
        None, description="SASL password (or CLAIMS_KAFKA_PASSWORD_FILE=path)."
    )
    kafka_ssl_cafile: FilePath | None = Field(
        None, description="PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL)."
    )
    kafka_ssl_certfile: FilePath | None = Field(
        None, description="PEM client certificate, for brokers that require one (mutual TLS)."
    )
    kafka_ssl_keyfile: FilePath | None = Field(None, description="PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key (or CLAIMS_KAFKA_SSL_KEY_PASSWORD_FILE=path)."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker certificate names the host (leave on in production)."
    )
    schema_registry_ca_file: FilePath | None = Field(
        None, description="PEM CA file that signed the schema registry's certificate (https)."
    )
    schema_registry_cert_file: FilePath | None = Field(
        None, description="PEM client certificate for the schema registry (mutual TLS)."
    )
    schema_registry_key_file: FilePath | None = Field(
        None, description="PEM private key of the schema-registry client certificate."
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
    # -- prior authorizations on file (worker/state/authorizations.py, docs/authorizations.md) -----------
    authorizations_topic: Topic | None = Field(
        None,
        description="Compacted store of prior authorizations on file; unset: every claim decided afresh.",
    )
    member_pseudonym_secret: SecretStr | None = Field(
        None,
        min_length=16,
        description="HMAC key of the member pseudonym in the authorization store (or its _FILE); a secret.",
    )
    authorizations_catch_up_timeout_s: float = Field(
        600.0,
        gt=0,
        le=3_600,
        description="Longest read of the authorization store at start before exiting 4.",
    )

    @field_validator("member_pseudonym_secret")
    @classmethod
    def _secret_not_trivial(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse a guessable key: under 4 distinct characters, or a pattern of up to 4 repeated."""
        if value is None:
            return value
        text = value.get_secret_value()
        if len(set(text)) < _MIN_SECRET_DISTINCT or any(
            text == (text[:period] * (len(text) // period + 1))[: len(text)]
            for period in range(1, _MAX_SECRET_PERIOD + 1)
        ):
            msg = (
                "too easy to guess (one character or a short pattern repeated): use a random key, e.g. "
                "`openssl rand -hex 32`"
            )
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _authorizations_consistent(self) -> Settings:
        topic = self.authorizations_topic
        if topic is not None and self.member_pseudonym_secret is None:
            msg = "CLAIMS_AUTHORIZATIONS_TOPIC needs CLAIMS_MEMBER_PSEUDONYM_SECRET (or its _FILE)"
            raise ValueError(msg)
        if topic is not None and topic in {
            self.claims_topic,
            self.results_topic,
            self.dead_letter_topic,
            self.directory_updates_topic,
        }:
            msg = "the authorization store topic must differ from the other topics"
            raise ValueError(msg)
        return self

    pa_requests_topic: Topic | None = Field(
        None, description="Topic of PA requests (pa-request Avro) served by `authorizations serve-requests`."
    )
    pa_decisions_topic: Topic | None = Field(
        None, description="Topic the answers to PA requests go to (JSON, keyed by request id; no PHI)."
    )

    # -- end of prior authorizations ---------------------------------------------------------------------
    policy: str = Field(
        "IXEMPRA-PA",
        pattern=r"^[A-Z0-9][A-Z0-9-]{0,39}(/[0-9A-Za-z][0-9A-Za-z.\-]{0,39})?$",
        description="Catalog policy <POLICY-ID>: each claim is decided under the version in effect on its "
        "date of service; <POLICY-ID>/<version> pins one version (an override) (worker/policies/<id>/).",
    )
    automated_denials: bool = Field(
        False,  # noqa: FBT003 - pydantic Field default
        description="Allow final automated denials (DENIED) where the plan permits; off: REFERRED to review.",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in filter(None, (s.strip() for s in value.split(","))):
            host, sep, port = server.rpartition(":")
            if not sep or not host or "@" in host or not port.isdigit() or not 0 < int(port) < 65536:  # noqa: PLR2004
                msg = (
                    "each server must be host:port with a port in 1..65535 (credentials go in CLAIMS_KAFKA_*)"
                )
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _interval_within_timeout(self) -> Settings:
        if self.commit_interval_ms >= self.transaction_timeout_ms:
            msg = (
                "CLAIMS_COMMIT_INTERVAL_MS must be below CLAIMS_TRANSACTION_TIMEOUT_MS "
                "(the broker would abort the transaction before the worker commits it)"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        topics = {self.claims_topic, self.results_topic, self.dead_letter_topic}
        if len(topics) != 3:  # noqa: PLR2004 - three topics
            msg = "claims, results and dead-letter topics must all differ"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _security_consistent(self) -> Settings:
        protocol = self.kafka_security_protocol
        sasl = protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)
        tls = protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)
        if sasl and (not self.kafka_username or self.kafka_password is None):
            msg = f"{protocol} needs CLAIMS_KAFKA_USERNAME and CLAIMS_KAFKA_PASSWORD (or its _FILE)"
            raise ValueError(msg)
        if not sasl and (self.kafka_username or self.kafka_password is not None):
            msg = "a Kafka user name or password is set but CLAIMS_KAFKA_SECURITY_PROTOCOL is not SASL_*"
            raise ValueError(msg)
        tls_files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if not tls and (any(tls_files) or self.kafka_ssl_key_password is not None):
            msg = "Kafka TLS files are set but CLAIMS_KAFKA_SECURITY_PROTOCOL is not SSL or SASL_SSL"
            raise ValueError(msg)
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            msg = "CLAIMS_KAFKA_SSL_KEYFILE needs CLAIMS_KAFKA_SSL_CERTFILE"
            raise ValueError(msg)
        registry_tls = self.schema_registry_ca_file or self.schema_registry_cert_file
        if registry_tls and not (self.schema_registry_url or "").startswith("https://"):
            msg = "schema registry TLS files need an https:// CLAIMS_SCHEMA_REGISTRY_URL"
            raise ValueError(msg)
        if self.schema_registry_key_file and not self.schema_registry_cert_file:
            msg = "CLAIMS_SCHEMA_REGISTRY_KEY_FILE needs CLAIMS_SCHEMA_REGISTRY_CERT_FILE"
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
        dumped = self.model_dump(mode="json")
        if dumped.get(
            "schema_registry_url"
        ):  # load_settings moves credentials out; a direct Settings may not
            dumped["schema_registry_url"] = mask_url(dumped["schema_registry_url"])
        return dumped


def _move_url_credentials(kwargs: dict[str, Any]) -> None:
    """Move a ``user:password@`` in CLAIMS_SCHEMA_REGISTRY_URL into the registry's user and password.

    The URL is then printed, logged and sent without them, and the password is a ``SecretStr`` like the
    others (masked by ``print-settings``). Both forms at once is a ``ConfigError`` naming the settings.
    """
    url = kwargs.get("schema_registry_url")
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return
    if kwargs.get("schema_registry_username") or kwargs.get("schema_registry_password"):
        msg = (
            "bad settings: CLAIMS_SCHEMA_REGISTRY_URL holds credentials and CLAIMS_SCHEMA_REGISTRY_USERNAME"
            " or _PASSWORD is set too: keep one form"
        )
        raise ConfigError(msg)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    kwargs["schema_registry_url"] = urllib.parse.urlunsplit(parts._replace(netloc=host))
    kwargs["schema_registry_username"] = urllib.parse.unquote(user) or None
    kwargs["schema_registry_password"] = urllib.parse.unquote(password) or None


def mask_url(url: str) -> str:
    """Return ``url`` with the password of any ``user:password@`` replaced by ``**********``."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}{':**********' if colon else ''}@{host}"))


_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
_BOOTSTRAP_ALIAS = "CLAIMS_BOOTSTRAP_SERVERS"


def _env_name(field: str) -> str:
    if field == "bootstrap_servers":
        return _BOOTSTRAP_ENV
    return f"CLAIMS_{field.upper()}"


def env_names() -> tuple[str, ...]:
    """Return every environment variable the settings read, in field order."""
    return tuple(_env_name(field) for field in Settings.model_fields)


def known_env_names() -> frozenset[str]:
    """Return every variable ``load_settings`` accepts: settings, secret files and the secrets folder."""
    return frozenset({*env_names(), _BOOTSTRAP_ALIAS, *SECRET_FILE_VARIABLES, SECRETS_DIR_VARIABLE})


def _unknown_variables(names: Mapping[str, str]) -> list[str]:
    """Describe each unknown ``CLAIMS_*`` variable, with the closest valid name when one is near."""
    known = known_env_names()
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
    source = dict(os.environ if env is None else env)
    problems = _unknown_variables(source)
    if problems:
        raise ConfigError("unknown settings: " + "; ".join(problems))
    source.update(read_secret_files(source))
    secrets_dir = source.get(SECRETS_DIR_VARIABLE) or None
    if secrets_dir is not None:
        if not Path(secrets_dir).is_dir():
            raise ConfigError(f"bad settings: {SECRETS_DIR_VARIABLE}: {secrets_dir} is not a directory")
        source.update(read_secrets_dir(Path(secrets_dir), source))
    kwargs: dict[str, Any] = {}
    for field_name, field_info in Settings.model_fields.items():
        env_name = _env_name(field_name)
        value = source.get(env_name)
        if value is None and field_name == "bootstrap_servers":
            value = source.get(_BOOTSTRAP_ALIAS)
        if value is not None:
            kwargs[field_name if field_info.validation_alias is None else env_name] = value
    _move_url_credentials(kwargs)
    try:
        return Settings(**kwargs)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = str(error["loc"][0]) if error["loc"] else "settings"
            variable = _env_name(where) if where in Settings.model_fields else where
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError("bad settings: " + "; ".join(problems)) from None
