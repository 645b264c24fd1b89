"""serve-requests on the secured broker: its documented rights are sufficient, and each one is necessary.

The principal ``requests`` gets, per case, exactly ``worker.kafka.access.request_needs`` for that case's
own topics, group and id prefix (so the cases do not share an ACL), minus at most one right. Without a
right, serve-requests exits 5 with one line naming it, and answers nothing; with all of them it answers
the request. check-access with the PA topics set checks serve-requests' rights as well as run's.
"""

from __future__ import annotations

import json

import pytest

from deploy.kafka import broker as local_broker
from tests.integration.secure_broker import Secured, assert_one_clear_line, secrets_of
from worker.config.settings import load_settings
from worker.kafka.access import Need, Operation, Resource, acl_bindings, request_needs, worker_needs
from worker.kafka.clients import Role
from worker.kafka.reads import read_topic
from worker.kafka.topics import create_plain_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXIT_NOT_AUTHORIZED = 5
SECRET = "integration-demo-secret-0123456789"  # noqa: S105 - a test key, not a credential
USER = "requests"

# Each right of serve-requests, by what it is for (the parametrized cases drop one each).
RIGHTS = {
    "read-requests": lambda n, t: n.name == t["requests"] and n.operation is Operation.READ,
    "read-group": lambda n, _t: n.resource is Resource.GROUP,
    "write-decisions": lambda n, t: n.name == t["decisions"] and n.operation is Operation.WRITE,
    "read-decisions": lambda n, t: n.name == t["decisions"] and n.operation is Operation.READ,
    "write-dead-letters": lambda n, t: n.name == t["dlq"] and n.operation is Operation.WRITE,
    "write-transactional-id": lambda n, _t: n.resource is Resource.TRANSACTIONAL_ID,
    "read-store": lambda n, t: n.name == t["store"] and n.operation is Operation.READ,
    "write-store": lambda n, t: n.name == t["store"] and n.operation is Operation.WRITE,
}


def _case(secured: Secured, case: str) -> tuple[dict[str, str], dict[str, str]]:
    """Create one case's requests, decisions, dead-letter and store topics; return its env and names."""
    names = {
        kind: f"{kind}-{case}-{secured.tag}" for kind in ("requests", "decisions", "dlq", "store", "grp")
    }
    env = secured.env(
        USER,
        names["grp"],
        CLAIMS_DEAD_LETTER_TOPIC=names["dlq"],
        CLAIMS_AUTHORIZATIONS_TOPIC=names["store"],
        CLAIMS_MEMBER_PSEUDONYM_SECRET=SECRET,
        CLAIMS_PA_REQUESTS_TOPIC=names["requests"],
        CLAIMS_PA_DECISIONS_TOPIC=names["decisions"],
        CLAIMS_EXIT_WHEN_IDLE_S="3",
        CLAIMS_OUTAGE_LIMIT_S="15",
    )
    admin = {**env, **secured.broker.client_env("admin")}
    create_plain_topics(
        load_settings(admin),
        [names["requests"], names["decisions"], names["dlq"]],
        partitions=2,
        replication_factor=1,
        role=Role.ADMIN,
    )
    made = secured.cli(admin, "authorizations", "create-topic")
    assert made.returncode == 0, made.stdout + made.stderr
    seeded = secured.cli(admin, "authorizations", "seed-demo-request")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    return env, names


def _grant(secured: Secured, needs: list[Need]) -> None:
    local_broker.grant(secured.broker, f"User:{USER}", acl_bindings(needs, f"User:{USER}"))


def _answers(secured: Secured, names: dict[str, str]) -> list[dict]:
    admin = load_settings(secured.env("admin", "unused"))
    return [json.loads(r.value) for r in read_topic(admin, names["decisions"], timeout_s=20)]


def test_documented_serve_requests_rights_are_enough_and_check_access_covers_them(secured):
    """With run's and serve-requests' documented rights, check-access passes for both roles and the request is answered."""
    env, names = _case(secured, "all")
    settings = load_settings(env)
    _grant(secured, [*worker_needs(settings), *request_needs(settings)])
    checked = secured.cli(env, "check-access")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "roles: run, serve-requests" in checked.stdout
    assert "serve-requests:" in checked.stdout
    assert f"READ on topic '{names['decisions']}'" in checked.stdout
    assert "MISSING" not in checked.stdout
    served = secured.cli(env, "authorizations", "serve-requests")
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr
    assert [a["outcome"] for a in _answers(secured, names)] == ["APPROVED"]


@pytest.mark.parametrize("dropped", sorted(RIGHTS))
def test_each_serve_requests_right_is_necessary(secured, dropped):
    """Without any one documented right serve-requests exits 5 with one line naming it and answers nothing."""
    env, names = _case(secured, dropped)
    needs = request_needs(load_settings(env))
    missing = [n for n in needs if RIGHTS[dropped](n, names)]
    assert len(missing) == 1, missing
    _grant(secured, [n for n in needs if n not in missing])
    served = secured.cli(env, "authorizations", "serve-requests")
    assert served.returncode == EXIT_NOT_AUTHORIZED, served.stdout[-3000:] + served.stderr
    if dropped == "write-transactional-id":
        assert_one_clear_line(served, "WRITE on the transactional id")
    else:
        assert_one_clear_line(served, missing[0].describe())
    assert _answers(secured, names) == []
    checked = secured.cli(env, "check-access", "--no-transaction-probe")
    assert checked.returncode == EXIT_NOT_AUTHORIZED
    if dropped != "write-transactional-id":  # not probed here: the probe's own test is test_security.py's
        flagged = [line for line in checked.stdout.splitlines() if line.strip().startswith("MISSING")]
        assert any(missing[0].describe() in line for line in flagged), checked.stdout


def test_no_serve_requests_output_shows_a_password_or_key_material(secured):
    """Nothing this module's commands printed holds a password or a private key's body."""
    outputs = "\n".join(secured.outputs)
    assert outputs
    assert [secret for secret in secrets_of(secured) if secret in outputs] == []
