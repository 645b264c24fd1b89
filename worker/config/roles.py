"""The settings each role runs on: ``run`` on the settings as given, ``serve-requests`` on a view of them.

A pure function of the settings (no client, no I/O), so that the pipeline that serves PA requests and the
rights table that ``check-access`` checks (``worker.kafka.access.request_needs``) read the same topics,
group and transactional-id prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.config.settings import Settings

__all__ = ["request_settings", "serves_requests"]


def serves_requests(settings: Settings) -> bool:
    """Tell whether ``settings`` name both PA topics, i.e. whether ``serve-requests`` can run on them."""
    return settings.pa_requests_topic is not None and settings.pa_decisions_topic is not None


def request_settings(settings: Settings) -> Settings:
    """Return the settings of the request door: requests in, PA decisions out, its own group and ids.

    Everything else (dead-letter topic, store, policy, directory, limits, security) is the worker's.
    Raises ``ConfigError`` (exit 2) unless the requests, decisions and store topics are all set.
    """
    requests, decisions = settings.pa_requests_topic, settings.pa_decisions_topic
    if requests is None or decisions is None or settings.authorizations_topic is None:
        msg = (
            "serve-requests needs CLAIMS_PA_REQUESTS_TOPIC, CLAIMS_PA_DECISIONS_TOPIC and the store settings"
        )
        raise ConfigError(msg)
    others = {settings.claims_topic, settings.results_topic, settings.dead_letter_topic}
    if requests == decisions or {requests, decisions} & others:
        msg = (
            "CLAIMS_PA_REQUESTS_TOPIC and CLAIMS_PA_DECISIONS_TOPIC must differ from each other "
            "and from the claims, results and dead-letter topics"
        )
        raise ConfigError(msg)
    return settings.model_copy(
        update={
            "claims_topic": requests,
            "results_topic": decisions,
            "group_id": f"{settings.group_id}-pa-requests",
            "transactional_id_prefix": f"{settings.transactional_id_prefix}-pa-requests",
        }
    )
