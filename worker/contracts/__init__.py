"""Contracts with the outside: Avro schemas, the codec, the claim model and the records the worker writes."""

__all__: list[str] = []
