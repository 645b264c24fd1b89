"""The supervisor behind `claims-worker run --processes N`, driven with tiny fake children (real subprocesses)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from worker.cli import _parser
from worker.runtime.supervisor import (
    FINAL_EXIT_CODES,
    Supervisor,
    child_environment,
    child_slot,
    worst_exit_code,
)

# A fake worker: records its slot, then follows the plan in FAKE_PLAN for its nth start (one exit code per
# start, comma-separated; "wait" = run until SIGTERM, then record it and exit 0; "kill" = SIGKILL itself).
FAKE = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    out = pathlib.Path(os.environ["FAKE_DIR"]) / os.environ["CLAIMS_INSTANCE"]
    starts = out.with_suffix(".starts")
    n = int(starts.read_text()) if starts.exists() else 0
    starts.write_text(str(n + 1))
    out.write_text(os.environ["CLAIMS_INSTANCE"] + " " + os.environ.get("CLAIMS_METRICS_PORT", "-"))
    plan = os.environ["FAKE_PLAN"].split(",")
    step = plan[min(n, len(plan) - 1)]
    if step == "wait":
        stop = []
        signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
        (out.with_suffix(".ready")).write_text("1")
        while not stop:
            time.sleep(0.01)
        out.with_suffix(".term").write_text("1")
        sys.exit(0)
    if step == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.exit(int(step))
    """
)


def _envs(tmp_path: Path, plans: list[str], port: int = 9400) -> list[dict[str, str]]:
    base = {"PATH": os.environ.get("PATH", ""), "FAKE_DIR": str(tmp_path)}
    envs = []
    for i, plan in enumerate(plans):
        env = child_environment(base, "7", i, port)
        env["FAKE_PLAN"] = plan
        envs.append(env)
    return envs


def _supervisor(tmp_path: Path, plans: list[str], **kw) -> Supervisor:
    kw.setdefault("backoff_initial_s", 0.01)
    kw.setdefault("poll_s", 0.01)
    return Supervisor([sys.executable, "-c", FAKE], _envs(tmp_path, plans), **kw)


def test_each_child_gets_its_own_slot_and_port(tmp_path):
    """Child i runs on slot <base>-i and metrics port base+i; all exit 0, so the supervisor exits 0."""
    sup = _supervisor(tmp_path, ["0", "0", "0"])
    assert sup.run(install_signals=False) == 0
    assert sorted(p.read_text() for p in tmp_path.glob("7-?")) == ["7-0 9400", "7-1 9401", "7-2 9402"]
    assert sup.starts == [1, 1, 1]


def test_port_zero_is_left_to_each_child():
    """With metrics port 0 (any free port) the children keep 0 rather than 0+i."""
    env = child_environment({"CLAIMS_METRICS_PORT": "0"}, "a", 3, 0)
    assert env == {"CLAIMS_METRICS_PORT": "0", "CLAIMS_INSTANCE": "a-3"}
    assert child_slot("web-2", 1) == "web-2-1"


def test_crashed_child_is_restarted_with_growing_jittered_backoff(tmp_path):
    """A child that crashes three times (exit 1, 70, SIGKILL) is restarted each time, each wait drawn in
    [initial, 3 x the last wait] (decorrelated jitter, seeded here)."""
    sup = _supervisor(tmp_path, ["1,70,kill,0", "0"], rng=random.Random(11))
    assert sup.run(install_signals=False) == 0
    assert sup.starts == [4, 1]
    delays = [delay for _, delay in sup.restarts]
    assert len(delays) == 3
    previous = 0.01
    for delay in delays:
        assert 0.01 <= delay <= min(sup.backoff_max_s, 3 * previous)
        previous = delay
    assert {child for child, _ in sup.restarts} == {0}


@pytest.mark.parametrize("code", sorted(FINAL_EXIT_CODES - {0}))
def test_final_exit_code_is_not_restarted_and_stops_the_others(tmp_path, code):
    """A child exiting 2, 3, 5 or 6 is not restarted; its siblings are stopped; the supervisor exits with it."""
    sup = _supervisor(tmp_path, [str(code), "wait"])
    # The "wait" sibling never exits by itself: run() returning means the supervisor stopped it.
    assert sup.run(install_signals=False) == code
    assert sup.starts == [1, 1]
    assert sup.restarts == []


def test_clean_exit_is_final_and_siblings_keep_running(tmp_path):
    """A child that exits 0 is not restarted and does not stop the others; the exit code is the worst one."""
    sup = _supervisor(tmp_path, ["0", "1,2"])
    assert sup.run(install_signals=False) == 2
    assert sup.starts == [1, 2]


def test_worst_exit_code_counts_signals_as_128_plus():
    """Death by SIGKILL (-9) is worse than any documented exit code; an empty run is 0."""
    assert worst_exit_code([0, 3, -9]) == 137
    assert worst_exit_code([0, 0]) == 0
    assert worst_exit_code([]) == 0


def test_sigterm_is_forwarded_to_every_child(tmp_path):
    """SIGTERM to the supervisor process reaches each child, none is restarted, and it exits 0."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tests.unit.test_supervisor import _supervisor
        from pathlib import Path
        sys.exit(_supervisor(Path({str(tmp_path)!r}), ["wait", "wait"]).run())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.ready"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(list(tmp_path.glob("*.ready"))) == 2, "children did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(p.name for p in tmp_path.glob("*.term")) == ["7-0.term", "7-1.term"]
    assert sorted(p.read_text() for p in tmp_path.glob("*.starts")) == ["1", "1"]


def test_cli_accepts_processes_and_refuses_a_bad_count():
    """`run --processes` is a registered option; a negative count is a usage error (exit 2) before any child starts."""
    assert _parser().parse_args(["run", "--processes", "3"]).processes == 3
    assert _parser().parse_args(["run"]).processes == 0
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["run", "--processes", "-1"])
    assert exc.value.code == 2
