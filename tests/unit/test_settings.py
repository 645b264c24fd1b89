"""Settings: read once from the environment, validated, with clear errors and masked secrets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError


class TestLoadSettings:
    def test_defaults_and_bare_bootstrap_name(self):
        """KAFKA_BOOTSTRAP_SERVERS is read under its bare name and defaults fill the rest."""
        s = load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})
        assert s.bootstrap_servers == "127.0.0.1:9092"
        assert s.transactional_id == "claims-worker-0"
        assert s.batch_max_records == 500

    def test_prefixed_values_override(self):
        """CLAIMS_* variables set the matching fields, converted to their types."""
        s = load_settings(
            {"CLAIMS_BATCH_MAX_RECORDS": "50", "CLAIMS_INSTANCE": "7", "CLAIMS_EXIT_WHEN_IDLE_S": "2.5"}
        )
        assert (s.batch_max_records, s.transactional_id, s.exit_when_idle_s) == (50, "claims-worker-7", 2.5)

    @pytest.mark.parametrize(
        ("env", "needle"),
        [
            pytest.param({"CLAIMS_BATCH_MAX_RECORDS": "many"}, "CLAIMS_BATCH_MAX_RECORDS", id="not-an-int"),
            pytest.param({"CLAIMS_BATCH_MAX_RECORDS": "0"}, "CLAIMS_BATCH_MAX_RECORDS", id="below-range"),
            pytest.param({"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS", id="no-port"),
            pytest.param({"CLAIMS_METRICS_PORT": "70000"}, "CLAIMS_METRICS_PORT", id="port-too-big"),
            pytest.param({"CLAIMS_RESULTS_TOPIC": "pharmacy.claims"}, "must all differ", id="topics-clash"),
            pytest.param({"CLAIMS_CLAIMS_TOPIC": "bad topic!"}, "CLAIMS_CLAIMS_TOPIC", id="bad-topic-name"),
            pytest.param({"CLAIMS_LOG_FORMAT": "xml"}, "CLAIMS_LOG_FORMAT", id="unknown-log-format"),
        ],
    )
    def test_bad_value_is_a_config_error_naming_the_variable(self, env, needle):
        """A bad value raises ConfigError whose message names the variable or the rule."""
        with pytest.raises(ConfigError) as info:
            load_settings(env)
        assert needle in str(info.value)

    def test_missing_bootstrap_is_reported_when_needed(self):
        """An unset bootstrap address is a ConfigError only when Kafka is actually needed."""
        s = load_settings({})
        with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
            s.require_bootstrap()

    def test_secret_is_masked(self):
        """The registry password never appears in the settings dump."""
        s = load_settings({"CLAIMS_SCHEMA_REGISTRY_PASSWORD": "hunter2-sentinel"})
        assert "hunter2-sentinel" not in str(s.masked())
        assert "hunter2-sentinel" not in repr(s)

    def test_settings_are_frozen(self):
        """Settings cannot change after start-up."""
        s = Settings()
        with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
            s.batch_max_records = 3  # type: ignore[misc]


class TestCommandLine:
    def test_bad_setting_exits_2_with_a_message_not_a_traceback(self):
        """`claims-worker run` with a bad setting prints one clear line and exits 2."""
        env = {"CLAIMS_BATCH_MAX_RECORDS": "lots", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2
        assert "CLAIMS_BATCH_MAX_RECORDS" in proc.stderr
        assert "Traceback" not in proc.stderr

    def test_help_documents_every_setting(self):
        """`--help` lists every environment variable the worker reads."""
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        for name in Settings.model_fields:
            env = "KAFKA_BOOTSTRAP_SERVERS" if name == "bootstrap_servers" else f"CLAIMS_{name.upper()}"
            assert env in proc.stdout

    def test_unreachable_broker_exits_4(self):
        """With no broker at the address the worker retries, then exits 4 with a clear message."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "CLAIMS_STARTUP_RETRIES": "0",
            "CLAIMS_METRICS_PORT": "0",
            "PATH": "/usr/bin:/bin",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 4
        assert "cannot reach Kafka" in proc.stderr or "no Kafka broker" in proc.stderr
        assert "Traceback" not in proc.stderr


class TestSchemaResolver:
    def test_registry_url_builds_an_http_resolver_with_credentials(self):
        """A registry URL with user and password gives an HTTP resolver that carries basic auth."""
        from worker.cli import _schema_resolver  # noqa: PLC0415
        from worker.contracts.registry import HttpSchemaResolver  # noqa: PLC0415

        s = load_settings(
            {
                "CLAIMS_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081",
                "CLAIMS_SCHEMA_REGISTRY_USERNAME": "svc",
                "CLAIMS_SCHEMA_REGISTRY_PASSWORD": "pw-sentinel",
            }
        )
        resolver = _schema_resolver(s)
        assert isinstance(resolver, HttpSchemaResolver)
        assert _schema_resolver(load_settings({})) is None
