"""Static membership and batch runs: a worker that exits because it is done gives its partitions back at once."""

from __future__ import annotations

import pytest

from tests.integration import streams
from worker.contracts.codec import Codec
from worker.kafka.failures import ExitCode

pytestmark = [pytest.mark.kafka]


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


def test_a_worker_whose_static_member_is_removed_while_it_works_rejoins_and_answers_every_claim_once(
    kafka_bootstrap, topics, tmp_path
):
    """What the group watch's heal does to its own worker: removed from the group mid-stream, it goes on.

    The coordinator rebalances; the worker's next heartbeat finds its member unknown, its open
    transaction is aborted and replayed, and it rejoins on the same slot. It must neither exit (the slot
    is still its own: no fencing) nor answer a claim twice.
    """
    from kafka.admin import KafkaAdminClient, MemberToRemove  # noqa: PLC0415

    codec = Codec()
    claims = [streams.claim(i) for i in range(4_000)]
    env = streams.worker_env(kafka_bootstrap, topics, CLAIMS_INSTANCE="w0")
    streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims[:2_000], codec))
    log = tmp_path / "worker.log"
    proc = streams.start_worker(env, log)
    try:
        assert streams.wait_for(
            lambda: streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) > 0, 120
        ), log.read_text(errors="replace")[-3000:]
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            member = MemberToRemove(group_instance_id=f"{topics['group']}-w0", reason="test: heal")
            answers = admin.remove_group_members(topics["group"], [member])
        finally:
            admin.close()
        assert [getattr(e, "__name__", e) for e in answers.values()] == ["NoError"]
        streams.produce(kafka_bootstrap, topics["claims"], streams.encoded(claims[2_000:], codec))
        assert streams.wait_for(
            lambda: (
                streams.committed_total(kafka_bootstrap, topics["group"], topics["claims"]) == len(claims)
            ),
            180,
        ), log.read_text(errors="replace")[-3000:]
        assert proc.poll() is None, "the worker exited after its member was removed"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lines = list(streams.iter_log(log))
    assert any('"partitions_lost"' in line for line in lines), "the removal never reached the worker"
    assert sum('"partitions_assigned"' in line for line in lines) >= 2, "it rejoined and got them back"
    outputs = streams.read_outputs(kafka_bootstrap, topics["results"], topics["dead_letter"])
    answered = [r["claim_id"] for r in outputs.results]
    assert sorted(answered) == sorted(c.claim_id for c in claims), "every claim answered exactly once"
    assert outputs.dead_letters == []
