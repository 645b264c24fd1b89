"""The fault harness's own bookkeeping: when a run is long enough that "no injected abort" means a fault."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "chaos" / "run_chaos.py"
_SPEC = importlib.util.spec_from_file_location("run_chaos", _PATH)
assert _SPEC is not None
assert _SPEC.loader is not None
run_chaos = importlib.util.module_from_spec(_SPEC)
sys.modules["run_chaos"] = run_chaos  # its dataclasses look their module up while it loads
_SPEC.loader.exec_module(run_chaos)


def test_a_short_run_may_see_no_abort_by_chance():
    """40 transactions at 2%: no abort 45% of the time, so none is not a failure."""
    assert not run_chaos.abort_expected(40, 0.02)


def test_a_long_run_must_see_an_abort():
    """342+ transactions at 2% miss every abort less than once in a thousand runs: none is a failure."""
    assert not run_chaos.abort_expected(341, 0.02)
    assert run_chaos.abort_expected(342, 0.02)
    assert run_chaos.abort_expected(50, 0.2)


def test_no_rate_or_no_transactions_expects_nothing():
    """The hook off (rate 0), or a run that committed nothing: nothing to expect."""
    assert not run_chaos.abort_expected(10_000, 0.0)
    assert not run_chaos.abort_expected(0, 0.5)


def test_aborts_and_commits_are_counted_over_every_worker_log(tmp_path):
    """Injected aborts and committed batches come from the JSON log lines of every worker-*.log."""
    lines = {
        "worker-0.log": [
            {"event": "batch_committed"},
            {"event": "transaction_aborting", "error": "InjectedAbort"},
            {"event": "transaction_aborting", "error": "KafkaTimeoutError"},
        ],
        "worker-1.log": [{"event": "batch_committed"}, {"event": "batch_committed"}],
        "other.log": [{"event": "transaction_aborting", "error": "InjectedAbort"}],
    }
    for name, events in lines.items():
        (tmp_path / name).write_text("\n".join(json.dumps(e) for e in events) + "\nnot json\n")
    assert run_chaos.injected_aborts(tmp_path) == (1, 3)


def test_group_watch_events_are_counted_over_every_worker_log(tmp_path):
    """Confirmed unowned partitions, heals and failed heals are counted from every worker-*.log."""
    (tmp_path / "worker-0.log").write_text(
        '{"event": "partitions_unowned"}\n{"event": "group_heal_requested"}\n{"event": "batch_committed"}\n'
    )
    (tmp_path / "worker-1.log").write_text(
        '{"event": "partitions_unowned"}\n{"event": "group_heal_failed"}\n'
    )
    (tmp_path / "broker.log").write_text('{"event": "partitions_unowned"}\n')
    assert run_chaos.group_events(tmp_path) == {
        "partitions_unowned": 2,
        "group_heal_requested": 1,
        "group_heal_failed": 1,
    }
