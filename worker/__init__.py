"""claims-worker: adjudicates pharmacy claims from Kafka against prior-authorization policies."""

__all__ = ["__version__"]

__version__ = "0.1.0"
