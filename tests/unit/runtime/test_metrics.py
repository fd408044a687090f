"""Metrics stay off (and prometheus-client unloaded) until a process turns them on."""

from __future__ import annotations

import subprocess
import sys

import pytest
from prometheus_client import REGISTRY

from runtime import metrics


def test_off_until_enabled() -> None:
    probe = (
        "import sys; from runtime import metrics; metrics.CONTAINER_STARTS.inc(); "
        "metrics.CONTAINER_EXITS.labels('oom').inc(); "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("repeat", [1, 2])
def test_enable_is_idempotent_and_counts(repeat: int) -> None:
    metrics.enable()
    metrics.enable()
    before = REGISTRY.get_sample_value("shoal_runtime_container_starts_total") or 0.0
    metrics.CONTAINER_STARTS.inc()
    assert REGISTRY.get_sample_value("shoal_runtime_container_starts_total") == before + 1
