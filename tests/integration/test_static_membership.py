"""Static membership and batch runs: a worker that exits because it is done gives its partitions back at once."""

from __future__ import annotations

from tests.integration import streams
from worker.contracts.codec import Codec
from worker.runtime.failures import ExitCode


def _run_until_idle(env, log, instance: str) -> None:
    proc = streams.start_worker({**env, "CLAIMS_INSTANCE": instance}, log)
    code = proc.wait(timeout=180)
    assert code == ExitCode.OK, log.read_text(errors="replace")[-3000:]


def test_an_idle_exit_leaves_the_group_so_the_next_run_on_another_slot_gets_every_partition(
    kafka_bootstrap, topics, tmp_path
):
    """After an idle exit on slot 0, a run on slot 1 answers claims on both partitions (slot 0 left the group).

    Without the explicit leave, slot 0's static member would keep one of the two partitions for the
    session timeout (45 s) and the slot-1 run, exiting after 2 idle seconds, would never see its claims.
    """
    codec = Codec()
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_EXIT_WHEN_IDLE_S="2")
    first = [streams.claim(i) for i in range(20)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(first, codec))
    _run_until_idle(env, tmp_path / "slot0.log", "0")
    assert any('"group_left"' in line for line in streams.iter_log(tmp_path / "slot0.log"))

    second = [streams.claim(i) for i in range(100, 120)]
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(second, codec))
    _run_until_idle(env, tmp_path / "slot1.log", "1")

    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    answered = {r["claim_id"] for r in outputs.results}
    assert {c.claim_id for c in first + second} <= answered
    assert len(outputs.results) == len(first) + len(second)  # one result per claim, none twice
