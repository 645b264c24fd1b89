"""Partition state restored from Kafka on assignment (the duplicate filter first)."""

__all__: list[str] = []
