"""The one bounded memo: it evicts the least recently used entry when full instead of freezing."""

from __future__ import annotations

import pytest

from worker.contracts.model import Product
from worker.lru import LruMemo
from worker.policy import definition, diagnoses, load_policy
from worker.policy.diagnoses import CodeFamily, DiagnosisCodes


def test_full_memo_forgets_the_least_recently_used():
    """With room for two, reading "a" keeps it, so adding "c" forgets "b"."""
    memo: LruMemo[str, int] = LruMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1
    memo.put("c", 3)
    assert ("a" in memo, "b" in memo, "c" in memo, len(memo)) == (True, False, True, 2)


def test_get_tells_a_stored_none_from_a_miss():
    """A remembered None comes back as None while a miss returns the default."""
    memo: LruMemo[str, int | None] = LruMemo(4)
    memo.put("none", None)
    missing = object()
    assert memo.get("none", missing) is None
    assert memo.get("absent", missing) is missing


def test_put_on_a_known_key_refreshes_it():
    """Putting a key again replaces its value and makes it the most recently used."""
    memo: LruMemo[str, int] = LruMemo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("a", 10)
    memo.put("c", 3)
    assert (memo.get("a"), "b" in memo) == (10, False)


def test_limit_must_leave_room():
    """A memo with no room is refused."""
    with pytest.raises(ValueError, match="at least one"):
        LruMemo(0)


def test_policy_product_memo_keeps_learning_when_full(monkeypatch, tmp_path):
    """Past its bound the product memo still remembers the newest product ids (it used to freeze)."""
    monkeypatch.setattr(definition, "_MEMO_LIMIT", 2)
    source = tmp_path / "policy.json"
    catalog = definition.resources.files("worker.policies") / "IXEMPRA-PA" / "2020.09-2.json"
    source.write_text(catalog.read_text(encoding="utf-8"))
    policy = load_policy(source)
    ids = ["70020191001", "00093747489", "68817013450"]
    for product_id in ids:
        policy.match_product(Product(product_id=product_id, qualifier="03"))
    memo = policy._product_memo
    first, last = ("03", ids[0]), ("03", ids[2])
    assert (first in memo, last in memo, len(memo)) == (False, True, 2)


def test_diagnosis_memo_keeps_learning_when_full(monkeypatch):
    """Past its bound the diagnosis memo still remembers the newest codes (it used to freeze)."""
    monkeypatch.setattr(diagnoses, "_MEMO_LIMIT", 2)
    codes = DiagnosisCodes(qualifier="02", prefixes=((CodeFamily.PRIMARY, ("C50",)),))
    for code in ("C50.911", "C78.7", "Z85.3"):
        codes._lookup(code)
    assert ("C50.911" in codes._memo, "Z85.3" in codes._memo, len(codes._memo)) == (False, True, 2)
