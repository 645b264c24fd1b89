"""Every alert links a runbook section of docs/operations.md that exists, and has firing and quiet unit tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"

# One scheme for every alert: the repository's rendered docs page and the heading's anchor.
RUNBOOK_BASE = "https://github.com/example/claims-worker/blob/main/docs/operations.md#"


def _rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


ALERT_RULES = [rule for rule in _rules() if "alert" in rule]
ALERT_NAMES = [rule["alert"] for rule in ALERT_RULES]


def github_anchor(heading: str) -> str:
    """Return the anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    """The anchors of every ATX heading in ``markdown`` (fenced code blocks skipped)."""
    anchors: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and not fenced:
            anchors.add(github_anchor(match.group(1)))
    return anchors


def test_github_anchor_matches_githubs_rule():
    """The anchor function gives GitHub's anchors for a plain name, spaces and punctuation."""
    assert github_anchor("ClaimsWorkerDown") == "claimsworkerdown"
    assert github_anchor("Reading the top row (at a glance)") == "reading-the-top-row-at-a-glance"
    assert github_anchor("Slots: CLAIMS_INSTANCE") == "slots-claims_instance"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=ALERT_NAMES)
def test_runbook_url_names_an_existing_section(rule):
    """runbook_url is the docs page plus the alert's own anchor, and docs/operations.md has that heading."""
    url = rule["annotations"]["runbook_url"]
    assert url == RUNBOOK_BASE + rule["alert"].lower()
    assert url.removeprefix(RUNBOOK_BASE) in _anchors(OPERATIONS.read_text()), f"no heading for {url}"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=ALERT_NAMES)
def test_every_alert_has_a_severity_summary_and_description(rule):
    """Each alert says how bad it is and what happened, for the pager and the dashboard."""
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_every_alert_has_a_firing_and_a_quiet_unit_test(name):
    """tests.yml evaluates each alert at least once expecting alerts and at least once expecting none."""
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == name
    ]
    assert any(case["exp_alerts"] for case in cases), f"{name} never fires in tests.yml"
    assert any(not case["exp_alerts"] for case in cases), f"{name} is never checked quiet in tests.yml"


def test_runbook_sections_cover_only_existing_alerts():
    """Every runbook section under 'Alerts' names an alert that exists (no stale runbooks)."""
    text = OPERATIONS.read_text()
    section = text.split("\n## Alerts", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^### (\w+)\s*$", section, flags=re.MULTILINE))
    assert named == set(ALERT_NAMES)


def test_readme_links_the_operations_guide():
    """The README points operators at docs/operations.md."""
    assert "docs/operations.md" in README.read_text()


PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
_JOB_MATCHER = re.compile(r"\bjob\s*(=|!=|=~|!~)\s*\"")
_SERVICE_MATCHER = re.compile(r'\bservice\s*=\s*"([^"]+)"')


@pytest.mark.parametrize("rule", ALERT_RULES, ids=ALERT_NAMES)
def test_no_alert_selects_a_job_name(rule):
    """Alerts never filter on `job`: an operator's own job name must not silence them (`by (job)` is fine)."""
    assert not _JOB_MATCHER.search(rule["expr"]), f"{rule['alert']} selects on job: {rule['expr']}"


def test_the_label_claims_worker_down_matches_is_set_by_the_scrape_config():
    """Every claims-worker target in prometheus.yml carries the `service` label ClaimsWorkerDown selects."""
    (down,) = [rule for rule in ALERT_RULES if rule["alert"] == "ClaimsWorkerDown"]
    assert "absent(" in down["expr"], "a target that disappears must fire too"
    (service,) = set(_SERVICE_MATCHER.findall(down["expr"]))
    jobs = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    claims_jobs = [job for job in jobs if job["job_name"] == "claims-worker"]
    assert claims_jobs
    for job in claims_jobs:
        for target in job["static_configs"]:
            assert target.get("labels", {}).get("service") == service


def test_claims_worker_down_is_tested_down_absent_and_under_another_job():
    """tests.yml has ClaimsWorkerDown firing for a down target, a vanished one (no series) and another job."""
    fired: list[dict] = []
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            if case["alertname"] == "ClaimsWorkerDown":
                fired += [alert["exp_labels"] for alert in case["exp_alerts"]]
    assert any("instance" not in labels for labels in fired), "no case where the target is absent"
    assert any(labels.get("job") == "claims-worker" and "instance" in labels for labels in fired)
    assert any(labels.get("job") not in {None, "claims-worker"} for labels in fired), "no other job label"
