"""The built wheel, installed in a fresh venv outside the checkout, decides the bundled samples."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from worker.config.settings import Settings, load_settings
from worker.contracts.codec import Codec
from worker.kafka.reads import read_topic
from worker.samples import poison_records, sample_claims

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
_NOT_SOURCE = (
    ".git",
    ".venv",
    ".cache",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


def _call(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``args``; fail the test with its output when it exits non-zero; return its stdout."""
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{args[:3]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout holding only the built wheel; returns its bin directory.

    The runtime dependencies come from this test run's own site-packages through a ``.pth`` line: a
    directory named there is only appended to ``sys.path`` (its own ``.pth`` files, such as the
    checkout's editable-install hook, are not run), so ``worker`` can only come from the wheel.
    """
    base = tmp_path_factory.mktemp("wheel-install")
    assert not base.resolve().is_relative_to(ROOT)
    # Build from a copy: setuptools leaves build/ behind, and a stale build/lib would leak into later wheels.
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    wheels = base / "wheels"
    _call(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        cwd=base,
    )
    (wheel,) = wheels.glob("claims_worker-*.whl")
    # No developer tool ships: the broker launcher, certificates and demo live in deploy/, the fault
    # hook with the tests (issue 24).
    with zipfile.ZipFile(wheel) as built:
        shipped = built.namelist()
    assert [n for n in shipped if n.split("/")[0] in {"deploy", "tests"} or "devtools" in n] == []
    assert "worker/samples.py" in shipped  # what users run (seed-samples) stays
    venv = base / "venv"
    _call([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base)
    _call(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=base,
    )
    site = Path(
        _call(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            cwd=base,
        ).strip()
    )
    (site / "zz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    return venv / "bin"


def test_wheel_outside_the_checkout_decides_the_bundled_samples(installed, kafka_bootstrap, unique, tmp_path):
    """create-topics, seed-samples, run and show-results from the installed wheel decide every sample."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    where = _call(
        [str(installed / "python"), "-c", "import worker.contracts.registry as r; print(r.SCHEMAS_DIR)"],
        cwd=tmp_path,
    )
    assert not Path(where.strip()).is_relative_to(ROOT), (
        "worker was imported from the checkout, not the wheel"
    )
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CLAIMS_CLAIMS_TOPIC": f"claims-{unique}",
        "CLAIMS_RESULTS_TOPIC": f"results-{unique}",
        "CLAIMS_DEAD_LETTER_TOPIC": f"dlq-{unique}",
        "CLAIMS_GROUP_ID": f"grp-{unique}",
        "CLAIMS_TRANSACTIONAL_ID_PREFIX": f"tx-{unique}",
        "CLAIMS_EXIT_WHEN_IDLE_S": "3",
        "CLAIMS_METRICS_PORT": "0",
        "CLAIMS_LOG_FORMAT": "json",
    }
    cli = str(installed / "claims-worker")
    _call([cli, "create-topics", "--partitions", "2", *_LOCAL_BROKER_TOPIC_ARGS], cwd=tmp_path, env=env)
    seeded = _call([cli, "seed-samples"], cwd=tmp_path, env=env)
    inputs = len(sample_claims()) + len(poison_records())
    assert f"produced {inputs} records" in seeded
    _call([cli, "run"], cwd=tmp_path, env=env)
    table = _call([cli, "show-results"], cwd=tmp_path, env=env)

    codec = Codec()
    results = [
        codec.decode_result(r.value) for r in read_topic(_settings(kafka_bootstrap), f"results-{unique}")
    ]
    dead = [
        codec.decode_dead_letter(r.value) for r in read_topic(_settings(kafka_bootstrap), f"dlq-{unique}")
    ]
    decided = {r["claim_id"] for r in results}
    assert {s.claim.claim_id for s in sample_claims()} <= decided
    assert len(results) + len(dead) == inputs
    assert f"{inputs} records from results-{unique}" in table


# The session broker is a single node: a real cluster's replication defaults do not fit it.
_LOCAL_BROKER_TOPIC_ARGS = ["--replication-factor", "1", "--min-insync-replicas", "1"]


def _settings(bootstrap: str) -> Settings:
    return load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
