"""promtool accepts the scrape config and alert rules, their unit tests pass, and dashboard PromQL parses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "claims-worker.json"

# Grafana fills these in before a query reaches Prometheus; any valid stand-in will do for parsing.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$job": "claims-worker",
    "$instance": ".*",
}

pytestmark = pytest.mark.prometheus


def _promtool() -> str:
    """Return the promtool path; missing means an incomplete environment: a failure, never a skip."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH. `make test` installs it (Debian package `prometheus`); "
            "or run deploy/prometheus/install-promtool.sh as root.",
            pytrace=False,
        )
    return path


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def test_check_config():
    """promtool check config accepts prometheus.yml and the rule files it names."""
    promtool = _promtool()
    _run(promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))


def test_check_rules():
    """promtool check rules accepts alerts.yml."""
    promtool = _promtool()
    _run(promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))


def test_rule_unit_tests():
    """promtool test rules passes every firing and not-firing case in tests.yml."""
    promtool = _promtool()
    _run(promtool, "test", "rules", str(PROMETHEUS_DIR / "tests.yml"))


def test_dashboard_queries_parse(tmp_path):
    """Every dashboard expression, with Grafana's variables filled in, is valid PromQL."""
    promtool = _promtool()

    def exprs(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [v for k, v in node.items() if k == "expr" and isinstance(v, str)]
            return own + [e for v in node.values() for e in exprs(v)]
        if isinstance(node, list):
            return [e for item in node for e in exprs(item)]
        return []

    found = sorted(set(exprs(json.loads(DASHBOARD.read_text()))))
    assert found
    rules = []
    for i, expr in enumerate(found):
        concrete = expr
        for var, value in GRAFANA_VARIABLES.items():
            concrete = concrete.replace(var, value)
        assert "$" not in concrete, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": concrete})
    # JSON is YAML, so promtool reads this without a YAML writer.
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(rules_file))


def test_install_script_is_a_no_op_when_present():
    """install-promtool.sh exits 0 and prints nothing when promtool is already installed."""
    _promtool()
    result = subprocess.run(
        ["bash", str(PROMETHEUS_DIR / "install-promtool.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
