"""Tables: aligned columns, never cut for a pipe or a file."""

from __future__ import annotations

import pytest

from common.tables import print_table


def test_columns_are_aligned_and_long_cells_are_never_cut(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long = "x" * 300
    print_table(["NAME", "IMAGE"], [["web", long], ["a-longer-name", "busybox"]])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["NAME", "IMAGE"]
    assert lines[1].split() == ["web", long]
    assert lines[0].index("IMAGE") == lines[1].index(long) == lines[2].index("busybox")
