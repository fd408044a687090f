"""A fake registry per test, and clients and stores pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.runtime.image.fake_registry import FakeRegistry


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    with FakeRegistry() as fake:
        yield fake
