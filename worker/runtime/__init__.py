"""The running worker: Kafka clients, the transactional session and the consume-decide-publish loop."""

__all__: list[str] = []
