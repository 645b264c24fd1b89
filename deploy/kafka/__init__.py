"""The local single-node KRaft broker: Maven-fetched jars, its launcher and its TLS material."""

__all__: list[str] = []
