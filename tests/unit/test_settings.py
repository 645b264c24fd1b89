"""Settings: read once from the environment, validated, with clear errors and masked secrets."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from worker.config.settings import Settings, load_settings
from worker.errors import ConfigError
from worker.samples import sample_claims

# `python -m worker run`, except that kafka-python gives up its first contact after 1 s instead of its
# default 30 s (the worker sets no bootstrap timeout of its own): the same start-up path, the same
# KafkaTimeoutError and exit 4 against a closed port, without the test waiting out the library default.
_RUN_WITH_SHORT_BOOTSTRAP = """
import runpy, sys
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
for client in (KafkaAdminClient, KafkaConsumer, KafkaProducer):
    client.DEFAULT_CONFIG["bootstrap_timeout_ms"] = 1_000
sys.argv = ["worker", "run"]
runpy.run_module("worker", run_name="__main__", alter_sys=True)
"""


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
            pytest.param(
                {"CLAIMS_COMMIT_INTERVAL_MS": "60000", "CLAIMS_TRANSACTION_TIMEOUT_MS": "60000"},
                "CLAIMS_COMMIT_INTERVAL_MS must be below CLAIMS_TRANSACTION_TIMEOUT_MS",
                id="interval-past-transaction-timeout",
            ),
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

    def test_an_explicit_mapping_never_reads_the_process_environment(self, monkeypatch):
        """With an explicit env mapping, variables in os.environ are ignored (hermetic)."""
        monkeypatch.setenv("CLAIMS_BATCH_MAX_RECORDS", "7")
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "leak:9092")
        s = load_settings({})
        assert (s.batch_max_records, s.bootstrap_servers) == (500, "")

    def test_default_source_is_the_process_environment(self, monkeypatch):
        """Without a mapping, load_settings reads the process environment."""
        monkeypatch.setenv("CLAIMS_BATCH_MAX_RECORDS", "7")
        assert load_settings().batch_max_records == 7

    def test_claims_prefixed_bootstrap_alias_is_read(self):
        """CLAIMS_BOOTSTRAP_SERVERS works as an alias when KAFKA_BOOTSTRAP_SERVERS is not set."""
        assert load_settings({"CLAIMS_BOOTSTRAP_SERVERS": "b:9092"}).bootstrap_servers == "b:9092"
        both = {"CLAIMS_BOOTSTRAP_SERVERS": "b:9092", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"}
        assert load_settings(both).bootstrap_servers == "k:9092"

    def test_misspelled_variable_is_refused_with_the_closest_name(self):
        """An unknown CLAIMS_* variable is a ConfigError that suggests the nearest real setting."""
        with pytest.raises(ConfigError) as info:
            load_settings({"CLAIMS_DEDUPE_WINDOW": "0"})
        assert "CLAIMS_DEDUPE_WINDOW: did you mean CLAIMS_DEDUP_WINDOW?" in str(info.value)

    def test_unknown_variable_far_from_any_setting_points_to_help(self):
        """An unknown CLAIMS_* variable with no near match is still refused, pointing to --help."""
        with pytest.raises(ConfigError, match=r"CLAIMS_ZZZ: no such setting \(see claims-worker --help\)"):
            load_settings({"CLAIMS_ZZZ": "1"})

    def test_variables_without_the_prefix_are_not_checked(self):
        """Other programs' variables (PATH, KAFKA_* other than the bootstrap) are not the worker's business."""
        s = load_settings({"PATH": "/bin", "KAFKA_HEAP_OPTS": "-Xmx1g", "CLAIMSX": "1"})
        assert s.batch_max_records == 500

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

    def test_misspelled_variable_exits_2_with_one_line(self):
        """`claims-worker print-settings` with CLAIMS_DEDUPE_WINDOW exits 2 with one line naming the fix."""
        env = {"CLAIMS_DEDUPE_WINDOW": "0", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "print-settings"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            "error: unknown settings: CLAIMS_DEDUPE_WINDOW: did you mean CLAIMS_DEDUP_WINDOW?"
        ]

    def test_help_lists_the_fixed_exit_codes(self):
        """`--help` documents exit codes 0, 2, 3, 4, 5, 6, 70, 130 and 141 with their meaning."""
        from worker.cli import EXIT_CODES  # noqa: PLC0415

        proc = subprocess.run(
            [sys.executable, "-m", "worker", "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        from worker.errors import ExitCode  # noqa: PLC0415

        assert [code for code, _ in EXIT_CODES] == [0, 2, 3, 4, 5, 6, 70, 130, 141] == sorted(ExitCode)
        for code, meaning in EXIT_CODES:
            assert f"  {code.value:<3} {meaning}" in proc.stdout
        assert "not authorized" in proc.stdout

    def test_admin_commands_are_registered_through_the_feature_hook(self):
        """print-settings, create-topics, seed-samples and show-results each set a handler from cli/admin.py."""
        from worker.cli import _parser, admin  # noqa: PLC0415

        parser = _parser()
        for argv, handler in (
            (["print-settings"], admin.print_settings),
            (["create-topics"], admin.create_topics),
            (["seed-samples"], admin.seed_samples),
            (["show-results"], admin.show_results),
        ):
            assert parser.parse_args(argv).handler is handler
        from worker.cli import processes  # noqa: PLC0415

        assert parser.parse_args(["run"]).handler is processes._handle  # run --processes N or one worker

    def test_create_topics_defaults_suit_a_real_cluster(self):
        """create-topics defaults to replication factor 3 and min.insync.replicas 2."""
        from worker.cli import _parser  # noqa: PLC0415

        args = _parser().parse_args(["create-topics"])
        assert (args.partitions, args.replication_factor, args.min_insync_replicas) == (1, 3, 2)

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param(["--replication-factor", "1", "--min-insync-replicas", "2"], id="isr-above-rf"),
            pytest.param(["--replication-factor", "0"], id="rf-zero"),
            pytest.param(["--partitions", "-1"], id="negative-partitions"),
        ],
    )
    def test_create_topics_refuses_impossible_replication_before_contacting_kafka(self, argv):
        """Impossible create-topics numbers exit 2 with a message, without reaching for a broker."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(
            [sys.executable, "-m", "worker", "create-topics", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr
        assert "replica" in proc.stderr or "at least 1" in proc.stderr

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
            [sys.executable, "-c", _RUN_WITH_SHORT_BOOTSTRAP],
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
    def test_registry_credentials_reach_the_registry_as_basic_auth(self, raw_claim_schema):
        """Registry user and password from the settings arrive at the registry as one basic-auth header."""
        from tests.unit.fake_registry import FakeRegistry  # noqa: PLC0415
        from worker.cli import _schema_resolver  # noqa: PLC0415
        from worker.contracts.codec import Codec  # noqa: PLC0415

        registry = FakeRegistry()
        try:
            registry.register(5, raw_claim_schema)
            s = load_settings(
                {
                    "CLAIMS_SCHEMA_REGISTRY_URL": registry.url,
                    "CLAIMS_SCHEMA_REGISTRY_USERNAME": "svc",
                    "CLAIMS_SCHEMA_REGISTRY_PASSWORD": "pw-sentinel",
                    "CLAIMS_WIRE_FORMAT": "confluent",
                }
            )
            codec = Codec(resolver=_schema_resolver(s), wire_format=s.wire_format)
            claim = sample_claims(datetime(2025, 3, 12, 14, 30, tzinfo=UTC))[0].claim
            body = Codec().encode_claim(claim)[10:]  # single-object header is 10 bytes
            assert codec.decode_claim(b"\x00" + (5).to_bytes(4, "big") + body) == claim
        finally:
            registry.close()
        expected = "Basic " + base64.b64encode(b"svc:pw-sentinel").decode("ascii")
        assert registry.requests == ["/schemas/ids/5"]
        assert registry.authorizations == [expected]

    def test_no_registry_url_means_local_schemas(self):
        """Without a registry URL no HTTP resolver is built: ids resolve from the bundled schemas."""
        from worker.cli import _schema_resolver  # noqa: PLC0415

        assert _schema_resolver(load_settings({})) is None


@pytest.fixture
def raw_claim_schema():
    """The bundled newest claim schema as JSON."""
    from worker.contracts.registry import SCHEMAS_DIR  # noqa: PLC0415

    return json.loads((SCHEMAS_DIR / "claim.v2.avsc").read_text(encoding="utf-8"))
