"""Developer tools: the local Kafka broker launcher."""

__all__: list[str] = []
