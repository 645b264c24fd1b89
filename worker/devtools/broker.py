"""Start and stop a single-node KRaft Apache Kafka broker from Maven-fetched jars, on 127.0.0.1.

The jars come from ``deploy/kafka/pom.xml`` (``make broker-jars``). One broker per state folder: its
``broker.json`` records the pid and bootstrap address so ``down`` (or another process) can find it.

    python -m worker.devtools.broker up      # prints the bootstrap address
    python -m worker.devtools.broker down
    python -m worker.devtools.broker status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Broker", "BrokerError", "find_running", "start_broker", "stop_broker"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIBS = ROOT / ".cache" / "kafka" / "libs"
DEFAULT_STATE = ROOT / ".cache" / "kafka" / "run"
READY_LINE = "Kafka Server started"
JVM_FLAGS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:TieredStopAtLevel=1",  # starts faster; a test broker never runs long enough for C2 to pay off
    "-Djava.awt.headless=true",
)
# Settings a single node needs for transactions (internal topics with one replica and min ISR 1)
# and for fast tests.
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
transaction.max.timeout.ms=900000
"""
LOG4J2 = """\
appender.console.type=Console
appender.console.name=STDOUT
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.stdout.ref=STDOUT
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.state.name=state.change.logger
logger.state.level=WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be started or found; the message says what to do."""


@dataclass(frozen=True)
class Broker:
    """A running local broker: where to reach it and how to find its process and logs."""

    bootstrap: str
    pid: int
    state_dir: str
    log_file: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _answers(bootstrap: str, timeout_s: float = 1.0) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def find_running(state_dir: Path = DEFAULT_STATE) -> Broker | None:
    """Return the broker recorded in ``state_dir`` if its process is alive and its port answers."""
    info = state_dir / "broker.json"
    if not info.exists():
        return None
    broker = Broker(**json.loads(info.read_text()))
    if _alive(broker.pid) and _answers(broker.bootstrap):
        return broker
    return None


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate is not None and candidate.exists():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        msg = "java not found: install a Java 17+ runtime (the broker runs on the JVM)"
        raise BrokerError(msg)
    return found


def _classpath(libs: Path) -> str:
    if not any(libs.glob("kafka_2.13-*.jar")):
        msg = f"no Kafka jars in {libs}: run `make broker-jars` (mvn fetches them once)"
        raise BrokerError(msg)
    return f"{libs}/*"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no broker log)"


def start_broker(
    libs: Path = DEFAULT_LIBS,
    state_dir: Path = DEFAULT_STATE,
    timeout_s: float = 120.0,
) -> Broker:
    """Format fresh KRaft storage and start a combined broker+controller; wait until it serves.

    Reuses a broker already running from ``state_dir``. Raises ``BrokerError`` with the log's tail
    when the broker exits or does not become ready within ``timeout_s``.
    """
    running = find_running(state_dir)
    if running is not None:
        return running
    java, classpath = _java(), _classpath(libs)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    port, cport = _free_port(), _free_port()
    while cport == port:
        cport = _free_port()
    props = state_dir / "server.properties"
    props.write_text(SERVER_PROPERTIES.format(port=port, cport=cport, data=state_dir / "data"))
    log4j = state_dir / "log4j2.properties"
    log4j.write_text(LOG4J2)
    log_file = state_dir / "broker.log"
    jvm = [
        java,
        *JVM_FLAGS,
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={state_dir / 'logs'}",
        "-cp",
        classpath,
    ]
    # "=" form: a random id may start with "-", which argparse4j would read as an option.
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    fmt = subprocess.run(
        [
            *jvm,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            f"--cluster-id={cluster_id}",
            "-c",
            str(props),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if fmt.returncode != 0:
        msg = f"formatting KRaft storage failed (exit {fmt.returncode}):\n{fmt.stdout}\n{fmt.stderr}"
        raise BrokerError(msg)
    with log_file.open("wb") as out:
        # A new session: the broker outlives this process (make broker-up) and ignores our Ctrl-C.
        proc = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    broker = Broker(f"127.0.0.1:{port}", proc.pid, str(state_dir), str(log_file))
    (state_dir / "broker.json").write_text(json.dumps(asdict(broker)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"broker exited with {proc.returncode}; last log lines:\n{_tail(log_file)}"
            raise BrokerError(msg)
        if READY_LINE in log_file.read_text(errors="replace") and _answers(broker.bootstrap):
            return broker
        time.sleep(0.2)
    stop_broker(state_dir)
    msg = f"broker not ready after {timeout_s:.0f}s; last log lines:\n{_tail(log_file)}"
    raise BrokerError(msg)


def stop_broker(state_dir: Path = DEFAULT_STATE, grace_s: float = 20.0) -> bool:
    """Stop the broker recorded in ``state_dir``: SIGTERM, then SIGKILL after ``grace_s``.

    Returns whether a live broker was found. Its data folder is removed; the log is kept.
    """
    info = state_dir / "broker.json"
    if not info.exists():
        return False
    broker = Broker(**json.loads(info.read_text()))
    found = _alive(broker.pid)
    if found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(broker.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _alive(broker.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(broker.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(broker.pid, signal.SIGKILL)
            while _alive(broker.pid):
                time.sleep(0.05)
    info.unlink(missing_ok=True)
    shutil.rmtree(state_dir / "data", ignore_errors=True)
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: ``up`` prints the bootstrap address, ``down`` stops, ``status`` reports."""
    parser = argparse.ArgumentParser(prog="python -m worker.devtools.broker", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--libs", type=Path, default=DEFAULT_LIBS, help="folder of Kafka jars")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="folder for data and logs")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            broker = start_broker(args.libs, args.state)
            print(broker.bootstrap)
        elif args.command == "down":
            print("stopped" if stop_broker(args.state) else "no broker was running")
        else:
            running = find_running(args.state)
            print(running.bootstrap if running else "not running")
            return 0 if running else 1
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
