"""Messages that point the right way (issue 26): certificates' dates, weak settings, credentials in URLs.

Each test is the operator's view of one setting: what the worker says, and that it says nothing secret.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from deploy.kafka.certificates import make_ca
from worker.config.certificate_dates import certificate_validity
from worker.config.settings import Settings, load_settings, mask_url
from worker.config.warnings import startup_warnings
from worker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


# --- the client certificate's own dates -----------------------------------------------------------------
def test_certificate_dates_are_read_from_the_pem_file_as_openssl_reads_them(tmp_path):
    """The DER reader finds the same notBefore/notAfter as `openssl x509 -dates` on a real certificate."""
    ca, _ = make_ca(tmp_path)
    validity = certificate_validity(ca)
    assert validity is not None
    dates = dict(
        line.split("=", 1)
        for line in _openssl("x509", "-in", str(ca), "-noout", "-dates").split("\n")
        if line
    )

    def parse(text: str) -> datetime:
        return datetime.strptime(text.replace("  ", " "), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)

    assert validity.not_before == parse(dates["notBefore"])
    assert validity.not_after == parse(dates["notAfter"])


def test_certificate_dates_of_a_file_that_is_no_certificate_are_unknown(tmp_path):
    """No PEM block, a damaged body or no file: ``None`` (the TLS library has the last word)."""
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n")
    assert certificate_validity(tmp_path / "empty.pem") is None
    assert certificate_validity(tmp_path / "bad.pem") is None
    assert certificate_validity(tmp_path / "missing.pem") is None


def _tls_settings(ca: Path, **extra: str) -> Settings:
    return load_settings(
        {
            **BASE,
            "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CLAIMS_KAFKA_SSL_CAFILE": str(ca),
            "CLAIMS_KAFKA_SSL_CERTFILE": str(ca),
            "CLAIMS_KAFKA_SSL_KEYFILE": str(ca.with_name("ca.key")),
            **extra,
        }
    )


def test_an_expired_client_certificate_is_a_start_up_warning_with_its_dates(tmp_path):
    """Past its notAfter the certificate is named with its validity; inside it, nothing is said."""
    ca, _ = make_ca(tmp_path)
    settings = _tls_settings(ca)
    validity = certificate_validity(ca)
    assert validity is not None
    assert startup_warnings(settings, {}, validity.not_before + timedelta(hours=1)) == []
    later = startup_warnings(settings, {}, validity.not_after + timedelta(days=1))
    assert [setting for setting, _ in later] == ["CLAIMS_KAFKA_SSL_CERTFILE"]
    assert f"to {validity.not_after:%Y-%m-%d %H:%M} UTC, not now" in later[0][1]


def test_a_refused_handshake_with_an_expired_certificate_says_it_expired(tmp_path, monkeypatch):
    """The operator's line after a TLS refusal names the expiry date when the certificate is past it."""
    import ssl  # noqa: PLC0415

    from worker.kafka import clients  # noqa: PLC0415

    ca, _ = make_ca(tmp_path)
    validity = certificate_validity(ca)
    assert validity is not None
    refused = ssl.SSLError(1, "alert")
    refused.reason = "SSLV3_ALERT_CERTIFICATE_EXPIRED"
    now = validity.not_after + timedelta(days=3)

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ARG003 - datetime.now's signature
            return now

    monkeypatch.setattr(clients, "datetime", Clock)
    line = clients._refused_tls("127.0.0.1:9093", refused, ca)
    assert f"expired on {validity.not_after:%Y-%m-%d %H:%M} UTC; renew it" in line
    assert "CLAIMS_KAFKA_SSL_CERTFILE" in line


# --- settings that weaken security: warned, not refused ----------------------------------------------------
def test_hostname_checking_off_is_a_warning(tmp_path):
    """CLAIMS_KAFKA_SSL_CHECK_HOSTNAME=false over TLS is named at start-up."""
    ca, _ = make_ca(tmp_path)
    now = datetime.now(UTC)
    assert startup_warnings(_tls_settings(ca), {}, now) == []
    warned = startup_warnings(_tls_settings(ca, CLAIMS_KAFKA_SSL_CHECK_HOSTNAME="false"), {}, now)
    assert [setting for setting, _ in warned] == ["CLAIMS_KAFKA_SSL_CHECK_HOSTNAME"]


def test_a_secret_file_readable_by_others_is_a_warning_not_a_refusal(tmp_path):
    """A 0644 password file (Kubernetes' default secret mode) loads, and is named; 0600 is not."""
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    env = {
        **BASE,
        "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CLAIMS_KAFKA_USERNAME": "worker",
        "CLAIMS_KAFKA_PASSWORD_FILE": str(secret),
    }
    now = datetime.now(UTC)
    secret.chmod(0o600)
    assert startup_warnings(load_settings(env), env, now) == []
    secret.chmod(0o644)
    warned = startup_warnings(load_settings(env), env, now)
    assert [setting for setting, _ in warned] == ["CLAIMS_KAFKA_PASSWORD_FILE"]
    assert "mode 0644" in warned[0][1]
    assert "s3cret-value" not in repr(warned)


def test_the_warnings_reach_the_start_up_log_as_setting_names(tmp_path):
    """`log_startup_warnings` logs each as setting_warning with the setting's name (an allowed key)."""
    from worker.ops.logs import keep_allowed_keys, log_startup_warnings  # noqa: PLC0415

    ca, _ = make_ca(tmp_path)
    events: list[dict] = []

    class Log:
        def warning(self, event: str, **kw: object) -> None:
            events.append(keep_allowed_keys(None, "warning", {"event": event, **kw}))

    log_startup_warnings(_tls_settings(ca, CLAIMS_KAFKA_SSL_CHECK_HOSTNAME="false"), Log())  # type: ignore[arg-type]
    assert [(e["event"], e["setting"]) for e in events] == [
        ("setting_warning", "CLAIMS_KAFKA_SSL_CHECK_HOSTNAME")
    ]
    assert "detail" in events[0]


# --- the member pseudonym key ----------------------------------------------------------------------------
STORE = {**BASE, "CLAIMS_AUTHORIZATIONS_TOPIC": "pa.store"}


@pytest.mark.parametrize("weak", ["a" * 32, "ab" * 16, "abc" * 11, "abcd" * 8, "aaabaaabaaabaaab"])
def test_a_guessable_pseudonym_key_is_refused(weak):
    """One character, or a pattern of up to 4 repeated, is refused naming the setting (not the value)."""
    with pytest.raises(ConfigError, match=r"CLAIMS_MEMBER_PSEUDONYM_SECRET: .*too easy to guess") as raised:
        load_settings({**STORE, "CLAIMS_MEMBER_PSEUDONYM_SECRET": weak})
    assert weak not in str(raised.value)


@pytest.mark.parametrize(
    "key", ["0123456789abcdef", os.urandom(16).hex(), "integration-demo-secret-0123456789"]
)
def test_a_random_or_ordinary_key_is_accepted(key):
    assert load_settings({**STORE, "CLAIMS_MEMBER_PSEUDONYM_SECRET": key}).member_pseudonym_secret is not None


# --- credentials inside a URL ---------------------------------------------------------------------------
def test_registry_credentials_in_the_url_move_to_its_user_and_password():
    """user:password@ leaves the URL (printed, logged and sent without it) for the masked settings."""
    settings = load_settings(
        {**BASE, "CLAIMS_SCHEMA_REGISTRY_URL": "https://svc:p%40ss@registry.example:8081/x"}
    )
    assert settings.schema_registry_url == "https://registry.example:8081/x"
    assert settings.schema_registry_username == "svc"
    assert settings.schema_registry_password is not None
    assert settings.schema_registry_password.get_secret_value() == "p@ss"
    assert "p@ss" not in json.dumps(settings.masked())


def test_credentials_in_the_url_and_in_their_settings_is_a_bad_setting():
    with pytest.raises(ConfigError, match="keep one form"):
        load_settings(
            {
                **BASE,
                "CLAIMS_SCHEMA_REGISTRY_URL": "https://svc:pw@registry.example",
                "CLAIMS_SCHEMA_REGISTRY_USERNAME": "other",
            }
        )


def test_mask_url_hides_only_the_password():
    assert (
        mask_url("https://svc:pw@registry.example:8081/x") == "https://svc:**********@registry.example:8081/x"
    )
    assert mask_url("https://registry.example") == "https://registry.example"
    assert "pw" not in json.dumps(Settings(schema_registry_url="https://svc:pw@h").masked())


def test_credentials_in_the_bootstrap_servers_are_refused_without_echoing_them():
    with pytest.raises(ConfigError, match="credentials go in CLAIMS_KAFKA_") as raised:
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": "user:hunter22@broker:9092"})
    assert "hunter22" not in str(raised.value)


def test_print_settings_masks_a_url_password():
    """`claims-worker print-settings` never prints the registry password given inside the URL."""
    done = subprocess.run(
        [sys.executable, "-m", "worker", "print-settings"],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            **BASE,
            "CLAIMS_SCHEMA_REGISTRY_URL": "https://svc:hunter22@r.example",
        },
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "hunter22" not in done.stdout + done.stderr
    assert json.loads(done.stdout)["schema_registry_url"] == "https://r.example"


# --- hints that name the real thing ---------------------------------------------------------------------
def test_the_transactional_id_hint_names_the_prefix_and_the_pattern_the_docs_give():
    """The refusal names WRITE on the PREFIXED pattern '<prefix>-', the real prefix, for run and serve-requests."""
    from worker.cli import _transactional_hint  # noqa: PLC0415

    settings = load_settings(
        {
            **STORE,
            "CLAIMS_TRANSACTIONAL_ID_PREFIX": "pbm-worker",
            "CLAIMS_MEMBER_PSEUDONYM_SECRET": "unit-test-secret-0123456789",
            "CLAIMS_PA_REQUESTS_TOPIC": "pa.requests",
            "CLAIMS_PA_DECISIONS_TOPIC": "pa.decisions",
        }
    )
    run = _transactional_hint(argparse.Namespace(command="run"), settings)
    assert "transactional-id prefix 'pbm-worker-' (resource pattern PREFIXED" in run
    serve = _transactional_hint(
        argparse.Namespace(command="authorizations", authorizations_command="serve-requests"), settings
    )
    assert "transactional-id prefix 'pbm-worker-pa-requests-'" in serve
    assert "docs/security.md" in run


@pytest.mark.parametrize(
    ("flag", "refused"),
    [
        ("--output-topic", "pharmacy.claims.adjudicated"),
        ("--dead-letter-topic", "pharmacy.claims.dead-letter"),
    ],
)
def test_the_replay_refusal_names_the_topic_it_refused(flag, refused):
    """A live results or dead-letter topic given to replay is named, whichever of the two it was."""
    from worker.cli.replay import _targets  # noqa: PLC0415

    args = argparse.Namespace(
        diff=False, output_topic=None, dead_letter_topic=None, replay_id="r1", allow_live_topic=False
    )
    setattr(args, flag.removeprefix("--").replace("-", "_"), refused)
    with pytest.raises(ConfigError, match=f"live topic \\({refused}\\)"):
        _targets(args, load_settings(BASE), datetime(2026, 1, 1, tzinfo=UTC), None, "IXEMPRA-PA/2020.09-3")
