"""Start and stop a single-node KRaft Apache Kafka broker from Maven-fetched jars, on 127.0.0.1.

The jars come from ``deploy/kafka/pom.xml`` (``make broker-jars``). One broker per state folder: its
``broker.json`` records the pid and bootstrap address so ``down`` (or another process) can find it.

    python -m deploy.kafka.broker up      # prints the bootstrap address
    python -m deploy.kafka.broker up --secure   # SASL_SSL + SCRAM + ACLs; prints the CLAIMS_* settings
    python -m deploy.kafka.broker down
    python -m deploy.kafka.broker status

``--secure`` (``start_broker(..., secure=True)``) generates a CA and a broker certificate for
127.0.0.1/localhost with ``openssl``, serves clients on a SASL_SSL listener with SCRAM-SHA-512 users
created at format time, and authorizes with KRaft's ``StandardAuthorizer``. The controller listener
stays PLAINTEXT on 127.0.0.1; the broker reaches its own controller as ``User:ANONYMOUS``, which is
therefore a super user: acceptable for a loopback test broker only (docs/security.md).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploy.kafka.certificates import MTLS_USER, CertificateError, Certificates, make_ca, make_certificates

__all__ = [
    "ADMIN_USER",
    "MTLS_USER",
    "Broker",
    "BrokerError",
    "Certificates",
    "find_running",
    "make_ca",
    "make_certificates",
    "start_broker",
    "stop_broker",
]

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
# Replaces the listener lines above for --secure: clients on SASL_SSL, the controller on PLAINTEXT.
SECURE_PROPERTIES = """\
listeners=SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{sport},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=SASL_SSL://127.0.0.1:{port},SSL://127.0.0.1:{sport},CONTROLLER://127.0.0.1:{cport}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="{admin}" password="{admin_password}";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={store_password}
ssl.key.password={store_password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin};User:ANONYMOUS
allow.everyone.if.no.acl.found=false
"""
ADMIN_USER = "admin"
SCRAM_ITERATIONS = 8192
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
    secure: bool = False
    ca_file: str | None = None
    # user name -> file holding that user's password (mode 0600), for CLAIMS_KAFKA_PASSWORD_FILE.
    password_files: dict[str, str] = field(default_factory=dict)
    # The SSL listener that requires a client certificate (secure brokers only).
    mtls_bootstrap: str | None = None

    def client_env(self, user: str = ADMIN_USER) -> dict[str, str]:
        """Return the ``KAFKA_BOOTSTRAP_SERVERS``/``CLAIMS_KAFKA_*`` settings that connect as ``user``."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        if self.secure:
            env |= {
                "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CLAIMS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "CLAIMS_KAFKA_USERNAME": user,
                "CLAIMS_KAFKA_PASSWORD_FILE": self.password_files[user],
                "CLAIMS_KAFKA_SSL_CAFILE": str(self.ca_file),
            }
        return env

    def mtls_env(self) -> dict[str, str]:
        """Return the settings that connect over mutual TLS as ``User:CN=claims-worker-mtls``."""
        if not self.secure or self.mtls_bootstrap is None or self.ca_file is None:
            msg = "mutual TLS needs a broker started with secure=True"
            raise BrokerError(msg)
        tls = Path(self.ca_file).parent
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.mtls_bootstrap,
            "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CLAIMS_KAFKA_SSL_CAFILE": self.ca_file,
            "CLAIMS_KAFKA_SSL_CERTFILE": str(tls / "client.pem"),
            "CLAIMS_KAFKA_SSL_KEYFILE": str(tls / "client.key"),
            "CLAIMS_KAFKA_SSL_KEY_PASSWORD_FILE": str(
                Path(self.state_dir) / "secrets" / f"{MTLS_USER}.key-password"
            ),
        }


def _scram_credential(user: str, password: str) -> str:
    """Return a ``--add-scram`` value holding the salted password, so no password appears in argv."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    return (
        f"SCRAM-SHA-512=[name={user},iterations={SCRAM_ITERATIONS},"
        f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(n: int) -> list[int]:
    """Return ``n`` distinct free ports on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


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


def _secure_setup(
    state_dir: Path, text: str, ports: tuple[int, int, int], users: dict[str, str]
) -> tuple[str, list[str], dict[str, str], Certificates]:
    """Make certificates and password files; return the properties, ``--add-scram`` options and files."""
    try:
        certs = make_certificates(state_dir / "tls")
    except CertificateError as exc:
        raise BrokerError(str(exc)) from exc
    passwords = {ADMIN_USER: secrets.token_urlsafe(18), **users}
    secret_dir = state_dir / "secrets"
    secret_dir.mkdir(mode=0o700)
    scram: list[str] = []
    password_files: dict[str, str] = {}
    for user, password in passwords.items():
        path = secret_dir / user
        path.write_text(password)
        path.chmod(0o600)
        password_files[user] = str(path)
        scram.append(f"--add-scram={_scram_credential(user, password)}")
    kept = [
        line
        for line in text.splitlines()
        if not line.startswith(("listeners=", "advertised.listeners=", "inter.broker", "listener.security"))
    ]
    key_password = secret_dir / f"{MTLS_USER}.key-password"
    key_password.write_text(certs.client_key_password)
    key_password.chmod(0o600)
    port, cport, sport = ports
    text = (
        "\n".join(kept)
        + "\n"
        + SECURE_PROPERTIES.format(
            port=port,
            cport=cport,
            sport=sport,
            admin=ADMIN_USER,
            admin_password=passwords[ADMIN_USER],
            keystore=certs.keystore,
            store_password=certs.keystore_password,
            ca=certs.ca_file,
        )
    )
    return text, scram, password_files, certs


def start_broker(
    libs: Path = DEFAULT_LIBS,
    state_dir: Path = DEFAULT_STATE,
    timeout_s: float = 120.0,
    *,
    secure: bool = False,
    users: dict[str, str] | None = None,
    ports: tuple[int, int, int] | None = None,
) -> Broker:
    """Format fresh KRaft storage and start a combined broker+controller; wait until it serves.

    ``ports`` (client, controller, mTLS) are free ones unless given: a test that replaces a broker by a
    fresh cluster (a new cluster id) behind the same address passes the old broker's.

    With ``secure``, clients must use SASL_SSL with SCRAM-SHA-512 and are authorized by ACLs;
    ``users`` (name -> password) are created at format time besides the super user ``admin``, whose
    password is generated. Each password is written to ``<state>/secrets/<user>`` (mode 0600).

    Reuses a broker already running from ``state_dir`` (if it is as secure as asked). Raises
    ``BrokerError`` with the log's tail when the broker exits or is not ready within ``timeout_s``.
    """
    running = find_running(state_dir)
    if running is not None and running.secure == secure:
        return running
    if running is not None:
        stop_broker(state_dir)
    java, classpath = _java(), _classpath(libs)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    port, cport, sport = ports or _free_ports(3)
    props = state_dir / "server.properties"
    text = SERVER_PROPERTIES.format(port=port, cport=cport, data=state_dir / "data")
    scram: list[str] = []
    password_files: dict[str, str] = {}
    certs: Certificates | None = None
    if secure:
        text, scram, password_files, certs = _secure_setup(state_dir, text, (port, cport, sport), users or {})
    props.write_text(text)
    props.chmod(0o600)
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
            *scram,
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
    broker = Broker(
        f"127.0.0.1:{port}",
        proc.pid,
        str(state_dir),
        str(log_file),
        secure=secure,
        ca_file=str(certs.ca_file) if certs else None,
        password_files=password_files,
        mtls_bootstrap=f"127.0.0.1:{sport}" if certs else None,
    )
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
    for private in ("data", "secrets", "tls"):
        shutil.rmtree(state_dir / private, ignore_errors=True)
    (state_dir / "server.properties").unlink(missing_ok=True)  # a secure broker's holds passwords
    return found


def grant(broker: Broker, principal: str, acls: list[object]) -> None:
    """Create ``acls`` (kafka-python ``ACL`` objects for ``principal``) as the super user."""
    from worker.config.settings import load_settings  # noqa: PLC0415 - only for secure brokers
    from worker.kafka.clients import Role, new_admin  # noqa: PLC0415

    admin = new_admin(load_settings(broker.client_env(ADMIN_USER)), Role.ADMIN)
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    if result["failed"]:
        msg = f"creating ACLs for {principal} failed: {result['failed']}"
        raise BrokerError(msg)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``up`` prints the bootstrap address, ``down`` stops, ``status`` reports."""
    parser = argparse.ArgumentParser(prog="python -m deploy.kafka.broker", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--libs", type=Path, default=DEFAULT_LIBS, help="folder of Kafka jars")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, help="folder for data and logs")
    parser.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL/SCRAM-SHA-512, StandardAuthorizer, user claims-worker granted the worker's ACLs",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up" and args.secure:
            broker = _secure_demo_broker(args.libs, args.state)
            for name, value in broker.client_env("claims-worker").items():
                print(f"export {name}={value}")
        elif args.command == "up":
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


def _secure_demo_broker(libs: Path = DEFAULT_LIBS, state_dir: Path = DEFAULT_STATE) -> Broker:
    """Start a secure broker with a ``claims-worker`` user granted exactly the default worker's ACLs."""
    from worker.config.settings import load_settings  # noqa: PLC0415
    from worker.kafka.access import acl_bindings, worker_needs  # noqa: PLC0415

    broker = start_broker(libs, state_dir, secure=True, users={"claims-worker": secrets.token_urlsafe(18)})
    if "claims-worker" in broker.password_files:
        settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
        grant(broker, "User:claims-worker", list(acl_bindings(worker_needs(settings), "User:claims-worker")))
    return broker


if __name__ == "__main__":
    raise SystemExit(main())
