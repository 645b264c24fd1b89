"""What operators see: metrics, health endpoints, structured logs and the results report."""

__all__: list[str] = []
