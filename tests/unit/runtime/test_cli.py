"""The `shoal` program loads only the command it runs, and skips the collection at exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from runtime import cli
from runtime.commands import containers, images

# Modules a `shoal run` must not pay for: the image commands and registry client (the image
# is local), pyroute2 and the nft runner (loaded while the container's process is set up,
# and only for the bridge network), OpenSSL through hashlib, prometheus-client.
NOT_ON_THE_RUN_PATH = (
    "runtime.commands.images",
    "runtime.image.registry_client",
    "runtime.image.pull",
    "runtime.container.exec",
    "runtime.network.bridge",
    "pyroute2",
    "subprocess",
    "hashlib",
    "socket",
    "prometheus_client",
    "rich",
)


def _modules_after(args: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after `shoal ARGS` (which must not exit 1)."""
    probe = (
        "import json, sys\n"
        "from runtime.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_every_command_is_found_in_the_module_that_defines_it() -> None:
    defined = {c.name: m.__name__ for m in (images, containers) for c in m.COMMANDS}
    assert defined == cli.HOMES
    ctx = click.Context(cli.main)
    for name in cli.HOMES:
        command = cli.main.get_command(ctx, name)
        assert command is not None and command.name == name
    assert cli.main.get_command(ctx, "no-such-command") is None


def test_run_loads_only_the_container_commands() -> None:
    loaded = _modules_after(["run", "--help"])
    assert "runtime.commands.containers" in loaded
    assert loaded.isdisjoint(NOT_ON_THE_RUN_PATH), loaded & set(NOT_ON_THE_RUN_PATH)


def test_help_lists_every_command_but_the_hidden_one() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line}
    assert listed == set(cli.HOMES) - {"cleanup"}


def test_unknown_command_is_refused() -> None:
    result = CliRunner().invoke(cli.main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_inspect_looks_for_containers_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["--root", str(tmp_path), "inspect", "nothing-here"])
    assert result.exit_code == 1
    assert result.output == "shoal: error: no such object: nothing-here\n"
    assert containers.find_container in images.FINDERS
    assert images.FINDERS.count(containers.find_container) == 1


def test_objects_alive_at_exit_are_frozen_before_the_last_collection() -> None:
    # atexit runs the last registered first: shoal's handler, then this probe's.
    probe = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count()))\n"
        "from runtime.cli import main\n"
        "main(['--help'])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    frozen = int(out.stdout.split("frozen ")[1])
    assert frozen > 1000  # every object of the imported modules


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cpus", "nan"], "invalid CPU count 'nan': must be a number greater than 0"),
        (["--cpus", "inf"], "invalid CPU count 'inf': must be a number greater than 0"),
        (["--cpus", "0"], "invalid CPU count '0': must be a number greater than 0"),
        (["--cpus", "half"], "invalid CPU count 'half': expected a number, e.g. 0.5"),
        (["--memory", "99999999t"], "invalid size '99999999t': more than 8 EiB"),
        (["--tmpfs", "/tmp:size=lots"], "invalid size 'lots': expected e.g. 512, 64m, 1g"),
    ],
)
def test_run_refuses_bad_limits_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Before any container or image is touched: `shoal run --cpus nan` once ended in a
    traceback (its copy of parse_cpus lacked the isfinite check)."""
    result = CliRunner().invoke(cli.main, ["--root", str(tmp_path), "run", *args, "busybox"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not a traceback
    assert result.stderr == f"shoal: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_run_with_cpus_nan_in_a_real_shoal_process(tmp_path: Path) -> None:
    shoal = Path(sys.executable).parent / "shoal"
    result = subprocess.run(
        [str(shoal), "--root", str(tmp_path), "run", "--cpus", "nan", "busybox", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        result.stderr == "shoal: error: invalid CPU count 'nan': must be a number greater than 0\n"
    )
