"""The operators' HTTP server on a free local port: /metrics, /healthz, /readyz, start and stop."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from worker.contracts.codes import Outcome
from worker.ops.health import HealthServer
from worker.ops.metrics import WorkerMetrics


def _get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """GET a path on localhost and return (status, content type, body), for 2xx and error statuses alike."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - fixed http URL
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read().decode()


class _Readiness:
    """A readiness callable the test flips between ready and not ready."""

    def __init__(self) -> None:
        self.answer: tuple[bool, str] = (False, "no partitions assigned")

    def __call__(self) -> tuple[bool, str]:
        return self.answer


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry holding WorkerMetrics with one recorded outcome."""
    registry = CollectorRegistry()
    WorkerMetrics(registry).record_outcome(Outcome.DENIED)
    return registry


@pytest.fixture
def readiness() -> _Readiness:
    """A readiness check that starts out not ready."""
    return _Readiness()


@pytest.fixture
def server(registry, readiness):
    """A started HealthServer on a free port, stopped after the test."""
    with HealthServer(registry, readiness, host="127.0.0.1", port=0) as srv:
        yield srv


class TestEndpoints:
    """What each path answers."""

    def test_port_zero_reports_the_bound_port(self, server):
        """Started on port 0, the server reports the real port it bound."""
        assert server.port > 0

    def test_metrics_serves_the_registry(self, server):
        """/metrics answers 200 with the registry in Prometheus text format."""
        status, content_type, body = _get(server.port, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert 'claims_worker_results_total{outcome="DENIED"} 1.0' in body

    def test_metrics_negotiates_openmetrics(self, server):
        """/metrics answers in OpenMetrics when the scraper asks for it."""
        status, content_type, body = _get(server.port, "/metrics", accept="application/openmetrics-text")
        assert status == 200
        assert content_type.startswith("application/openmetrics-text")
        assert body.rstrip().endswith("# EOF")

    def test_healthz(self, server):
        """/healthz answers 200 ok while the process lives, whatever readiness says."""
        assert _get(server.port, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")

    def test_readyz_not_ready(self, server):
        """/readyz answers 503 with the check's reason while not ready."""
        status, content_type, body = _get(server.port, "/readyz")
        assert (status, content_type) == (503, "application/json")
        assert json.loads(body) == {"ready": False, "detail": "no partitions assigned"}

    def test_readyz_ready(self, server, readiness):
        """/readyz answers 200 once the check says ready."""
        readiness.answer = (True, "3 partitions assigned, broker reachable")
        status, _, body = _get(server.port, "/readyz")
        assert status == 200
        assert json.loads(body) == {"ready": True, "detail": "3 partitions assigned, broker reachable"}

    def test_readyz_check_that_raises_is_not_ready(self, registry):
        """A readiness check that raises makes /readyz answer 503 naming only the exception type."""

        def broken() -> tuple[bool, str]:
            raise RuntimeError("secret detail")

        with HealthServer(registry, broken, port=0) as srv:
            status, _, body = _get(srv.port, "/readyz")
        assert status == 503
        assert json.loads(body) == {"ready": False, "detail": "readiness check raised RuntimeError"}

    def test_unknown_path_is_404(self, server):
        """Any other path answers 404."""
        assert _get(server.port, "/nope")[0] == 404

    def test_query_string_is_ignored(self, server):
        """A query string does not change the route."""
        assert _get(server.port, "/healthz?verbose=1")[0] == 200


class TestLifecycle:
    """Starting, stopping and staying quiet."""

    def test_stop_releases_the_port(self, registry, readiness):
        """After stop the port no longer accepts connections and stop is idempotent."""
        srv = HealthServer(registry, readiness, port=0)
        port = srv.start()
        assert _get(port, "/healthz")[0] == 200
        srv.stop()
        srv.stop()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass

    def test_idle_server_sleeps_until_a_request_or_stop(self, monkeypatch):
        """The serving thread waits on its sockets with no timeout (no wake-ups while idle) and still stops."""
        import selectors  # noqa: PLC0415

        from worker.ops import health  # noqa: PLC0415

        waits: list[float | None] = []

        class _Recording(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
            def select(self, timeout=None):
                waits.append(timeout)
                return super().select(timeout)

        monkeypatch.setattr(health.selectors, "DefaultSelector", _Recording)
        srv = HealthServer(CollectorRegistry(), lambda: (True, "ok"), port=0)
        port = srv.start()
        assert _get(port, "/healthz")[0] == 200
        srv.stop()
        assert waits, "the serving loop waited on its selector"
        assert all(timeout is None for timeout in waits)

    def test_double_start_is_refused(self, server):
        """Starting a started server raises RuntimeError."""
        with pytest.raises(RuntimeError):
            server.start()

    def test_requests_are_not_logged(self, server, capfd):
        """Serving requests writes nothing to stdout or stderr."""
        _get(server.port, "/healthz")
        _get(server.port, "/nope")
        assert capfd.readouterr() == ("", "")


def test_port_in_use_is_a_config_error_naming_the_port():
    """Binding a port that is already taken raises ConfigError (exit 2) naming the port, not an OSError trace."""
    from worker.errors import ConfigError  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(CollectorRegistry(), lambda: (True, "ok"), host="127.0.0.1", port=port)
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*CLAIMS_METRICS_PORT"):
            server.start()
