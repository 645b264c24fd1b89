"""The deploy/ examples: valid against the Kubernetes and compose JSON schemas (bundled, offline) and wired right.

Kubernetes: kubernetes-validate ships the API's JSON schemas per version; strict mode also refuses unknown
fields. Compose: check-jsonschema vendors the compose specification's schema (``vendor.compose-spec``).
Both are in the dev extra; no network is needed.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s" / "statefulset.yaml"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yaml"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes still in wide support; fields used here are all GA there


def _k8s_docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(K8S.read_text()) if d}


def _compose_schema() -> dict:
    path = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(path.read_text())


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("kind", ["Service", "StatefulSet", "PodDisruptionBudget"])
def test_k8s_manifest_is_valid_for_the_api(kind):
    """Each object in statefulset.yaml passes strict validation against the bundled Kubernetes schema."""
    kubernetes_validate.validate(_k8s_docs()[kind], K8S_VERSION, strict=True)


def test_k8s_validator_catches_a_typo():
    """The strict validator refuses an unknown field, so the test above can fail."""
    broken = copy.deepcopy(_k8s_docs()["StatefulSet"])
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_statefulset_slot_is_the_pod_name_and_probes_hit_the_metrics_port():
    """CLAIMS_INSTANCE comes from the pod name; liveness is /healthz and readiness /readyz on CLAIMS_METRICS_PORT."""
    docs = _k8s_docs()
    sts, svc = docs["StatefulSet"], docs["Service"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert env["CLAIMS_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    port = int(env["CLAIMS_METRICS_PORT"]["value"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    # Longer than the worker's commit watchdog (CLAIMS_COMMIT_TIMEOUT_S, 30 s default) so a stop can finish.
    assert pod["terminationGracePeriodSeconds"] > 30
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]


def test_selectors_match_the_pods():
    """The service, the StatefulSet and the PodDisruptionBudget all select the StatefulSet's pod labels."""
    docs = _k8s_docs()
    labels = docs["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert docs["StatefulSet"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_compose_file_is_valid_for_the_compose_spec():
    """docker-compose.yaml passes the compose specification's JSON schema."""
    jsonschema.validate(yaml.safe_load(COMPOSE.read_text()), _compose_schema())


def test_compose_validator_catches_a_typo():
    """The compose schema refuses an unknown service key, so the test above can fail."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["worker"]["restart_policy"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _compose_schema())


def test_compose_worker_runs_the_supervisor_on_a_host_slot():
    """The worker service runs `run --processes N` with a per-host slot and checks /readyz."""
    worker = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    assert worker["command"][:2] == ["run", "--processes"]
    assert worker["environment"]["CLAIMS_INSTANCE"].startswith("${HOST_SLOT")
    assert "/readyz" in " ".join(worker["healthcheck"]["test"])
    assert worker["stop_grace_period"] == "60s"
