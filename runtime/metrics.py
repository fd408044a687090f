"""The engine's Prometheus metrics (prometheus-client), exported by swarmd.

All in one module so every part of the runtime counts into the same registry and a reader
sees at a glance what the engine measures. Until a process that exports metrics calls
`enable()`, they are no-ops: the `shoal` CLI exports nothing, and importing
prometheus-client would cost it tens of milliseconds on every container start.
"""

from __future__ import annotations

from typing import Any


class _Off:
    """Stands in for a metric until `enable()`: accepts every update, records nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def labels(self, *values: str) -> _Off:
        return self


PULL_BYTES: Any = _Off()
PULL_SECONDS: Any = _Off()
PULL_ERRORS: Any = _Off()
CONTAINER_STARTS: Any = _Off()
CONTAINER_START_ERRORS: Any = _Off()
CONTAINER_START_SECONDS: Any = _Off()
CONTAINER_EXITS: Any = _Off()


def enable() -> None:
    """Create the real metrics in prometheus-client's default registry (idempotent)."""
    global PULL_BYTES, PULL_SECONDS, PULL_ERRORS, CONTAINER_STARTS, CONTAINER_START_ERRORS
    global CONTAINER_START_SECONDS, CONTAINER_EXITS
    if not isinstance(CONTAINER_STARTS, _Off):
        return
    from prometheus_client import Counter, Histogram

    PULL_BYTES = Counter("shoal_runtime_pull_bytes", "Bytes of blobs downloaded from registries")
    PULL_SECONDS = Histogram(
        "shoal_runtime_pull_seconds",
        "Time to pull an image (manifest, config and layers, unpacked)",
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    )
    PULL_ERRORS = Counter("shoal_runtime_pull_errors", "Image pulls that failed")
    CONTAINER_STARTS = Counter("shoal_runtime_container_starts", "Containers started")
    CONTAINER_START_ERRORS = Counter(
        "shoal_runtime_container_start_errors", "Container starts that failed"
    )
    CONTAINER_START_SECONDS = Histogram(
        "shoal_runtime_container_start_seconds",
        "Time from a start request until the container's process runs",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    )
    CONTAINER_EXITS = Counter("shoal_runtime_container_exits", "Containers that exited", ["reason"])
