"""The policy catalog: ``<policy_id>/<version>.json`` data files, read by ``worker.policy.catalog_policy``."""

__all__: list[str] = []
