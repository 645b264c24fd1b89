"""Prior authorizations on file: a global table every worker follows, written with the result that creates it.

An approval is recorded on a compacted topic keyed by its PA number, in the same Kafka transaction as
the result that issues it; a revocation is a later record under the same key (the whole authorization
plus ``revoked_at`` and ``revoked_reason``). Every worker reads the whole topic at start
(``catch_up``) and follows it on each loop pass (``follow``), so a fill on any claims partition finds
an approval issued on any other. The topic holds no PHI: the member is a keyed pseudonym
(``member_pseudonym``). See docs/authorizations.md.

The record and its codec are in ``authorization.py``, the in-memory table and the metrics in
``authorization_table.py``, reading the topic in ``authorization_follower.py``; this module is the store
the loop decides with and writes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from worker.contracts.codes import Outcome, TransactionCode
from worker.errors import ClaimsWorkerError, ConfigError
from worker.kafka.clients import Role, new_consumer
from worker.policy.decision import authorization_number, is_pa_number
from worker.policy.definition import ProductScope
from worker.policy.edits import failed_edits
from worker.policy.on_file import (
    ON_FILE_SUMMARY,
    on_file_decision,
    prescriber_unverified,
    quoted_not_honoured,
    quoted_note,
    renumbered,
    with_not_used,
)
from worker.state.authorization import (
    Authorization,
    Pseudonymizer,
    encode_authorization,
)
from worker.state.authorization_follower import AuthorizationFollower
from worker.state.authorization_table import AuthorizationMetrics, NotHonoured, OnFileVia
from worker.state.store import Restored

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from structlog.typing import FilteringBoundLogger

    from worker.config.settings import Settings
    from worker.contracts.model import Claim, Decision, Patient
    from worker.kafka.io import KafkaConsumer
    from worker.policy import Policy
    from worker.policy.facts import Facts, ProviderStatus

__all__ = ["ON_FILE_SUMMARY", "Authorizations", "StoreRecord", "read_table"]

_MAX_REHASH = 64  # each rehash is free with odds of 1 - table/10^10: the first one, in practice

_NOT_HONOURED_TEXT = {
    NotHonoured.UNKNOWN: "no authorization with this number is on file",
    NotHonoured.REVOKED: "it was revoked",
    NotHonoured.OTHER_MEMBER: "it was issued to another member",
    NotHonoured.OTHER_PRODUCT: "it was issued under another policy",
    NotHonoured.OUTSIDE_WINDOW: "the date of service is outside its window",
    NotHonoured.MALFORMED: "it is not a well-formed PA number (11 digits with a valid check digit)",
}


@dataclass(frozen=True, slots=True)
class StoreRecord:
    """One record for the store topic, sent in the batch's transaction."""

    topic: str
    partition: int
    key: bytes
    value: bytes


class Authorizations(AuthorizationFollower):
    """The authorization store wired into the loop: a ``PartitionStore`` over a global table.

    Global, so the per-partition hooks are trivial (``restore`` returns at once, ``is_loaded`` is always
    true): the table is read at start (``catch_up``) and followed between batches (``follow``). What a
    batch issues is staged (visible to the rest of the batch), kept on ``commit`` and dropped on
    ``abort``; the follower later reads the same committed records back, which changes nothing.
    """

    def __init__(
        self,
        secret: bytes,
        topic: str,
        *,
        consumer: KafkaConsumer | None = None,
        metrics: AuthorizationMetrics | None = None,
        log: FilteringBoundLogger | None = None,
        catch_up_timeout_s: float = 120.0,
        partitions: int = 1,
        clock: Callable[[], date] = date.today,
    ) -> None:
        """Follow ``topic`` with ``consumer`` (``None``: a table held in memory only, for unit tests)."""
        if not secret:
            raise ConfigError("the authorization store needs CLAIMS_MEMBER_PSEUDONYM_SECRET")
        super().__init__(
            topic,
            consumer=consumer,
            metrics=metrics,
            log=log,
            catch_up_timeout_s=catch_up_timeout_s,
            partitions=partitions,
            clock=clock,
        )
        self.name = "authorizations"
        self._pseudonym = Pseudonymizer(secret)
        self._staged: dict[str, Authorization] = {}
        self._staged_on_file: list[OnFileVia] = []
        self._staged_not_honoured: list[NotHonoured] = []
        self._staged_not_used: list[ProviderStatus] = []
        self._staged_collisions = 0

    @classmethod
    def connect(
        cls,
        settings: Settings,
        *,
        metrics: AuthorizationMetrics | None = None,
        log: FilteringBoundLogger | None = None,
    ) -> Authorizations:
        """Return the store for ``settings`` (its topic and secret must be set); connects nothing yet."""
        topic, secret = settings.authorizations_topic, settings.member_pseudonym_secret
        if topic is None or secret is None:
            raise ConfigError(
                "the authorization store needs CLAIMS_AUTHORIZATIONS_TOPIC and CLAIMS_MEMBER_PSEUDONYM_SECRET"
            )
        consumer = new_consumer(
            settings,
            Role.AUTHORIZATIONS,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,  # the catch-up reads whole partitions
        )
        return cls(
            secret.get_secret_value().encode(),
            topic,
            consumer=consumer,
            metrics=metrics,
            log=log,
            catch_up_timeout_s=settings.authorizations_catch_up_timeout_s,
        )

    # --- PartitionStore (global: nothing per partition) --------------------------------------------
    def restore(self, partition: int, stop: threading.Event) -> Restored:
        """Nothing per partition: the global table is followed by ``follow``."""
        del stop
        return Restored(partition, None)

    def load(self, restored: Restored) -> None:
        """Nothing per partition."""
        del restored

    def is_loaded(self, partition: int) -> bool:
        """Answer yes: the table is global (the loop does not process before ``catch_up`` finished)."""
        del partition
        return True

    def commit(self) -> None:
        """Keep the committed batch's authorizations and count what it did."""
        for auth in self._staged.values():
            self.table.apply(auth)
        self.metrics.committed(
            self._staged_on_file,
            self._staged_not_honoured,
            len(self._staged),
            collisions=self._staged_collisions,
            not_used=self._staged_not_used,
        )
        self._clear()

    def abort(self) -> None:
        """Drop the aborted batch's authorizations and counts."""
        self._clear()

    def forget(self, partition: int) -> None:
        """Nothing per partition."""
        del partition

    def forget_all(self) -> None:
        """After a producer replacement: drop what is staged; the table holds only committed records."""
        self._clear()

    def _clear(self) -> None:
        self._staged.clear()
        self._staged_on_file.clear()
        self._staged_not_honoured.clear()
        self._staged_not_used.clear()
        self._staged_collisions = 0

    # --- claims against the store ----------------------------------------------------------------
    def _get(self, number: str) -> Authorization | None:
        return self._staged.get(number) or self.table.get(number)

    def _holding(self, member: str, policy_id: str, day: date | None) -> list[Authorization]:
        """Return the member's authorizations under ``policy_id`` holding ``day`` (``None``: all of them).

        Staged ones over the table's: a batch's own approvals count before they are committed.
        """
        staged = self._staged
        found = {a.number: a for a in self.table.of_member(member, policy_id, day) if a.number not in staged}
        for auth in staged.values():
            if auth.member == member and auth.policy_id == policy_id and (day is None or auth.holds(day)):
                found[auth.number] = auth
        return list(found.values())

    def on_therapy(self, claim: Claim, policy_id: str, since: date) -> bool:
        """Tell whether ``claim``'s member is on therapy under ``policy_id`` (continuity of care).

        On therapy: an authorization of theirs, not revoked, began before the date of service and held
        a day from ``since`` on (the store records approvals, not each fill).
        """
        member, day = self.pseudonym(claim.patient), claim.date_of_service
        return any(
            not auth.revoked and auth.effective < day and auth.expiration >= since
            for auth in self._holding(member, policy_id, None)
        )

    def pseudonym(self, patient: Patient) -> str:
        """Return ``patient``'s member pseudonym under this store's secret."""
        return self._pseudonym(patient)

    def decide(
        self,
        claim: Claim,
        facts: Facts,
        policy: Policy,
        decided_at: datetime,
        usual: Callable[[], Decision],
        *,
        dispensed: bool = True,
    ) -> Decision:
        """Approve ``claim`` on file when an authorization holds its date of service; else ``usual()``.

        ``facts`` are the claim's looked-up facts (``usual`` decides with the same ones: nothing is
        looked up twice). Decided as usual: a B2 reversal (a reversal never revokes), a product outside
        the policy, a claim that fails a plausibility edit (``policy.edits``; ``dispensed`` false for a
        PA request, which carries no quantity), and a fill whose prescriber the directory rules out
        (deactivated, an organisation, not found: the summary names the authorization not used). A
        quoted PA number (462-EV) that does not count is named in the summary with the reason (never
        echoed when it is not a well-formed PA number); one not on file adds reject 3X to a
        non-approval. A new approval leaves with a PA number no other authorization holds
        (``_free_number``).
        """
        if claim.transaction_code is TransactionCode.REVERSAL:
            return usual()
        scope, matched = policy.match_product(claim.product)
        if scope is not ProductScope.MATCHED or failed_edits(claim, policy, dispensed=dispensed):
            return usual()  # an authorization does not make an implausible date or quantity plausible
        member = self.pseudonym(claim.patient)
        found, via, quoted, why = self._find(claim, member, policy.policy_id)
        ruled_out = prescriber_unverified(facts)
        if found is not None and ruled_out is None:
            self._staged_on_file.append(via)
            note = "" if why is None else quoted_note(quoted, _NOT_HONOURED_TEXT[why])
            return on_file_decision(found, policy, decided_at, matched, note=note)
        decision = usual()
        if found is not None and ruled_out is not None:
            self._staged_not_used.append(ruled_out)
            decision = with_not_used(decision, found.number, ruled_out)
        if why is not None:
            decision = quoted_not_honoured(
                decision,
                policy,
                quoted,
                _NOT_HONOURED_TEXT[why],
                not_found=why in {NotHonoured.UNKNOWN, NotHonoured.MALFORMED},
            )
        if decision.outcome is Outcome.APPROVED and decision.authorization_number is not None:
            decision = self._free_number(claim, member, decision)
        return decision

    def _find(
        self, claim: Claim, member: str, policy_id: str
    ) -> tuple[Authorization | None, OnFileVia, str | None, NotHonoured | None]:
        """Return the authorization that would pay ``claim``, how it matched, the quoted number and why not.

        The quoted number is returned only when well formed (never echo free text); ``why`` says why a
        quoted value did not count (staged for the metrics).
        """
        day = claim.date_of_service
        sent = (claim.prior_authorization_number or "").strip() or None
        quoted = sent if sent is not None and is_pa_number(sent) else None
        why: NotHonoured | None = None
        if sent is not None:
            why = NotHonoured.MALFORMED if quoted is None else self._quoted(quoted, member, policy_id, day)
            if why is not None:
                self._staged_not_honoured.append(why)
            elif quoted is not None:
                return self._get(quoted), OnFileVia.QUOTED_NUMBER, quoted, None
        holding = self._holding(member, policy_id, day)
        found = max(holding, key=lambda a: (a.expiration, a.number)) if holding else None
        return found, OnFileVia.MEMBER_PRODUCT, quoted, why

    def _is_this(self, held: Authorization, claim: Claim, member: str, policy_id: str) -> bool:
        """Tell whether ``held`` is the authorization ``claim`` issued (a replay or redelivery of it)."""
        return held.member == member and held.policy_id == policy_id and held.source_id == claim.claim_id

    def _free_number(self, claim: Claim, member: str, decision: Decision) -> Decision:
        """Return ``decision`` under the first of its PA numbers (rehash 0, 1, ...) that is free.

        Free: on file or staged for no authorization, or for this very one (same member, policy and
        source id: a replayed or redelivered claim keeps its original number). Deterministic given the
        table, so a replay with the store pinned renumbers as the live worker did. Each occupied number
        met is a collision: counted on commit and logged by claim id and numbers (no PHI).
        """
        first = number = decision.authorization_number or ""
        attempt = 0
        while (held := self._get(number)) is not None and not self._is_this(
            held, claim, member, decision.policy_id
        ):
            attempt += 1
            if attempt > _MAX_REHASH:  # pragma: no cover - 10^10 numbers: unreachable in practice
                msg = f"no free PA number for claim {claim.claim_id} after {_MAX_REHASH} rehashes"
                raise ClaimsWorkerError(msg)
            number = authorization_number(
                decision.policy_id, claim.service_provider_id, claim.claim_id, attempt
            )
        if attempt == 0:
            return decision
        self._staged_collisions += attempt
        if self._log is not None:
            self._log.warning(
                "authorization_number_collision",
                claim_id=claim.claim_id,
                pa_number=first,
                resolved_pa_number=number,
                attempt=attempt,
            )
        return renumbered(decision, number)

    def _quoted(self, number: str, member: str, policy_id: str, day: date) -> NotHonoured | None:
        auth = self._get(number)
        if auth is None:
            return NotHonoured.UNKNOWN
        if auth.member != member:
            return NotHonoured.OTHER_MEMBER
        if auth.policy_id != policy_id:
            return NotHonoured.OTHER_PRODUCT
        if auth.revoked:
            return NotHonoured.REVOKED
        if not auth.holds(day):
            return NotHonoured.OUTSIDE_WINDOW
        return None

    def issue(self, claim: Claim, decision: Decision, *, source_kind: str = "claim") -> StoreRecord | None:
        """Stage the authorization a new approval creates and return its store record (``None``: none new).

        An approval on file (its number on file or staged for the same member: a fill paid on file, a
        redelivered claim) creates nothing. A number another member holds raises ``ClaimsWorkerError``:
        ``decide`` renumbers a colliding approval, so that is a broken invariant, never a dropped approval.
        """
        number = decision.authorization_number
        if (
            decision.outcome is not Outcome.APPROVED
            or number is None
            or decision.authorization_effective is None
            or decision.authorization_expiration is None
        ):
            return None
        member = self.pseudonym(claim.patient)
        held = self._get(number)
        if held is not None:
            if held.member == member:
                return None
            msg = f"PA number {number} of claim {claim.claim_id} is another member's authorization"
            raise ClaimsWorkerError(msg)
        matched = decision.matched_product
        auth = Authorization(
            number=number,
            member=member,
            policy_id=decision.policy_id,
            policy_version=decision.policy_version,
            product=matched.code if matched is not None else claim.product.product_id,
            effective=decision.authorization_effective,
            expiration=decision.authorization_expiration,
            source_kind=source_kind,
            source_id=claim.claim_id,
            decided_at=decision.decided_at,
        )
        self._staged[number] = auth
        key, value = encode_authorization(auth)
        return StoreRecord(self.topic, self.partition_of(number), key, value)


def read_table(consumer: KafkaConsumer, topic: str, timeout_s: float = 120.0) -> Authorizations:
    """Read the whole store topic into a table with ``consumer`` (for operator commands)."""
    store = Authorizations(b"operator-read", topic, consumer=consumer, catch_up_timeout_s=timeout_s)
    store.catch_up()
    return store
