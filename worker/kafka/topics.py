"""Topic creation (worker, compacted store and plain topics; an existing one is kept) and existence checks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kafka import errors as kerrors
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from worker.errors import ConfigError
from worker.kafka.clients import Role, new_admin, new_consumer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.config.settings import Settings

__all__ = ["create_plain_topics", "create_topics", "ensure_compacted_topic", "require_topic"]


def create_topics(
    settings: Settings,
    topics: Iterable[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
) -> None:
    """Create topics that do not exist yet; existing ones are left alone.

    ``min_insync_replicas`` is set as the topic's ``min.insync.replicas`` config. Raises ``ConfigError``
    when the cluster refuses the replication factor or the config (e.g. more replicas than brokers).
    """
    admin = new_admin(settings, Role.ADMIN)
    configs = {} if min_insync_replicas is None else {"min.insync.replicas": str(min_insync_replicas)}
    try:
        existing = set(admin.list_topics())
        new = {
            t: {"num_partitions": partitions, "replication_factor": replication_factor, "configs": configs}
            for t in topics
            if t not in existing
        }
        if new:
            admin.create_topics(new)
    except kerrors.InvalidReplicationFactorError as exc:
        raise ConfigError(
            f"the cluster refused replication factor {replication_factor} ({type(exc).__name__}):"
            " it may have fewer brokers (a single local broker needs --replication-factor 1)"
        ) from None
    except (kerrors.InvalidConfigurationError, kerrors.PolicyViolationError) as exc:
        raise ConfigError(f"the cluster refused the topic settings ({type(exc).__name__})") from None
    finally:
        admin.close()


def ensure_compacted_topic(
    settings: Settings, topic: str, partitions: int, replication_factor: int, *, role: Role, what: str
) -> bool:
    """Create ``topic`` compacted when it is missing; return whether it was created.

    Raises ``ConfigError`` (exit 2) naming ``what`` when the topic exists without ``compact`` in its
    cleanup policy: a follower's catch-up would read every record ever published, not one per key.
    """
    admin = new_admin(settings, role)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    except kerrors.TopicAlreadyExistsError:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"cleanup.policy": None})
        found = admin.describe_configs([resource], config_filter="all")
        policy = found.get("topic", {}).get(topic, {}).get("cleanup.policy", {}).get("value") or ""
        if "compact" not in policy.split(","):
            msg = f"{what} {topic} has cleanup.policy={policy or '?'}: it must be compact"
            raise ConfigError(msg) from None
        return False
    finally:
        admin.close()
    return True


def create_plain_topics(
    settings: Settings, topics: Iterable[str], partitions: int, replication_factor: int, *, role: Role
) -> dict[str, bool]:
    """Create each of ``topics`` (not compacted) unless it exists; return ``{topic: created}``."""
    admin = new_admin(settings, role)
    created: dict[str, bool] = {}
    try:
        for topic in topics:
            try:
                admin.create_topics([NewTopic(topic, partitions, replication_factor)])
                created[topic] = True
            except kerrors.TopicAlreadyExistsError:
                created[topic] = False
    finally:
        admin.close()
    return created


def require_topic(settings: Settings, topic: str, role: Role) -> None:
    """Raise ``ConfigError`` (exit 2) when ``topic`` does not exist; asked without creating it.

    A producer's first send to a missing topic would wait for its metadata until ``max_block_ms``
    and end in a bare timeout (exit 4); this names the topic instead.
    """
    consumer = new_consumer(settings, role, group_id=None, allow_auto_create_topics=False)
    try:
        known = consumer.topics()
    finally:
        consumer.close()
    if topic not in known:
        msg = f"topic {topic!r} does not exist (or this login may not describe it); see create-topics"
        raise ConfigError(msg)
