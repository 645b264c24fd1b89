"""What the cluster says now: its id and the worker's topics' partition counts, from one Metadata request.

The group watch (``worker.runtime.sentinel``) asks this every check, so a topic deleted, recreated with
fewer partitions, or a broker replaced by a fresh cluster (a new cluster id) is named by the worker
itself instead of surfacing as an internal error somewhere in the loop. Metadata needs no right beyond
the Describe that Read and Write imply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kafka import errors as kerrors

from worker.kafka.failures import FatalError, Kind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.kafka.io import KafkaConsumer

__all__ = ["ClusterView", "cluster_changed", "cluster_view", "consumer_cluster_id"]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One answer: the cluster id and, per topic asked about, its partition count (0: it does not exist).

    A topic the brokers answered about with another error (not authorized, leader unknown...) is left out:
    nothing is judged about it this time.
    """

    cluster_id: str | None
    partitions: dict[str, int] = field(default_factory=dict)


def cluster_view(admin: Any, topics: Iterable[str]) -> ClusterView:  # noqa: ANN401 - kafka-python's admin
    """Ask the brokers (one ``Metadata`` request, no auto-creation) about ``topics`` and the cluster id.

    Uses kafka-python's admin internals: its public ``describe_topics`` drops the cluster id, and
    ``describe_cluster`` is a second request. Raises what the admin client raises when nobody answers.
    """
    metadata = admin._manager.run(admin._get_cluster_metadata, list(topics))  # noqa: SLF001
    counts: dict[str, int] = {}
    for topic in metadata.get("topics") or ():
        name, error = topic.get("name"), kerrors.for_code(topic.get("error_code", 0))
        if not isinstance(name, str):
            continue
        if error is kerrors.NoError:
            counts[name] = len(topic.get("partitions") or ())
        elif error is kerrors.UnknownTopicOrPartitionError:
            counts[name] = 0
    cluster_id = metadata.get("cluster_id")
    return ClusterView(cluster_id if isinstance(cluster_id, str) else None, counts)


def consumer_cluster_id(consumer: KafkaConsumer) -> str | None:
    """Return the cluster id the consumer's metadata holds (what the worker started against), or None."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    value = getattr(cluster, "cluster_id", None)
    return value if isinstance(value, str) else None


def cluster_changed(bootstrap: str, was: str, now: str) -> FatalError:
    """Return the fault (exit 2) of brokers at ``bootstrap`` that answer another cluster id than ``was``."""
    message = (
        f"the brokers at {bootstrap} now belong to another Kafka cluster "
        f"(cluster id {was!r}, now {now!r}): the offsets, transactions and "
        "results the worker knew are not there; point KAFKA_BOOTSTRAP_SERVERS back at the old cluster, "
        "or start the worker on the new one on purpose"
    )
    return FatalError(Kind.BAD_SETTINGS, message)
