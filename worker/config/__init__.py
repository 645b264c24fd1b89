"""Configuration: the one ``Settings`` object, read once from the environment."""

__all__: list[str] = []
