"""Prior-authorization policy decisions: ``decide(claim, facts, policy, decided_at)`` is the only entry point.

A policy is data (the catalog ``worker/policies/<policy_id>/<version>.json``) plus a small evaluator:
``catalog_policy("IXEMPRA-PA/2020.09-3")`` validates and compiles a catalog entry into a ``Policy``;
``load_policy`` does the same for any file; ``default_policy`` is the catalog's default entry.
``catalog_choice("IXEMPRA-PA")`` is the effective-dated catalog (``worker.policy.catalog``): the version
in effect on a claim's date of service decides it; ``catalog_choice("IXEMPRA-PA/2020.09-1")`` pins one.
"""

from worker.policy.catalog import PolicyChoice, catalog_choice, load_catalog_dir
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
    "PolicyChoice",
    "ProductScope",
    "ProviderFacts",
    "ProviderStatus",
    "authorization_number",
    "catalog_choice",
    "catalog_policy",
    "catalog_refs",
    "decide",
    "default_policy",
    "load_catalog_dir",
    "load_policy",
]
