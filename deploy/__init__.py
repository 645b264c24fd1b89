"""Deployment files and the developer tools that start things locally (not part of the wheel)."""

__all__: list[str] = []
