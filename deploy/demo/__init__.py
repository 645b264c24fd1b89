"""The `make run` demo and its synthetic NPPES sample (developer tools, not part of the wheel)."""

__all__: list[str] = []
