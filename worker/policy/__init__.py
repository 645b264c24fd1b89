"""Prior-authorization policy decisions: ``decide(claim, facts, policy, decided_at)`` is the only entry point.

A policy is data (the catalog ``worker/policies/<policy_id>/<version>.json``) plus a small evaluator:
``catalog_policy("IXEMPRA-PA/2020.09-3")`` validates and compiles a catalog entry into a ``Policy``;
``load_policy`` does the same for any file; ``default_policy`` is the catalog's default entry.
"""

from worker.policy.decision import DIRECTORY_REFERENCE, authorization_number, decide
from worker.policy.definition import (
    DEFAULT_POLICY_REF,
    Policy,
    ProductScope,
    catalog_policy,
    catalog_refs,
    default_policy,
    load_policy,
)
from worker.policy.facts import Facts, ProviderFacts, ProviderStatus

__all__ = [
    "DEFAULT_POLICY_REF",
    "DIRECTORY_REFERENCE",
    "Facts",
    "Policy",
    "ProductScope",
    "ProviderFacts",
    "ProviderStatus",
    "authorization_number",
    "catalog_policy",
    "catalog_refs",
    "decide",
    "default_policy",
    "load_policy",
]
