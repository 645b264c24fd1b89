"""The effective-dated catalog on a real broker: one running worker decides each claim under its date's version."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import structlog
from prometheus_client import CollectorRegistry

from tests.integration import streams
from tests.unit.dated_catalogs import write_catalog
from worker.config.settings import load_settings
from worker.policy import load_catalog_dir
from worker.runtime.compose import build_worker

pytestmark = [pytest.mark.kafka]

OLD, NEW = "old-1", "new-1"
# Z85.3 + C50 without an attested status: the old terms (2020.09-1's) approve, the new (2020.09-3's) pend.
SPLIT_DX = [{"code": "Z85.3", "qualifier": "02"}, {"code": "C50.912", "qualifier": "02"}]


def test_a_version_takes_over_at_its_date_while_the_worker_runs(kafka_bootstrap, topics, tmp_path):
    """Claims served the day before, on the change day, then late for the day before: OLD, NEW, OLD, one run."""
    change = streams.SERVICE_DAY
    folder = write_catalog(
        tmp_path / "catalog",
        [
            (
                "2020.09-1",
                OLD,
                {
                    "effective_from": (change - timedelta(days=90)).isoformat(),
                    "effective_until": (change - timedelta(days=1)).isoformat(),
                },
            ),
            ("2020.09-3", NEW, {"effective_from": change.isoformat()}),
        ],
    )
    settings = load_settings(streams.worker_env(kafka_bootstrap, topics))
    worker = build_worker(
        settings, policies=load_catalog_dir(folder), registry=CollectorRegistry(), log=structlog.get_logger()
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    served = [change - timedelta(days=1), change, change - timedelta(days=1)]
    seen: list[dict] = []
    try:
        for n, day in enumerate(served, start=1):
            claim = streams.claim(n, date_of_service=day, diagnoses=SPLIT_DX)
            streams.produce(kafka_bootstrap, topics["claims"], streams.encoded([claim]))

            def answered(claim_id: str = claim.claim_id) -> bool:
                results = streams.read_outputs(
                    kafka_bootstrap, topics["results"], topics["dead_letter"]
                ).results
                seen[:] = results
                return any(r["claim_id"] == claim_id for r in results)

            assert streams.wait_for(answered, timeout_s=60), f"claim {n} was not answered"
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the worker did not stop"
    by_claim = {r["claim_id"]: (r["policy_version"], r["outcome"], r["policy_selection"]) for r in seen}
    assert by_claim == {
        "clm-000001": (OLD, "APPROVED", "IN_EFFECT"),
        "clm-000002": (NEW, "PENDED", "IN_EFFECT"),
        "clm-000003": (OLD, "APPROVED", "IN_EFFECT"),
    }
