"""The deploy/ examples: valid against the Kubernetes and compose JSON schemas (bundled, offline) and wired right.

Kubernetes: kubernetes-validate ships the API's JSON schemas per version; strict mode also refuses unknown
fields. Compose: check-jsonschema vendors the compose specification's schema (``vendor.compose-spec``).
Both are in the dev extra; no network is needed.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s" / "statefulset.yaml"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yaml"
LOCAL_DEMO = ROOT / "deploy" / "compose" / "local-demo.yaml"  # plaintext, one broker: a local demo only
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


OPERATIONS = ROOT / "docs" / "operations.md"
_MIB = 2**20


def _sizing_inputs(text: str) -> dict[str, float]:
    """The table under "Memory: sizing the pod": input name -> number (MiB, bytes, a count or a share)."""
    section = text.split("\n### Memory: sizing the pod\n", 1)[1].split("\n### ", 1)[0]
    inputs = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and re.match(r"^[\d,.]+", cells[1]):
            number = float(re.match(r"^[\d,.]+", cells[1]).group(0).replace(",", ""))
            inputs[cells[0]] = number / 100 if cells[1].endswith("%") else number
    return inputs


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), f"memory {quantity!r} is not in Mi"
    return int(quantity.removesuffix("Mi"))


def _round_up(mib: float, step: int = 64) -> int:
    return math.ceil(mib / step) * step


def test_statefulset_memory_is_the_documented_formula():
    """requests/limits.memory = the docs' formula over its documented inputs (each rounded up to 64 MiB)."""
    from worker.config.settings import Settings  # noqa: PLC0415

    inputs = _sizing_inputs(OPERATIONS.read_text())
    assert inputs["dedupe window"] == Settings.model_fields["dedup_window"].default
    request = (
        inputs["baseline"]
        + inputs["authorizations"] * inputs["bytes per authorization"] / _MIB
        + inputs["partitions on one pod"] * inputs["dedupe window"] * inputs["bytes per event id"] / _MIB
    )
    (container,) = _k8s_docs()["StatefulSet"]["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    assert _mebibytes(resources["requests"]["memory"]) == _round_up(request)
    assert _mebibytes(resources["limits"]["memory"]) == _round_up(request * (1 + inputs["headroom"]))


def test_selectors_match_the_pods():
    """The service, the StatefulSet and the PodDisruptionBudget all select the StatefulSet's pod labels."""
    docs = _k8s_docs()
    labels = docs["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert docs["StatefulSet"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("path", [COMPOSE, LOCAL_DEMO], ids=lambda p: p.name)
def test_compose_file_is_valid_for_the_compose_spec(path):
    """docker-compose.yaml and local-demo.yaml pass the compose specification's JSON schema."""
    jsonschema.validate(yaml.safe_load(path.read_text()), _compose_schema())


def test_the_compose_worker_connects_with_sasl_ssl_and_secrets_from_files():
    """The cluster file's worker uses SASL_SSL, its password and CA from compose secrets, never a literal."""
    compose = yaml.safe_load(COMPOSE.read_text())
    env = compose["services"]["worker"]["environment"]
    assert env["CLAIMS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "CLAIMS_KAFKA_PASSWORD" not in env
    mounted = {f"/run/secrets/{name}" for name in compose["services"]["worker"]["secrets"]}
    assert {env["CLAIMS_KAFKA_PASSWORD_FILE"], env["CLAIMS_KAFKA_SSL_CAFILE"]} <= mounted
    assert set(compose["services"]["worker"]["secrets"]) <= set(compose["secrets"])
    assert all("file" in secret for secret in compose["secrets"].values())
    assert set(compose["services"]) == {"worker"}, "no plaintext broker beside the cluster file's worker"


def test_the_local_demo_runs_the_same_worker_service_as_the_cluster_file():
    """Both compose files run one worker service: same image, command, ports, probes, limits, hardening."""
    secure = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]
    demo = yaml.safe_load(LOCAL_DEMO.read_text())["services"]["worker"]
    shared = (
        "image",
        "command",
        "ports",
        "restart",
        "stop_signal",
        "stop_grace_period",
        "healthcheck",
        "deploy",
        "read_only",
        "security_opt",
    )
    assert {k: demo.get(k) for k in shared} == {k: secure.get(k) for k in shared}
    common = set(demo["environment"]) - {"KAFKA_BOOTSTRAP_SERVERS"}
    assert {k: demo["environment"][k] for k in common} == {k: secure["environment"][k] for k in common}


def test_the_plaintext_compose_file_is_named_a_local_demo():
    """The only plaintext example says what it is: its name, project name and first line say local demo."""
    text = LOCAL_DEMO.read_text()
    demo = yaml.safe_load(text)
    assert text.splitlines()[0].startswith("# LOCAL DEMO ONLY")
    assert demo["name"].endswith("local-demo")
    assert "CLAIMS_KAFKA_SECURITY_PROTOCOL" not in demo["services"]["worker"]["environment"]
    assert (
        demo["services"]["kafka"]["environment"]["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].count("PLAINTEXT")
        >= 1
    )


def test_the_k8s_pod_is_locked_down_and_connects_with_sasl_ssl_from_mounted_secrets():
    """No service-account token, the runtime's seccomp profile, SASL_SSL with the password and CA as mounted files."""
    pod = _k8s_docs()["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    env = {name: entry.get("value") for name, entry in _env(container).items()}
    assert env["CLAIMS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "CLAIMS_KAFKA_PASSWORD" not in env
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert all(m["readOnly"] for m in mounts.values())
    for variable in ("CLAIMS_KAFKA_PASSWORD_FILE", "CLAIMS_KAFKA_SSL_CAFILE"):
        mount = next(m for m in mounts.values() if env[variable].startswith(m["mountPath"] + "/"))
        assert mount["name"] in volumes, variable
    password_volume = next(
        m["name"] for m in mounts.values() if env["CLAIMS_KAFKA_PASSWORD_FILE"].startswith(m["mountPath"])
    )
    assert volumes[password_volume]["secret"]["defaultMode"] == 0o400


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


def _one_node_properties() -> dict[str, str]:
    """The local broker's settings that make one node enough (replication factors and min ISRs)."""
    from deploy.kafka.broker import SERVER_PROPERTIES  # noqa: PLC0415

    pairs = (line.split("=", 1) for line in SERVER_PROPERTIES.splitlines() if "=" in line)
    return {k: v for k, v in pairs if k.endswith(("replication.factor", ".min.isr"))}


def _compose_broker_properties(service: dict) -> dict[str, str]:
    """The compose broker's KAFKA_* variables as the server properties the image makes of them."""
    return {
        name.removeprefix("KAFKA_").lower().replace("_", "."): str(value)
        for name, value in service["environment"].items()
        if name.startswith("KAFKA_")
    }


def test_compose_broker_has_every_one_node_setting_of_the_local_broker():
    """The local demo's `kafka` service sets each replication factor and min ISR the local one-node broker needs."""
    services = yaml.safe_load(LOCAL_DEMO.read_text())["services"]
    wanted = _one_node_properties()
    assert "transaction.state.log.min.isr" in wanted
    properties = _compose_broker_properties(services["kafka"])
    assert {k: properties.get(k) for k in wanted} == wanted
    assert properties["auto.create.topics.enable"] == "false"


def test_compose_topic_set_up_fits_one_broker_and_runs_once():
    """create-topics asks for one copy (one broker), waits for a healthy broker, is not restarted forever,
    and the worker waits for it to complete."""
    services = yaml.safe_load(LOCAL_DEMO.read_text())["services"]
    setup = services["create-topics"]
    command = setup["command"]
    assert command[0] == "create-topics"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--replication-factor"] == "1"
    assert flags["--min-insync-replicas"] == "1"
    assert setup["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["kafka"]["healthcheck"]["test"]
    assert setup.get("restart", "no") in {"no", "on-failure:1", "on-failure:2", "on-failure:3"}
    dependency = services["worker"]["depends_on"]["create-topics"]
    assert dependency == {"condition": "service_completed_successfully"}
    assert setup["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == services["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"
    ].removeprefix("PLAINTEXT://")


# --- the image (Dockerfile) ------------------------------------------------------------------------------
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """Return the Dockerfile's (INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_problems(
    text: str, k8s: dict[str, dict], compose: dict, pyproject: dict, version: str
) -> list[str]:
    """Name every way the image would not fit the manifests that run it (empty: it fits)."""
    steps = _instructions(text)
    problems = []
    arguments = dict(args.split("=", 1) for op, args in steps if op == "ARG" and "=" in args)
    stages = [
        re.sub(r"\$\{(\w+)\}", lambda m: arguments.get(m[1], m[0]), args)
        for op, args in steps
        if op == "FROM"
    ]
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    if len(stages) != 2:
        problems.append(f"expected a build and a runtime stage, found {len(stages)}")
    exact = re.compile(
        rf"python:{sys.version_info.major}\.{sys.version_info.minor}\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{{64}})?"
    )
    for image in stages:
        name = image.split()[0]
        if not exact.fullmatch(name):
            problems.append(f"base image {name} is not one exact release of the Python the tests run on")
        if "/" in name.split(":")[0]:
            problems.append(f"base image {name} names a registry or namespace")
    pod = k8s["StatefulSet"]["spec"]["template"]["spec"]
    users = [args for op, args in final if op == "USER"]
    if users != [str(pod["securityContext"]["runAsUser"])]:
        problems.append(f"USER {users} is not the manifests' runAsUser {pod['securityContext']['runAsUser']}")
    container = pod["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    exposed = [args for op, args in final if op == "EXPOSE"]
    if exposed != [str(port)]:
        problems.append(f"EXPOSE {exposed} is not the metrics port {port}")
    entry = [json.loads(args) for op, args in final if op == "ENTRYPOINT"]
    if entry != [list(pyproject["project"]["scripts"])]:
        problems.append(
            f"ENTRYPOINT {entry} is not the console script {list(pyproject['project']['scripts'])}"
        )
    worker = compose["services"]["worker"]
    for where, image in (("k8s", container["image"]), ("compose", worker["image"])):
        if image != f"claims-worker:{version}":
            problems.append(
                f"{where} runs {image}, the image this Dockerfile builds is claims-worker:{version}"
            )
    problems += _install_problems(steps)
    if f"claims-worker:{version}" not in text:
        problems.append("the build command in the Dockerfile's header names another tag")
    return problems


def _install_problems(steps: list[tuple[str, str]]) -> list[str]:
    """Name every pip install from a requirements file without hashes, or a build without the runtime lock."""
    commands = [
        command.strip()
        for op, args in steps
        if op == "RUN"
        for command in args.split("&&")
        if re.search(r"pip (install|download)", command)
    ]
    problems = [
        f"`{command}` installs from a requirements file without the hashed lock"
        for command in commands
        if "-r " in command and "--require-hashes" not in command
    ]
    if not any("--require-hashes" in c and "requirements/runtime.txt" in c for c in commands):
        problems.append("no stage installs the dependencies from the hashed lock requirements/runtime.txt")
    return problems


def _pyproject() -> dict:
    import tomllib  # noqa: PLC0415

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_fits_the_manifests_that_run_it():
    """The Dockerfile's user, port, entry point, Python and tag match the StatefulSet, compose file and package."""
    from worker import __version__  # noqa: PLC0415

    compose = yaml.safe_load(COMPOSE.read_text())
    assert _dockerfile_problems(DOCKERFILE.read_text(), _k8s_docs(), compose, _pyproject(), __version__) == []


def test_the_image_check_catches_a_root_user_and_a_wrong_port():
    """The same check names a root user and a port the probes do not use."""
    from worker import __version__  # noqa: PLC0415

    broken = DOCKERFILE.read_text().replace("USER 10001", "USER root").replace("EXPOSE 9400", "EXPOSE 9000")
    compose = yaml.safe_load(COMPOSE.read_text())
    problems = _dockerfile_problems(broken, _k8s_docs(), compose, _pyproject(), __version__)
    assert any(p.startswith("USER") for p in problems)
    assert any(p.startswith("EXPOSE") for p in problems)


def test_the_image_check_catches_a_floating_base_and_an_unlocked_install():
    """A base image without its patch release, or a pip install without the hashed lock, is named."""
    from worker import __version__  # noqa: PLC0415

    text = DOCKERFILE.read_text()
    assert (
        _dockerfile_problems(
            text, _k8s_docs(), yaml.safe_load(COMPOSE.read_text()), _pyproject(), __version__
        )
        == []
    )
    floating = re.sub(r"ARG BASE=\S+", "ARG BASE=python:3.11-slim", text)
    problems = _dockerfile_problems(
        floating, _k8s_docs(), yaml.safe_load(COMPOSE.read_text()), _pyproject(), __version__
    )
    assert any("exact release" in p for p in problems)
    unlocked = text.replace("--require-hashes", "")
    problems = _dockerfile_problems(
        unlocked, _k8s_docs(), yaml.safe_load(COMPOSE.read_text()), _pyproject(), __version__
    )
    assert any("hashed lock" in p for p in problems)


def test_the_build_context_holds_what_the_build_copies():
    """Every file the build stage COPYs (and the package data inside worker/) passes .dockerignore; nothing else does."""
    rules = [r.strip() for r in DOCKERIGNORE.read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "ignore everything, then allow what the build needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for op, args in _instructions(DOCKERFILE.read_text()):
        if op == "COPY" and not args.startswith("--from"):
            copied.update(p.rstrip("/").removeprefix("./") for p in args.split()[:-1])
    assert copied == allowed
    for source in copied:
        assert (ROOT / source).exists(), f"{source} is copied but missing"
    assert (ROOT / "worker" / "contracts" / "schemas").is_dir(), (
        "the schemas ship inside worker/ (package data)"
    )
