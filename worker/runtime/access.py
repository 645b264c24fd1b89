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

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["Need", "Operation", "Resource", "acl_bindings", "worker_needs"]


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


def worker_needs(settings: Settings) -> list[Need]:
    """Return every right ``claims-worker run`` needs with ``settings``; nothing more."""
    return [
        Need(Resource.TOPIC, settings.claims_topic, Operation.READ, "consume the claims"),
        Need(Resource.GROUP, settings.group_id, Operation.READ, "join the group and commit offsets"),
        Need(Resource.TOPIC, settings.results_topic, Operation.WRITE, "publish the results"),
        Need(Resource.TOPIC, settings.results_topic, Operation.READ, "rebuild the duplicate filter"),
        Need(Resource.TOPIC, settings.dead_letter_topic, Operation.WRITE, "publish dead letters"),
        Need(
            Resource.TRANSACTIONAL_ID,
            f"{settings.transactional_id_prefix}-",
            Operation.WRITE,
            "one transaction per batch (ids <prefix>-<instance>)",
            prefixed=True,
        ),
    ]


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
