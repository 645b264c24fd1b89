"""The test-only abort hook (tests.chaos.faults): off by default, loud when on, and aborts take the real path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.chaos import faulty_worker
from tests.chaos.faults import ABORT_RATE_ENV, AbortInjector, InjectedAbort, abort_injector_from_env
from tests.unit.fakes import FakeCluster
from tests.unit.test_pipeline_unit import Harness, _exactly_once, _value
from worker.cli import run as run_module
from worker.config.settings import env_names, load_settings
from worker.errors import ConfigError
from worker.kafka.failures import ExitCode, Kind, classify


def test_production_settings_refuse_the_variable_and_the_harness_entry_point_takes_it_out():
    """`claims-worker run` knows no fault setting (bad settings, exit 2); the harness's entry point pops it first."""
    assert ABORT_RATE_ENV not in env_names()
    with pytest.raises(ConfigError, match=ABORT_RATE_ENV):
        load_settings({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", ABORT_RATE_ENV: "0.1"})
    seen: dict[str, object] = {}

    def fake_main(argv, *, fault_hook):
        seen["argv"] = argv
        seen["hook"] = fault_hook(_log())
        seen["left"] = ABORT_RATE_ENV in os.environ
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ABORT_RATE_ENV, "0.5")
        patch.setattr(faulty_worker, "main", fake_main)
        assert faulty_worker.faulty_main() == 0
    assert seen["argv"] == ["run"]
    assert isinstance(seen["hook"], AbortInjector)
    assert seen["left"] is False


def test_the_production_entry_point_never_reads_a_fault_hook():
    """worker.cli.run imports nothing from the fault harness (the hook comes only from its own entry point)."""
    source = (Path(run_module.__file__)).read_text()
    assert "tests.chaos" not in source
    assert ABORT_RATE_ENV not in source


def test_the_hook_is_off_unless_the_variable_is_set_above_zero():
    """Unset, empty or 0 gives no hook, and nothing is logged."""
    with capture_logs() as events:
        for env in ({}, {ABORT_RATE_ENV: ""}, {ABORT_RATE_ENV: "0"}):
            assert abort_injector_from_env(_log(), env) is None
    assert events == []


def test_an_enabled_hook_is_logged_as_a_warning_naming_the_variable():
    """A rate above 0 logs fault_injection_enabled (warning) with the variable and says it is test-only."""
    with capture_logs() as events:
        injector = abort_injector_from_env(_log(), {ABORT_RATE_ENV: "0.25"})
    assert injector is not None
    assert injector.rate == 0.25
    line = next(e for e in events if e["event"] == "fault_injection_enabled")
    assert line["log_level"] == "warning"
    assert f"{ABORT_RATE_ENV}=0.25" in line["message"]
    assert "TEST ONLY" in line["message"]


@pytest.mark.parametrize("raw", ["often", "-0.1", "1.5", "nan"])
def test_a_bad_rate_is_bad_settings_naming_the_variable(raw):
    """A rate that is not a number in [0, 1] is a ConfigError (exit 2) naming the variable."""
    with pytest.raises(ConfigError, match=ABORT_RATE_ENV):
        abort_injector_from_env(_log(), {ABORT_RATE_ENV: raw})


def test_the_injector_aborts_about_its_rate_at_both_stages_and_is_abortable():
    """At rate 0.3 about 30% of batches abort, at either stage, with an error the worker retries (transient)."""
    injector = AbortInjector(0.3, random.Random(4))
    stages: list[str] = []
    errors: list[InjectedAbort] = []
    for _ in range(2000):
        for stage in ("offsets", "commit"):
            try:
                injector(stage)
            except InjectedAbort as exc:
                stages.append(stage)
                errors.append(exc)
                break
    assert all(classify(exc) is Kind.TRANSIENT for exc in errors)
    assert 500 <= len(stages) <= 700
    assert injector.injected == len(stages)
    assert {"offsets", "commit"} <= set(stages)


def test_injected_aborts_take_the_real_abort_path_and_output_stays_exactly_once():
    """With the hook aborting half the batches, every batch is aborted, rewound and redone: each input once."""
    cluster = FakeCluster(partitions=2)
    for n in range(40):
        cluster.append(n % 2, _value(n))
    injector = AbortInjector(0.5, random.Random(7))
    h = Harness(cluster, fault=injector, CLAIMS_OUTAGE_LIMIT_S="60", CLAIMS_BATCH_MAX_RECORDS="5")
    with capture_logs() as events:
        assert h.run(limit_s=30) == ExitCode.OK
    _exactly_once(cluster)
    aborted = [e for e in events if e["event"] == "transaction_aborting" and e["error"] == "InjectedAbort"]
    assert injector.injected > 0
    assert len(aborted) == injector.injected
    assert len(h.producers) == 1, "an abort keeps the producer (only an unknown outcome replaces it)"
    assert any(p.calls.count("abort") for p in h.producers)


def _log():
    import structlog  # noqa: PLC0415

    return structlog.get_logger()


def test_main_hands_the_fault_hook_to_run_and_the_console_script_hands_none(monkeypatch):
    """`main(["run"], fault_hook=h)` runs the worker with h; plain `main(["run"])` runs it with none."""
    from worker import cli  # noqa: PLC0415

    seen = []
    monkeypatch.setattr(run_module, "run", lambda _settings, *, fault_hook=None: seen.append(fault_hook) or 0)
    monkeypatch.setattr("worker.kafka.clients.check_login", lambda _settings: None)
    monkeypatch.setattr("worker.kafka.access.require_worker_access", lambda _settings: None)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")

    def hook(log):
        return None

    assert cli.main(["run"], fault_hook=hook) == 0
    assert cli.main(["run"]) == 0
    assert seen == [hook, None]
