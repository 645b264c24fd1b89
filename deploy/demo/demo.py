"""`make run`: broker (unless configured), topics, sample claims, the worker, its decisions, one explained.

The worker reads the bundled sample prescriber directory (built into a scratch folder first), and the
seeded claims include some that send no taxonomy, so criterion B is decided through the directory
(the table's "B from" column says which source decided B).

`make run SECURE=1` (``--secure``) starts the broker with SASL_SSL, SCRAM and ACLs instead: set-up
and the table run as the super user ``admin``, the worker as ``claims-worker`` holding exactly the
ACLs of docs/security.md, after ``check-access`` has confirmed them.

The demo stops only a broker it started: one that ``make broker-up`` left running (as secure as asked)
is used and left running; otherwise the demo starts its own in a state folder of its own and stops
that one at the end. ``SECURE=1`` with ``KAFKA_BOOTSTRAP_SERVERS`` set is refused (exit 2): the
demo can only secure a broker it starts itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from deploy.kafka import broker as local_broker
from worker.errors import ExitCode

__all__ = ["DEMO_STATE", "local_broker_for_demo", "main"]

# The demo's own broker (when it starts one): apart from `make broker-up`'s, so neither stops the other.
DEMO_STATE = local_broker.DEFAULT_STATE.parent / "demo-run"

_DEMO_SECRET = "make-run-demo-secret-not-for-production"  # noqa: S105 - announced as a demo key
_EXPLAINED_SAMPLE = "pend-non-oncologist-consult-unknown"  # pended: shows criteria, evidence and a need


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def local_broker_for_demo(
    secure: bool, shared_state: Path = local_broker.DEFAULT_STATE, own_state: Path = DEMO_STATE
) -> tuple[local_broker.Broker, Path | None]:
    """Return the broker the demo uses and the state folder to stop afterwards (None: not ours to stop).

    A broker running from ``shared_state`` (``make broker-up``) that is as secure as asked is used and
    left running. Otherwise the demo starts one in ``own_state``, so a broker it did not start (plain
    when ``--secure`` is asked, or the other way round) is never stopped or replaced.
    """
    running = local_broker.find_running(shared_state)
    if running is not None and running.secure == secure:
        print(f"using the local broker already running from {shared_state} (left running afterwards)")
        return running, None
    kind = "SASL_SSL + SCRAM + ACLs" if secure else "PLAINTEXT"
    _step(f"starting a local single-node Kafka broker (KRaft, 127.0.0.1, {kind})")
    if secure:
        broker = local_broker._secure_demo_broker(state_dir=own_state)  # noqa: SLF001
    else:
        broker = local_broker.start_broker(state_dir=own_state)
    return broker, own_state


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end and return the worker's exit code (non-zero if any step fails)."""
    secure = "--secure" in (sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    worker_env: dict[str, str] = {}
    ours: Path | None = None
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and secure:
        print(
            "error: SECURE=1 secures a local broker the demo starts; KAFKA_BOOTSTRAP_SERVERS is set: "
            "unset it, or run without SECURE=1 (your CLAIMS_KAFKA_* login settings apply)",
            file=sys.stderr,
        )
        return int(ExitCode.BAD_SETTINGS)
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        try:
            broker, ours = local_broker_for_demo(secure)
        except local_broker.BrokerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        env |= broker.client_env(local_broker.ADMIN_USER)
        if secure:
            worker_env = broker.client_env("claims-worker")
        print(f"broker at {env['KAFKA_BOOTSTRAP_SERVERS']}")
    else:
        print(f"using KAFKA_BOOTSTRAP_SERVERS={env['KAFKA_BOOTSTRAP_SERVERS']}")
    # Fresh topic names per run, so the table shows this run's decisions only.
    run_id = uuid.uuid4().hex[:6]
    env.setdefault("CLAIMS_CLAIMS_TOPIC", f"demo-{run_id}.claims")
    env.setdefault("CLAIMS_RESULTS_TOPIC", f"demo-{run_id}.results")
    env.setdefault("CLAIMS_DEAD_LETTER_TOPIC", f"demo-{run_id}.dead-letter")
    env.setdefault("CLAIMS_GROUP_ID", f"demo-{run_id}")
    env.setdefault("CLAIMS_TRANSACTIONAL_ID_PREFIX", f"demo-{run_id}")
    env.setdefault("CLAIMS_EXIT_WHEN_IDLE_S", "3")
    env.setdefault("CLAIMS_METRICS_PORT", "0")
    env.setdefault("CLAIMS_LOG_FORMAT", "console")
    scratch = tempfile.TemporaryDirectory(prefix="claims-demo-")
    env.setdefault("CLAIMS_DIRECTORY_PATH", str(_sample_directory(Path(scratch.name))))
    cli = [sys.executable, "-m", "worker"]
    steps: list[tuple[str, list[str], dict[str, str]]] = [
        (
            "creating topics (one local broker: one copy of each partition)",
            ["create-topics", "--partitions", "2", "--replication-factor", "1", "--min-insync-replicas", "1"],
            env,
        ),
        (
            "producing the bundled sample claims, poison records and claims without a taxonomy",
            ["seed-samples", "--directory-samples"],
            env,
        ),
        ("running the worker until the topic is drained (idle 3 s)", ["run"], env | worker_env),
        ("what the worker decided (read back from the output topics)", ["show-results"], env),
    ]
    _with_store(steps, env, run_id, worker_env)
    steps.append(_explain_step(env))
    if worker_env:
        _grant_worker(broker, env | worker_env)
        steps.insert(2, ("checking the worker's rights", ["check-access"], env | worker_env))
    try:
        for title, args, step_env in steps:
            _step(title)
            code = subprocess.run([*cli, *args], env=step_env, check=False).returncode
            if code != 0:
                print(f"error: `claims-worker {' '.join(args)}` exited {code}", file=sys.stderr)
                return code
    finally:
        scratch.cleanup()
        if ours is not None:
            _step("stopping the local broker this run started")
            local_broker.stop_broker(ours)
    return 0


def _explain_step(env: dict[str, str]) -> tuple[str, list[str], dict[str, str]]:
    """Return the last step: explain one pended sample claim (criteria, evidence, what is needed and why)."""
    from worker.samples import sample_claims  # noqa: PLC0415 - only here

    claim_id = next(s.claim.claim_id for s in sample_claims() if s.label == _EXPLAINED_SAMPLE)
    args = ["explain", "--claim-id", claim_id]
    command = f"CLAIMS_RESULTS_TOPIC={env['CLAIMS_RESULTS_TOPIC']} claims-worker {' '.join(args)}"
    title = (
        f"one decision as a PA pharmacist reads it (sample {_EXPLAINED_SAMPLE}):\n    {command}\n"
        "    (any other: --claim-id ID, or --at P@O with the src column of show-results; docs/operations.md)"
    )
    return title, args, env


def _sample_directory(folder: Path) -> Path:
    """Build the bundled sample prescriber directory's index in ``folder`` and return its path."""
    from deploy.demo.nppes_sample import build_sample_index  # noqa: PLC0415 - only here

    _step("building the bundled sample prescriber directory (NPPES layout)")
    index = build_sample_index(folder / "nppes-sample.idx")
    print(f"directory index at {index}")
    return index


def _with_store(
    steps: list[tuple[str, list[str], dict[str, str]]],
    env: dict[str, str],
    run_id: str,
    worker_env: dict[str, str],
) -> None:
    """Turn the authorization store on (a demo secret, announced) and add a later fill paid on file."""
    env.setdefault("CLAIMS_AUTHORIZATIONS_TOPIC", f"demo-{run_id}.authorizations")
    env.setdefault("CLAIMS_PA_REQUESTS_TOPIC", f"demo-{run_id}.pa-requests")
    env.setdefault("CLAIMS_PA_DECISIONS_TOPIC", f"demo-{run_id}.pa-decisions")
    if not env.get("CLAIMS_MEMBER_PSEUDONYM_SECRET") and not env.get("CLAIMS_MEMBER_PSEUDONYM_SECRET_FILE"):
        env["CLAIMS_MEMBER_PSEUDONYM_SECRET"] = _DEMO_SECRET
        print("using a DEMO member pseudonym secret (CLAIMS_MEMBER_PSEUDONYM_SECRET): never in production")
    store_env = {
        k: v for k, v in env.items() if k.startswith(("CLAIMS_AUTHORIZATIONS", "CLAIMS_MEMBER", "CLAIMS_PA_"))
    }
    for _, _, step_env in steps:  # the steps already built (some with their own copy of env) use it too
        step_env.update(store_env)
    steps.insert(
        1,
        (
            "creating the authorization store (compacted), PA request and decision topics",
            ["authorizations", "create-topic"],
            env,
        ),
    )
    steps += [
        (
            "a PA request (electronic PA) for a new member, with the clinical data",
            ["authorizations", "seed-demo-request"],
            env,
        ),
        (
            "deciding PA requests until idle (same policy; the approval goes on file)",
            ["authorizations", "serve-requests"],
            env,
        ),
        ("the answer on the PA-decisions topic (no PHI)", ["authorizations", "decisions"], env),
        (
            "later fills, with no clinical data, for the member of approve-codes and the request's member",
            ["authorizations", "seed-demo-fill"],
            env,
        ),
        (
            "running the worker again: the fills pay against the authorizations on file",
            ["run"],
            env | worker_env,
        ),
        (
            "what the worker decided (the last two fills: APPROVED on file, original windows)",
            ["show-results"],
            env,
        ),
    ]


def _grant_worker(broker: local_broker.Broker, env: dict[str, str]) -> None:
    """Grant ``claims-worker`` the documented ACLs for this run's topic, group and transactional id names."""
    from worker.config.settings import load_settings  # noqa: PLC0415 - only for --secure
    from worker.kafka.access import acl_bindings, worker_needs  # noqa: PLC0415

    needs = worker_needs(load_settings({k: v for k, v in env.items() if k.startswith(("CLAIMS_", "KAFKA_"))}))
    local_broker.grant(broker, "User:claims-worker", list(acl_bindings(needs, "User:claims-worker")))


if __name__ == "__main__":
    raise SystemExit(main())
