"""Prior-authorization policy decisions: ``decide(claim, decided_at)`` is the only entry point.

A policy is data (``worker/policies/*.json``) plus a small evaluator: ``load_policy`` validates and
compiles a file into a ``Policy``; ``default_policy`` is the packaged Ixempra policy, loaded once.
"""

from worker.policy.decision import decide
from worker.policy.definition import Policy, default_policy, load_policy

__all__ = ["Policy", "decide", "default_policy", "load_policy"]
