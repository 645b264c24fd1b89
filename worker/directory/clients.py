"""Kafka client configuration of the directory's follower and publisher, in one place.

The worker's shared ``client_config(settings, role)`` (worker/runtime/clients.py, security and timeouts)
replaces this function when the branches merge: keep the signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["client_config"]


def client_config(settings: Settings, role: str) -> dict[str, Any]:
    """Return the common keyword arguments of a kafka-python client for ``role`` ("directory-follower")."""
    return {
        "bootstrap_servers": settings.require_bootstrap().split(","),
        "client_id": f"claims-worker-{settings.instance}-{role}",
    }
