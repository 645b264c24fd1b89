"""Prior-authorization policies as data files (one JSON file per policy version), read by worker.policy."""

__all__: list[str] = []
