"""The forked shim never returns into the engine's code, whatever fails in it: a copy of the
engine's process running on (a second agent, a second test run) is the worst outcome."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from runtime.container import init, shim
from runtime.errors import ContainerError


def _plan() -> init.InitPlan:
    return init.InitPlan(
        rootfs="/nonexistent",
        overlay_options="",
        hostname="h",
        new_netns=False,
        binds=(),
        cgroup_procs=(),
        argv=("true",),
        env=(),
        cwd="/",
        user="",
        last_cap=40,
        tty=False,
    )


def test_the_shim_child_exits_even_when_reporting_its_failure_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def failing_shim(*_args: object) -> None:
        raise RuntimeError("the shim failed")

    def failing_report(*_args: object, **_kwargs: object) -> None:
        raise OSError("stderr is gone")

    forked: list[int] = []
    real_fork = os.fork

    def recording_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    parent = os.getpid()
    monkeypatch.setattr(shim, "_run_shim", failing_shim)
    monkeypatch.setattr(traceback, "print_exc", failing_report)
    monkeypatch.setattr(os, "fork", recording_fork)
    settings = shim.ShimSettings(
        log_path=str(tmp_path / "log"),
        exit_path=str(tmp_path / "exit"),
        oom_source="",
        oom_before=0,
        reexec_after=0,
        exit_command=(),
    )
    twin = tmp_path / "the child came back"
    try:
        with pytest.raises(ContainerError, match="shim failed before starting"):
            shim.launch(_plan(), None, settings, lambda _pid: None)
    finally:
        if os.getpid() != parent:  # the child returned into this test: say so, end it
            twin.touch()
            os._exit(3)
    assert not twin.exists()
    (child,) = forked
    with pytest.raises(ChildProcessError):  # launch reaped its failed shim: no zombie
        os.waitpid(child, os.WNOHANG)
