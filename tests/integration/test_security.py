"""The worker on a secured broker: SASL_SSL with SCRAM-SHA-512, StandardAuthorizer, documented ACLs only.

The secured broker and its principals are tests/integration/secure_broker.py's (fixture ``secured``).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.structs import TopicPartition

from deploy.kafka import broker as local_broker
from tests.integration import streams
from tests.integration.secure_broker import assert_one_clear_line, secrets_of
from worker.config.settings import load_settings
from worker.contracts.codec import Codec
from worker.kafka.access import acl_bindings, worker_needs
from worker.kafka.clients import Role, new_admin, new_consumer, new_producer
from worker.kafka.reads import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = 17  # the bundled samples: 12 claims that get a result, 5 poison records
EXIT_NOT_AUTHORIZED = 5


def test_documented_acls_are_enough_end_to_end(secured):
    """With exactly the documented ACLs the worker decides every seeded claim in transactions and commits the group."""
    group = f"grp-worker-{secured.tag}"
    done = secured.cli(secured.env("worker", group, CLAIMS_EXIT_WHEN_IDLE_S="3"), "run")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    admin = secured.settings("admin")
    codec = Codec()
    results = [
        codec.decode_result(r.value) for r in read_topic(admin, secured.topics["CLAIMS_RESULTS_TOPIC"], 30)
    ]
    letters = list(read_topic(admin, secured.topics["CLAIMS_DEAD_LETTER_TOPIC"], 30))
    assert len(results) + len(letters) == SAMPLES
    assert len({r["claim_id"] for r in results}) == len(results)
    assert sum(offset or 0 for offset in secured.committed(group).values()) == SAMPLES


def test_check_access_with_documented_acls_passes(secured):
    """check-access as the documented principal reports every right granted and exits 0."""
    done = secured.cli(secured.env("worker", f"grp-worker-{secured.tag}"), "check-access")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MISSING" not in done.stdout
    assert "every right the worker needs is granted" in done.stdout
    assert "DescribeAcls: denied" in done.stdout


def test_wrong_password_is_one_clear_line_exit_5(secured):
    """A wrong password stops the worker with exit 5 and one stderr line naming the user, no traceback."""
    env = secured.env("worker", f"grp-worker-{secured.tag}")
    del env["CLAIMS_KAFKA_PASSWORD_FILE"]
    env["CLAIMS_KAFKA_PASSWORD"] = f"wrong-{uuid.uuid4().hex}"
    secured.passwords["wrong"] = env["CLAIMS_KAFKA_PASSWORD"]
    done = secured.cli(env, "run")
    assert done.returncode == EXIT_NOT_AUTHORIZED
    assert_one_clear_line(done, "authentication failed", "'worker'", "CLAIMS_KAFKA_PASSWORD")


def test_untrusted_ca_is_one_clear_line_exit_5(secured, tmp_path):
    """A CA that did not sign the broker's certificate stops the worker with exit 5 naming the CA setting."""
    other_ca, _ = local_broker.make_ca(tmp_path / "other")
    env = secured.env("worker", f"grp-worker-{secured.tag}", CLAIMS_KAFKA_SSL_CAFILE=str(other_ca))
    done = secured.cli(env, "run")
    assert done.returncode == EXIT_NOT_AUTHORIZED
    assert_one_clear_line(done, "not trusted", "CLAIMS_KAFKA_SSL_CAFILE")


def test_missing_write_on_results_consumes_nothing(secured):
    """Without WRITE on the results topic the worker exits 5 naming that topic and the claims stay unconsumed."""
    group = f"grp-nowrite-{secured.tag}"
    before = secured.committed(group)
    done = secured.cli(secured.env("nowrite", group, CLAIMS_OUTAGE_LIMIT_S="15"), "run")
    assert done.returncode == EXIT_NOT_AUTHORIZED, done.stdout[-2000:] + done.stderr
    assert_one_clear_line(done, "WRITE", secured.topics["CLAIMS_RESULTS_TOPIC"])
    assert secured.committed(group) == before == {0: None, 1: None}


def test_missing_transactional_id_right_consumes_nothing(secured):
    """Without WRITE on the transactional-id prefix the worker exits 5 naming it and commits no offset."""
    group = f"grp-notxn-{secured.tag}"
    done = secured.cli(secured.env("notxn", group, CLAIMS_OUTAGE_LIMIT_S="15"), "run")
    assert done.returncode == EXIT_NOT_AUTHORIZED, done.stdout[-2000:] + done.stderr
    assert_one_clear_line(done, "WRITE on the transactional id")
    assert secured.committed(group) == {0: None, 1: None}
    checked = secured.cli(secured.env("notxn", group), "check-access")
    assert checked.returncode == EXIT_NOT_AUTHORIZED
    missing = [line for line in checked.stdout.splitlines() if line.strip().startswith("MISSING")]
    assert len(missing) == 1
    assert f"WRITE on transactional-id prefix '{group}-'" in missing[0]


def test_check_access_names_the_missing_right(secured):
    """check-access as the principal without WRITE on results reports exactly that right missing and exits 5."""
    done = secured.cli(secured.env("nowrite", f"grp-nowrite-{secured.tag}"), "check-access")
    assert done.returncode == EXIT_NOT_AUTHORIZED
    missing = [line for line in done.stdout.splitlines() if line.strip().startswith("MISSING")]
    assert len(missing) == 1
    assert f"WRITE on topic '{secured.topics['CLAIMS_RESULTS_TOPIC']}'" in missing[0]


def test_mutual_tls_with_documented_acls_end_to_end(secured):
    """Over mutual TLS (encrypted client key) the certificate's principal with the documented ACLs decides every claim."""
    tag = f"mt{secured.tag}"
    topics, admin_env = secured.own_topics(tag, seed=True)
    base = {k: v for k, v in secured.env("admin", f"grp-{tag}").items() if not k.startswith("CLAIMS_KAFKA_")}
    env = {**base, **topics, **secured.broker.mtls_env()}
    principal = f"User:CN={local_broker.MTLS_USER}"
    local_broker.grant(secured.broker, principal, acl_bindings(worker_needs(load_settings(env)), principal))
    checked = secured.cli(env, "check-access")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    done = secured.cli({**env, "CLAIMS_EXIT_WHEN_IDLE_S": "3"}, "run")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    admin = load_settings(admin_env)
    results = list(read_topic(admin, topics["CLAIMS_RESULTS_TOPIC"], 30))
    letters = list(read_topic(admin, topics["CLAIMS_DEAD_LETTER_TOPIC"], 30))
    assert len(results) + len(letters) == SAMPLES


def test_mutual_tls_without_certificate_or_with_wrong_key_password(secured):
    """No client certificate is exit 5 saying one is required; a wrong key password is exit 2 naming the setting."""
    env = {**secured.env("admin", f"grp-mt-{secured.tag}"), **secured.broker.mtls_env()}
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith(("CLAIMS_KAFKA_USERNAME", "CLAIMS_KAFKA_PASSWORD", "CLAIMS_KAFKA_SASL"))
    }
    without = {
        k: v for k, v in env.items() if not k.startswith(("CLAIMS_KAFKA_SSL_CERT", "CLAIMS_KAFKA_SSL_KEY"))
    }
    done = secured.cli(without, "run")
    assert done.returncode == EXIT_NOT_AUTHORIZED
    assert_one_clear_line(done, "requires a client certificate", "CLAIMS_KAFKA_SSL_CERTFILE")
    wrong = {k: v for k, v in env.items() if k != "CLAIMS_KAFKA_SSL_KEY_PASSWORD_FILE"}
    wrong["CLAIMS_KAFKA_SSL_KEY_PASSWORD"] = secured.passwords["wrong-key"] = f"wrong-{uuid.uuid4().hex}"
    done = secured.cli(wrong, "run")
    assert done.returncode == 2
    assert_one_clear_line(done, "CLAIMS_KAFKA_SSL_KEY_PASSWORD")


@pytest.fixture(scope="module")
def revoked_run(secured):
    """A worker that processed the samples, then lost WRITE on results while running, with 5 new claims waiting.

    Own topics and principal (``revoked``, documented ACLs), so the other tests' counts are untouched.
    Returns the exit code (``None`` when it had to be stopped), its stderr, and the committed offsets
    and result counts before and after the revocation.
    """
    tag = f"rv{secured.tag}"
    group = f"grp-{tag}"
    topics, admin_env = secured.own_topics(tag, seed=True)
    worker_env = {**secured.env("revoked", group, CLAIMS_OUTAGE_LIMIT_S="10"), **topics}
    needs = worker_needs(load_settings(worker_env))
    local_broker.grant(secured.broker, "User:revoked", acl_bindings(needs, "User:revoked"))
    admin_settings = load_settings(admin_env)

    def committed() -> int:
        consumer = new_consumer(admin_settings, Role.REPORT, group_id=group, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(topics["CLAIMS_CLAIMS_TOPIC"])
            return sum(
                consumer.committed(TopicPartition(topics["CLAIMS_CLAIMS_TOPIC"], p)) or 0 for p in parts
            )
        finally:
            consumer.close()

    def result_count() -> int:
        return len(list(read_topic(admin_settings, topics["CLAIMS_RESULTS_TOPIC"], 30)))

    proc, stdout_path, stderr_path = secured.start_worker(worker_env, tag)
    try:
        assert streams.wait_for(lambda: committed() == SAMPLES, 90), "the worker did not process the samples"
        before = (committed(), result_count())
        admin = new_admin(admin_settings)
        try:
            admin.delete_acls(
                [
                    ACLFilter(
                        principal="User:revoked",
                        host="*",
                        operation=ACLOperation.WRITE,
                        permission_type=ACLPermissionType.ALLOW,
                        resource_pattern=ResourcePatternFilter(
                            ResourceType.TOPIC, topics["CLAIMS_RESULTS_TOPIC"], ACLResourcePatternType.LITERAL
                        ),
                    )
                ]
            )
        finally:
            admin.close()
        producer = new_producer(admin_settings, Role.SEEDER, acks="all")
        try:  # fresh claims (new event ids): each one needs a result, not a duplicate dead letter
            for key, value in streams.encoded([streams.claim(n) for n in range(1, 6)]):
                producer.send(topics["CLAIMS_CLAIMS_TOPIC"], key=key, value=value)
            producer.flush()
        finally:
            producer.close()
        try:
            code = proc.wait(timeout=45)  # the outage limit is 10 s
        except subprocess.TimeoutExpired:
            code = None
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    secured.outputs += [stdout_path.read_text(), stderr_path.read_text()]
    return {
        "code": code,
        "stderr": stderr_path.read_text(),
        "stdout": stdout_path.read_text(),
        "results_topic": topics["CLAIMS_RESULTS_TOPIC"],
        "before": before,
        "after": (committed(), result_count()),
    }


def test_write_revoked_while_running_loses_nothing(revoked_run):
    """After WRITE on results is revoked mid-run, no further claim is committed for the group and no result is added."""
    assert revoked_run["before"][0] == SAMPLES
    assert revoked_run["after"] == revoked_run["before"]


def test_write_revoked_while_running_exits_5_naming_the_topic(revoked_run):
    """A worker that loses WRITE on results while running exits 5 within the outage limit, one error line naming the topic."""
    assert revoked_run["code"] == EXIT_NOT_AUTHORIZED
    errors = [line for line in revoked_run["stderr"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1, revoked_run["stderr"]
    assert revoked_run["results_topic"] in errors[0]
    refused = [line for line in _json_lines(revoked_run["stdout"]) if line.get("event") == "not_authorized"]
    assert len(refused) == 1, revoked_run["stdout"][-2000:]
    assert revoked_run["results_topic"] in refused[0]["message"]
    assert "Traceback" not in revoked_run["stderr"]


def test_a_claims_topic_deleted_under_acls_is_named_not_taken_for_a_refusal(secured):
    """With only the documented ACLs, a claims topic deleted while the worker runs is exit 2 naming it, not 5.

    The literal ACLs outlive the topic, so the brokers answer the worker's Metadata with
    UNKNOWN_TOPIC_OR_PARTITION (not TOPIC_AUTHORIZATION_FAILED): the group watch reports the deletion.
    """
    tag = f"dl{secured.tag}"
    topics, admin_env = secured.own_topics(tag)
    worker_env = {
        **secured.env(
            "deleted", f"grp-{tag}", CLAIMS_GROUP_WATCH_INTERVAL_S="1", CLAIMS_TOPIC_MISSING_LIMIT_S="10"
        ),
        **topics,
    }
    needs = worker_needs(load_settings(worker_env))
    local_broker.grant(secured.broker, "User:deleted", acl_bindings(needs, "User:deleted"))
    proc, stdout_path, stderr_path = secured.start_worker(worker_env, tag)
    try:
        assigned = streams.wait_for(lambda: '"partitions_assigned"' in stdout_path.read_text(), 90)
        assert assigned, stdout_path.read_text()[-3000:]
        admin = new_admin(load_settings(admin_env))
        try:
            admin.delete_topics([topics["CLAIMS_CLAIMS_TOPIC"]])
        finally:
            admin.close()
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr, stdout = stderr_path.read_text(), stdout_path.read_text()
    secured.outputs += [stdout, stderr]
    assert code == 2, stderr + stdout[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert f"topic '{topics['CLAIMS_CLAIMS_TOPIC']}' was deleted while the worker ran" in errors[0]
    events = [line.get("event") for line in _json_lines(stdout)]
    assert "topic_missing" in events
    assert "not_authorized" not in events


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_no_output_shows_a_password_or_key_material(secured):
    """No stdout/stderr of this module's runs, nor the broker log, holds a password, the keystore password or key bytes."""
    assert len(secured.outputs) >= 4  # at least create-topics and seed-samples; with the module, every run
    broker_log = Path(secured.broker.log_file).read_text(errors="replace")
    everything = "\n".join([*secured.outputs, broker_log])
    leaked = [i for i, secret in enumerate(secrets_of(secured)) if secret in everything]
    assert leaked == []
