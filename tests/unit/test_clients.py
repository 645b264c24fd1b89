"""Kafka clients: built in one place, with the security settings, and secrets never shown."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.sources import python_sources
from worker.config.settings import load_settings
from worker.errors import ConfigError
from worker.kafka.clients import Role, client_config, describe_config

WORKER = Path(__file__).resolve().parents[2] / "worker"
FACTORY_MODULES = {WORKER / "kafka" / "clients.py"}
CLIENT_CLASSES = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
PASSWORD = "pw-Zx81-never-shown"  # noqa: S105 - a test value to look for in outputs
KEY_PASSWORD = "key-pw-Qq42-never-shown"  # noqa: S105 - same


def _constructions(source: str, where: str) -> list[str]:
    """Return ``where:line`` of every call of a kafka-python client class in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in CLIENT_CLASSES:
                found.append(f"{where}:{node.lineno}")
    return found


def _sasl_ssl_env(tmp_path: Path) -> dict[str, str]:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9093,127.0.0.2:9093",
        "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CLAIMS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "CLAIMS_KAFKA_USERNAME": "claims-worker",
        "CLAIMS_KAFKA_PASSWORD": PASSWORD,
        "CLAIMS_KAFKA_SSL_CAFILE": str(ca),
    }


class TestOnePlace:
    def test_only_the_factory_module_constructs_kafka_clients(self):
        """No module under worker/ other than kafka/clients.py calls KafkaConsumer/Producer/AdminClient."""
        offenders = [
            where
            for path in python_sources(WORKER)
            if path not in FACTORY_MODULES
            for where in _constructions(path.read_text(), str(path.relative_to(WORKER.parent)))
        ]
        assert offenders == []

    def test_the_scan_sees_a_construction(self):
        """The scan above finds direct and qualified constructions, so an empty answer means something."""
        source = "import kafka\nfrom kafka import KafkaProducer\nKafkaProducer()\nkafka.KafkaConsumer()\n"
        assert _constructions(source, "probe.py") == ["probe.py:3", "probe.py:4"]


class TestClientConfig:
    def test_plaintext_carries_bootstrap_client_id_protocol_and_reconnect_cap_only(self):
        """A plaintext config has the servers as a list, a per-role client id, a 1 s reconnect backoff cap and no security options."""
        config = client_config(load_settings({"KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2"}), Role.READBACK)
        assert config == {
            "bootstrap_servers": ["a:1", "b:2"],
            "client_id": "claims-worker-0-readback",
            "security_protocol": "PLAINTEXT",
            "reconnect_backoff_max_ms": 1_000,
        }

    @pytest.mark.parametrize("role", list(Role))
    def test_every_role_gets_the_security_options(self, tmp_path, role):
        """Every role's config carries TLS and SCRAM options taken from the settings."""
        config = client_config(load_settings(_sasl_ssl_env(tmp_path)), role)
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == "SCRAM-SHA-256"
        assert (config["sasl_plain_username"], config["sasl_plain_password"]) == ("claims-worker", PASSWORD)
        assert config["ssl_cafile"] == str(tmp_path / "ca.pem")
        assert config["ssl_check_hostname"] is True
        assert config["client_id"] == f"claims-worker-0-{role.value}"

    def test_client_certificate_and_key_password(self, tmp_path):
        """An SSL config passes the client certificate, key and key password to kafka-python."""
        for name in ("ca.pem", "client.pem", "client.key"):
            (tmp_path / name).write_text("x")
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": "h:1",
            "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CLAIMS_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
            "CLAIMS_KAFKA_SSL_CERTFILE": str(tmp_path / "client.pem"),
            "CLAIMS_KAFKA_SSL_KEYFILE": str(tmp_path / "client.key"),
            "CLAIMS_KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
        }
        config = client_config(load_settings(env), Role.CONSUMER)
        assert config["ssl_certfile"] == str(tmp_path / "client.pem")
        assert config["ssl_keyfile"] == str(tmp_path / "client.key")
        assert config["ssl_password"] == KEY_PASSWORD
        assert "sasl_mechanism" not in config

    def test_describe_masks_the_secrets(self, tmp_path):
        """The loggable view of a config shows neither the SASL password nor the key password."""
        config = client_config(load_settings(_sasl_ssl_env(tmp_path)), Role.PRODUCER)
        config["ssl_password"] = KEY_PASSWORD
        shown = repr(describe_config(config))
        assert PASSWORD not in shown
        assert KEY_PASSWORD not in shown
        assert "claims-worker" in shown

    def test_no_bootstrap_is_a_config_error(self):
        """Without bootstrap servers no client config can be built: a ConfigError says which variable."""
        with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
            client_config(load_settings({}), Role.ADMIN)


class TestSecuritySettings:
    @pytest.mark.parametrize(
        ("env", "needle"),
        [
            pytest.param(
                {"CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "CLAIMS_KAFKA_USERNAME", id="no-user"
            ),
            pytest.param({"CLAIMS_KAFKA_USERNAME": "u"}, "not SASL_", id="user-without-sasl"),
            pytest.param(
                {"CLAIMS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CLAIMS_KAFKA_SECURITY_PROTOCOL", id="bad"
            ),
            pytest.param(
                {"CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLAIMS_KAFKA_SASL_MECHANISM": "GSSAPI"},
                "CLAIMS_KAFKA_SASL_MECHANISM",
                id="unsupported-mechanism",
            ),
            pytest.param(
                {"CLAIMS_KAFKA_SECURITY_PROTOCOL": "SSL", "CLAIMS_KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
                "CLAIMS_KAFKA_SSL_CAFILE",
                id="ca-missing",
            ),
        ],
    )
    def test_inconsistent_security_settings_are_refused(self, env, needle):
        """Security settings that cannot work are refused at load, naming the variable."""
        with pytest.raises(ConfigError, match=needle):
            load_settings(env)

    def test_registry_tls_needs_https(self, tmp_path):
        """A registry CA file with an http registry URL is refused at load, not at the first record."""
        ca = tmp_path / "ca.pem"
        ca.write_text("x")
        env = {
            "CLAIMS_SCHEMA_REGISTRY_URL": "http://registry:8081",
            "CLAIMS_SCHEMA_REGISTRY_CA_FILE": str(ca),
        }
        with pytest.raises(ConfigError, match="https"):
            load_settings(env)

    def test_password_from_file_drops_one_newline(self, tmp_path):
        """CLAIMS_KAFKA_PASSWORD_FILE supplies the password; the trailing newline of the file is not part of it."""
        secret = tmp_path / "password"
        secret.write_text(PASSWORD + "\n")
        env = {"CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLAIMS_KAFKA_USERNAME": "u"}
        settings = load_settings({**env, "CLAIMS_KAFKA_PASSWORD_FILE": str(secret)})
        assert settings.kafka_password is not None
        assert settings.kafka_password.get_secret_value() == PASSWORD

    def test_secrets_directory(self, tmp_path):
        """CLAIMS_SECRETS_DIR reads a secret from a file named after its variable (a mounted secret)."""
        (tmp_path / "claims_kafka_password").write_text(PASSWORD)
        env = {
            "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CLAIMS_KAFKA_USERNAME": "u",
            "CLAIMS_SECRETS_DIR": str(tmp_path),
        }
        settings = load_settings(env)
        assert settings.kafka_password is not None
        assert settings.kafka_password.get_secret_value() == PASSWORD

    def test_unreadable_secret_file_names_the_variable(self, tmp_path):
        """A missing secret file is a ConfigError naming the _FILE variable."""
        env = {"CLAIMS_KAFKA_PASSWORD_FILE": str(tmp_path / "absent")}
        with pytest.raises(ConfigError, match="CLAIMS_KAFKA_PASSWORD_FILE"):
            load_settings(env)

    def test_both_forms_are_refused(self, tmp_path):
        """Setting a secret both directly and by file is ambiguous and refused."""
        secret = tmp_path / "p"
        secret.write_text("x")
        with pytest.raises(ConfigError, match="not both"):
            load_settings({"CLAIMS_KAFKA_PASSWORD": "y", "CLAIMS_KAFKA_PASSWORD_FILE": str(secret)})

    def test_print_settings_and_help_never_show_secrets(self, tmp_path):
        """print-settings masks the Kafka password and --help shows no secret value."""
        env = {**_sasl_ssl_env(tmp_path), "PATH": "/usr/bin:/bin"}
        shown = subprocess.run(
            [sys.executable, "-m", "worker", "print-settings"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        helped = subprocess.run(
            [sys.executable, "-m", "worker", "run", "--help"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"kafka_password": "**********"' in shown.stdout
        assert PASSWORD not in shown.stdout + shown.stderr + helped.stdout + helped.stderr
        assert "CLAIMS_KAFKA_PASSWORD" in helped.stdout

    def test_validation_errors_never_echo_secrets(self, tmp_path):
        """A refused setting's message does not repeat the password given beside it."""
        env = {**_sasl_ssl_env(tmp_path), "CLAIMS_KAFKA_SASL_MECHANISM": "nope"}
        with pytest.raises(ConfigError) as caught:
            load_settings(env)
        assert PASSWORD not in str(caught.value)
