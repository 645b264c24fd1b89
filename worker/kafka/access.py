"""The Kafka rights a worker needs (docs/security.md), as data: used to grant ACLs and to check them.

Each ``Need`` is one ALLOW ACL for the worker's principal. READ and WRITE on a topic imply DESCRIBE
(partition counts, metadata), WRITE on a transactional id implies DESCRIBE, and since Kafka 3.0 WRITE
on any topic or transactional id implies IDEMPOTENT_WRITE on the cluster (KIP-679): none of those is
granted separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from kafka import errors as kerrors
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from worker.config.choices import SecurityProtocol
from worker.config.roles import request_settings, serves_requests
from worker.errors import NotAuthorized
from worker.kafka.clients import Role, new_admin, new_producer

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

    from worker.config.settings import Settings

__all__ = [
    "Finding",
    "Need",
    "Operation",
    "Resource",
    "Verdict",
    "acl_bindings",
    "check_topics_and_group",
    "list_own_acls",
    "probe_transactional_id",
    "request_needs",
    "require_access",
    "require_worker_access",
    "role_needs",
    "worker_needs",
]


class Resource(StrEnum):
    """Kinds of Kafka resource an ACL names."""

    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional-id"


class Operation(StrEnum):
    """Operations the worker needs on a resource."""

    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"


@dataclass(frozen=True, slots=True)
class Need:
    """One right the worker needs: ``operation`` on ``resource`` ``name`` (a prefix when ``prefixed``)."""

    resource: Resource
    name: str
    operation: Operation
    why: str
    prefixed: bool = False

    def describe(self) -> str:
        """Return e.g. ``WRITE on topic 'x'`` or ``WRITE on transactional-id prefix 'p-'``."""
        kind = f"{self.resource.value} prefix" if self.prefixed else self.resource.value
        return f"{self.operation.value} on {kind} {self.name!r}"


@dataclass(frozen=True, slots=True)
class _Words:
    """What one role's pipeline does with its input, output and ids: the ``why`` of each need."""

    consume: str
    join: str
    publish: str
    restore: str
    transact: str


_RUN = _Words(
    consume="consume the claims",
    join="join the group and commit offsets",
    publish="publish the results",
    restore="rebuild the duplicate filter",
    transact="one transaction per batch (ids <prefix>-<instance>)",
)
_SERVE_REQUESTS = _Words(
    consume="consume the PA requests",
    join="join the requests' group and commit its offsets",
    publish="publish the PA decisions",
    restore="rebuild the answered-request filter, even while the topic is empty",
    transact="one transaction per batch of requests (ids <prefix>-pa-requests-<instance>)",
)


def _pipeline_needs(view: Settings, words: _Words) -> list[Need]:
    """Return every right a pipeline on ``view`` needs (its input, output, dead letters, store, directory)."""
    store = view.authorizations_topic
    on_file = (
        [
            Need(Resource.TOPIC, store, Operation.READ, "follow the authorizations on file"),
            Need(Resource.TOPIC, store, Operation.WRITE, "record approvals with their results"),
        ]
        if store is not None
        else []
    )
    needs = [
        Need(Resource.TOPIC, view.claims_topic, Operation.READ, words.consume),
        Need(Resource.GROUP, view.group_id, Operation.READ, words.join),
        Need(Resource.TOPIC, view.results_topic, Operation.WRITE, words.publish),
        Need(Resource.TOPIC, view.results_topic, Operation.READ, words.restore),
        Need(Resource.TOPIC, view.dead_letter_topic, Operation.WRITE, "publish dead letters"),
        Need(
            Resource.TRANSACTIONAL_ID,
            f"{view.transactional_id_prefix}-",
            Operation.WRITE,
            words.transact,
            prefixed=True,
        ),
        *on_file,
    ]
    if view.directory_path is not None and view.directory_updates_topic is not None:
        needs.append(
            Need(
                Resource.TOPIC,
                view.directory_updates_topic,
                Operation.READ,
                "follow the prescriber directory's updates (assigned, no group)",
            )
        )
    return needs


def worker_needs(settings: Settings) -> list[Need]:
    """Return every right ``claims-worker run`` needs with ``settings``; nothing more."""
    return _pipeline_needs(settings, _RUN)


def request_needs(settings: Settings) -> list[Need]:
    """Return every right ``authorizations serve-requests`` needs with ``settings``; nothing more.

    It runs the claims' pipeline on ``request_settings(settings)``: the requests topic in, the PA-decisions
    topic out (and read back for the answered-request filter), group ``<group>-pa-requests``, ids
    ``<prefix>-pa-requests-<instance>``, the worker's dead-letter and store topics. Raises ``ConfigError``
    (exit 2) when the PA topics or the store are not set.
    """
    return _pipeline_needs(request_settings(settings), _SERVE_REQUESTS)


def role_needs(settings: Settings) -> dict[str, list[Need]]:
    """Return each configured role's rights: ``run``, and ``serve-requests`` when the PA topics are set."""
    roles = {"run": worker_needs(settings)}
    if serves_requests(settings) and settings.authorizations_topic is not None:
        roles["serve-requests"] = request_needs(settings)
    return roles


_RESOURCE_TYPES = {
    Resource.TOPIC: ResourceType.TOPIC,
    Resource.GROUP: ResourceType.GROUP,
    Resource.TRANSACTIONAL_ID: ResourceType.TRANSACTIONAL_ID,
}


def acl_bindings(needs: list[Need], principal: str) -> list[ACL]:
    """Return kafka-python ``ACL`` objects (ALLOW, any host) granting ``needs`` to ``principal``."""
    return [
        ACL(
            principal=principal,
            host="*",
            operation=ACLOperation[need.operation.value],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                _RESOURCE_TYPES[need.resource],
                need.name,
                ACLResourcePatternType.PREFIXED if need.prefixed else ACLResourcePatternType.LITERAL,
            ),
        )
        for need in needs
    ]


class Verdict(StrEnum):
    """What a check found for one need."""

    GRANTED = "ok"
    MISSING = "MISSING"
    NO_TOPIC = "NO TOPIC"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Finding:
    """The verdict on one ``Need`` and how it was established (``method``)."""

    need: Need
    verdict: Verdict
    method: str


_TOPIC_AUTHORIZATION_FAILED = 29
_UNKNOWN_TOPIC = 3
_IMPLIED = {
    "READ": {"READ", "ALL"},
    "WRITE": {"WRITE", "ALL"},
    "DESCRIBE": {"DESCRIBE", "READ", "WRITE", "ALL"},
}


def _granted(operation: Operation, authorized: list[str] | None) -> Verdict:
    if authorized is None:
        return Verdict.UNKNOWN
    return Verdict.GRANTED if _IMPLIED[operation.value] & set(authorized) else Verdict.MISSING


def _describe_group(admin: KafkaAdminClient, group: str) -> tuple[list[str] | None, str | None]:
    """Return our authorized operations on ``group`` (``None``: cannot tell) and a note on why not."""
    try:
        answer = admin.describe_groups([group])[group]
    except kerrors.AuthorizationError:
        return [], None
    except kerrors.KafkaError:  # e.g. no coordinator yet on a fresh cluster
        return None, "DescribeGroups: no answer from the group coordinator"
    if "GroupAuthorizationFailed" in str(answer.get("error") or ""):
        return [], None
    operations: list[str] | None = answer.get("authorized_operations")
    if operations is None:
        return (
            None,
            "DescribeGroups: the group does not exist yet; DESCRIBE is granted, READ shows once it does",
        )
    return operations, None


def check_topics_and_group(settings: Settings, needs: list[Need]) -> list[Finding]:
    """Ask the broker's authorizer for our operations on each topic and the group (KIP-430).

    Metadata and DescribeGroups return the caller's authorized operations on each resource it may
    describe; nothing is read, written or joined. Transactional-id needs are not answered here.
    """
    method = "authorized operations (Metadata/DescribeGroups)"
    admin = new_admin(settings, Role.ACCESS)
    findings: list[Finding] = []
    try:
        topic_names = sorted({n.name for n in needs if n.resource is Resource.TOPIC})
        described = {t["name"]: t for t in admin.describe_topics(topic_names)} if topic_names else {}
        groups = {n.name: _describe_group(admin, n.name) for n in needs if n.resource is Resource.GROUP}
    finally:
        admin.close()
    for need in needs:
        if need.resource is Resource.TOPIC:
            topic = described.get(need.name, {})
            error = topic.get("error_code", _UNKNOWN_TOPIC)
            if error == _TOPIC_AUTHORIZATION_FAILED:
                findings.append(Finding(need, Verdict.MISSING, method))
            elif error == _UNKNOWN_TOPIC:
                findings.append(Finding(need, Verdict.NO_TOPIC, method))
            else:
                findings.append(
                    Finding(need, _granted(need.operation, topic.get("authorized_operations")), method)
                )
        elif need.resource is Resource.GROUP:
            operations, note = groups[need.name]
            findings.append(Finding(need, _granted(need.operation, operations), note or method))
    return findings


def list_own_acls(settings: Settings) -> int | None:
    """Return how many ACLs name this principal, or ``None`` when DescribeAcls is denied to it."""
    principal = f"User:{settings.kafka_username or 'ANONYMOUS'}"
    admin = new_admin(settings, Role.ACCESS)
    try:
        acls, error = admin.describe_acls(
            ACLFilter(
                principal=principal,
                host="*",
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
            )
        )
    except (kerrors.AuthorizationError, kerrors.SecurityDisabledError):
        return None
    finally:
        admin.close()
    if error is not kerrors.NoError:
        return None
    return len(acls)


def probe_transactional_id(settings: Settings, need: Need, timeout_s: float = 15.0) -> Finding:
    """Probe WRITE on the transactional-id prefix: ``init_transactions`` under a probe id of that prefix.

    The probe id (``<need's prefix><instance>-check-access``, e.g. ``claims-worker-0-check-access``) is
    under the prefix the need names and never collides with a live worker's id, so no worker is fenced;
    no record is written. The broker keeps the probe id's state until ``transactional.id.expiration.ms``
    (7 days by default).
    """
    probe_id = f"{need.name}{settings.instance}-check-access"
    method = f"probe: InitProducerId for {probe_id!r}"
    producer = None
    try:
        producer = new_producer(
            settings, Role.ACCESS, transactional_id=probe_id, max_block_ms=int(timeout_s * 1000)
        )
        producer.init_transactions()
    except (kerrors.TransactionalIdAuthorizationFailedError, kerrors.AuthorizationError):
        return Finding(need, Verdict.MISSING, method)
    except kerrors.KafkaError:
        return Finding(need, Verdict.UNKNOWN, method)
    finally:
        if producer is not None:
            producer.close(timeout=2)
    return Finding(need, Verdict.GRANTED, method)


def require_worker_access(settings: Settings) -> None:
    """Raise ``NotAuthorized`` naming the first missing topic or group right ``claims-worker run`` needs."""
    require_access(settings, worker_needs(settings))


def require_access(settings: Settings, needs: list[Need]) -> None:
    """Raise ``NotAuthorized`` naming the first missing topic or group right among ``needs``.

    A cheap start-up check (one Metadata and one DescribeGroups request): a role stops with exit 5
    before it consumes anything, instead of failing a transaction per batch (or, for a topic it only
    reads back, on the first record that needs it). Rights the broker does not report (no authorizer
    answers) pass; the transactional id is checked by ``init_transactions``.
    """
    if settings.kafka_security_protocol is SecurityProtocol.PLAINTEXT:
        return  # no principal to authorize but ANONYMOUS: the run loop reports a refusal
    needs = [n for n in needs if n.resource is not Resource.TRANSACTIONAL_ID]
    try:
        findings = check_topics_and_group(settings, needs)
    except kerrors.AuthorizationError:
        raise
    except kerrors.KafkaError:
        return  # unreachable or busy: the start-up retries decide what that means
    for finding in findings:
        if finding.verdict is Verdict.MISSING:
            msg = f"not authorized: {finding.need.describe()} is missing (needed to {finding.need.why})"
            raise NotAuthorized(msg)
