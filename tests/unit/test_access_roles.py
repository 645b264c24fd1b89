"""The rights table covers every role: `run`, and `serve-requests` when the PA topics are set.

The real-broker proof that each right is necessary and the set sufficient is
tests/integration/test_security.py; these are the table's own rules.
"""

from __future__ import annotations

import pytest

from worker.config.settings import load_settings
from worker.errors import ConfigError
from worker.kafka.access import Operation, Resource, request_needs, role_needs, worker_needs

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "CLAIMS_GROUP_ID": "cw",
    "CLAIMS_TRANSACTIONAL_ID_PREFIX": "cw",
    "CLAIMS_AUTHORIZATIONS_TOPIC": "pa.store",
    "CLAIMS_MEMBER_PSEUDONYM_SECRET": "unit-test-secret-0123456789",
}
PA = {"CLAIMS_PA_REQUESTS_TOPIC": "pa.requests", "CLAIMS_PA_DECISIONS_TOPIC": "pa.decisions"}


def _rights(needs):
    return {(n.resource, n.name, n.operation, n.prefixed) for n in needs}


def test_serve_requests_needs_its_own_topics_group_and_ids_and_the_shared_ones():
    """Requests READ, decisions WRITE and READ, the -pa-requests group and id prefix, dead letters, the store."""
    settings = load_settings({**BASE, **PA})
    assert _rights(request_needs(settings)) == {
        (Resource.TOPIC, "pa.requests", Operation.READ, False),
        (Resource.GROUP, "cw-pa-requests", Operation.READ, False),
        (Resource.TOPIC, "pa.decisions", Operation.WRITE, False),
        (Resource.TOPIC, "pa.decisions", Operation.READ, False),
        (Resource.TOPIC, settings.dead_letter_topic, Operation.WRITE, False),
        (Resource.TRANSACTIONAL_ID, "cw-pa-requests-", Operation.WRITE, True),
        (Resource.TOPIC, "pa.store", Operation.READ, False),
        (Resource.TOPIC, "pa.store", Operation.WRITE, False),
    }
    # Reading the decisions back is what rebuilds the answered-request filter: the need says so.
    read_back = next(
        n for n in request_needs(settings) if n.name == "pa.decisions" and n.operation is Operation.READ
    )
    assert "answered-request filter" in read_back.why


def test_run_needs_none_of_the_request_rights():
    """`run` with the PA topics set needs exactly what it needs without them."""
    assert _rights(worker_needs(load_settings({**BASE, **PA}))) == _rights(worker_needs(load_settings(BASE)))
    names = {n.name for n in worker_needs(load_settings({**BASE, **PA}))}
    assert not names & {"pa.requests", "pa.decisions", "cw-pa-requests"}


def test_check_access_covers_serve_requests_only_when_the_pa_topics_are_set():
    """role_needs: `run` alone, or `run` and `serve-requests` with both PA topics (and the store)."""
    assert list(role_needs(load_settings(BASE))) == ["run"]
    assert list(role_needs(load_settings({**BASE, "CLAIMS_PA_REQUESTS_TOPIC": "pa.requests"}))) == ["run"]
    both = role_needs(load_settings({**BASE, **PA}))
    assert list(both) == ["run", "serve-requests"]
    assert both["serve-requests"] == request_needs(load_settings({**BASE, **PA}))


def test_request_needs_without_the_pa_topics_is_a_bad_setting():
    """Asking for serve-requests' rights without its topics is exit 2's ConfigError, naming the settings."""
    with pytest.raises(ConfigError, match="CLAIMS_PA_REQUESTS_TOPIC"):
        request_needs(load_settings(BASE))
