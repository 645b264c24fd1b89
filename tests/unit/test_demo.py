"""`make run` (deploy/demo/demo.py) stops only a broker it started, and refuses SECURE=1 for a configured broker.

The broker launcher is replaced by a recorder that keeps the launcher's contract (``find_running`` answers
for one state folder, ``start_broker`` records where it started, ``stop_broker`` where it stopped), and the
demo's steps (``claims-worker`` subprocesses) by a recorder that exits 0, so no broker or JVM is needed.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - the fakes' signatures use it at run time

import pytest

from deploy.demo import demo
from deploy.kafka import broker as local_broker
from worker.errors import ExitCode

SHARED = local_broker.DEFAULT_STATE


class Launcher:
    """The launcher's state folders: which one holds a live broker, and what the demo started and stopped."""

    def __init__(self, running: dict[Path, local_broker.Broker]) -> None:
        self.running = dict(running)
        self.started: list[tuple[Path, bool]] = []
        self.stopped: list[Path] = []

    def find_running(self, state_dir: Path = SHARED) -> local_broker.Broker | None:
        return self.running.get(state_dir)

    def start_broker(self, state_dir: Path = SHARED, *, secure: bool = False) -> local_broker.Broker:
        existing = self.running.get(state_dir)
        if existing is not None and existing.secure == secure:
            return existing
        assert existing is None, "the fake models only fresh starts and reuse"
        self.started.append((state_dir, secure))
        self.running[state_dir] = _broker(state_dir, secure=secure)
        return self.running[state_dir]

    def secure_demo_broker(self, _libs: Path = SHARED, state_dir: Path = SHARED) -> local_broker.Broker:
        return self.start_broker(state_dir, secure=True)

    def stop_broker(self, state_dir: Path = SHARED) -> bool:
        self.stopped.append(state_dir)
        return self.running.pop(state_dir, None) is not None


def _broker(state_dir: Path, *, secure: bool = False) -> local_broker.Broker:
    files = {"admin": str(state_dir / "admin"), "claims-worker": str(state_dir / "cw")} if secure else {}
    return local_broker.Broker(
        f"127.0.0.1:{9000 + len(str(state_dir))}",
        4242,
        str(state_dir),
        str(state_dir / "broker.log"),
        secure=secure,
        ca_file=str(state_dir / "ca.pem") if secure else None,
        password_files=files,
    )


@pytest.fixture
def steps(monkeypatch, tmp_path):
    """Record the demo's `claims-worker` steps (each exits 0) and the environment it leaves out of them."""
    seen: list[list[str]] = []

    class Done:
        returncode = 0

    def fake_run(cmd, env, check):
        seen.append(cmd[3:])
        return Done()

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    monkeypatch.setattr(demo, "_sample_directory", lambda _folder: tmp_path / "index")
    monkeypatch.setattr(demo, "_grant_worker", lambda *_: None)
    return seen


def _install(monkeypatch, launcher: Launcher) -> None:
    monkeypatch.setattr(local_broker, "find_running", launcher.find_running)
    monkeypatch.setattr(local_broker, "start_broker", launcher.start_broker)
    monkeypatch.setattr(local_broker, "_secure_demo_broker", launcher.secure_demo_broker)
    monkeypatch.setattr(local_broker, "stop_broker", launcher.stop_broker)


class TestMakeRunStopsOnlyWhatItStarted:
    def test_a_broker_from_broker_up_is_used_and_left_running(self, monkeypatch, steps):
        """`make broker-up` then `make run`: the demo runs on that broker and never stops it."""
        launcher = Launcher({SHARED: _broker(SHARED)})
        _install(monkeypatch, launcher)
        assert demo.main([]) == 0
        assert ["run"] in steps
        assert launcher.started == []
        assert launcher.stopped == []
        assert SHARED in launcher.running

    @pytest.mark.usefixtures("steps")
    def test_with_no_broker_it_starts_its_own_and_stops_that_one(self, monkeypatch):
        """Nothing running: the demo starts a broker in its own state folder and stops exactly that one."""
        launcher = Launcher({})
        _install(monkeypatch, launcher)
        assert demo.main([]) == 0
        assert launcher.started == [(demo.DEMO_STATE, False)]
        assert launcher.stopped == [demo.DEMO_STATE]
        assert demo.DEMO_STATE != SHARED

    @pytest.mark.usefixtures("steps")
    def test_its_own_broker_is_stopped_when_a_step_fails(self, monkeypatch):
        """A failing step still stops the broker the demo started (and only that one)."""
        launcher = Launcher({})
        _install(monkeypatch, launcher)

        class Failed:
            returncode = 4

        monkeypatch.setattr(demo.subprocess, "run", lambda *_, **__: Failed())
        assert demo.main([]) == 4
        assert launcher.stopped == [demo.DEMO_STATE]

    def test_secure_beside_a_plain_broker_up_leaves_the_plain_one_alone(self, monkeypatch, steps):
        """SECURE=1 while a plain `broker-up` broker runs: a secure one of its own, stopped; the plain one kept."""
        plain = _broker(SHARED)
        launcher = Launcher({SHARED: plain})
        _install(monkeypatch, launcher)
        assert demo.main(["--secure"]) == 0
        assert launcher.started == [(demo.DEMO_STATE, True)]
        assert launcher.stopped == [demo.DEMO_STATE]
        assert launcher.running == {SHARED: plain}
        assert ["check-access"] in steps

    @pytest.mark.usefixtures("steps")
    def test_a_secure_broker_up_serves_a_secure_run(self, monkeypatch):
        """`broker-up --secure` then `make run SECURE=1`: that broker is used and kept."""
        launcher = Launcher({SHARED: _broker(SHARED, secure=True)})
        _install(monkeypatch, launcher)
        assert demo.main(["--secure"]) == 0
        assert (launcher.started, launcher.stopped) == ([], [])


def test_secure_with_a_configured_broker_is_refused(monkeypatch, steps, capsys):
    """SECURE=1 with KAFKA_BOOTSTRAP_SERVERS set is one line and exit 2, before any step or broker."""
    launcher = Launcher({})
    _install(monkeypatch, launcher)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker1:9092")
    assert demo.main(["--secure"]) == ExitCode.BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "SECURE=1" in err
    assert "KAFKA_BOOTSTRAP_SERVERS" in err
    assert (steps, launcher.started, launcher.stopped) == ([], [], [])


def test_a_configured_broker_is_never_started_or_stopped(monkeypatch, steps):
    """KAFKA_BOOTSTRAP_SERVERS set (no SECURE): the steps run against it; no local broker is touched."""
    launcher = Launcher({SHARED: _broker(SHARED)})
    _install(monkeypatch, launcher)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker1:9092")
    assert demo.main([]) == 0
    assert [
        "create-topics",
        "--partitions",
        "2",
        "--replication-factor",
        "1",
        "--min-insync-replicas",
        "1",
    ] in steps
    assert (launcher.started, launcher.stopped) == ([], [])
