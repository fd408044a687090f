"""swarmd's command line: durations parse with the CLIs' one grammar (common.units)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from node.cli import main


def test_a_bad_duration_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["init", "-d", str(tmp_path), "--advertise-addr", "10.0.0.1", "--heartbeat-period", "5x"],
    )
    assert result.exit_code == 2
    assert "invalid duration '5x': expected a number and a unit" in result.stderr
    assert list(tmp_path.iterdir()) == []
