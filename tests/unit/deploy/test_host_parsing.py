"""Reading the host's mount table and cgroup hierarchies."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import cgroups, mounts, processes
from deploy.errors import MachineError

HYBRID = """\
24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
37 30 0:33 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
90 34 0:30 / /mnt/memory-again rw - cgroup cgroup rw,memory
91 34 0:30 /sub /mnt/memory-sub rw - cgroup cgroup rw,memory
"""


def test_hybrid_hierarchies_are_found_once_each() -> None:
    found = {h.mountpoint: h for h in cgroups.hierarchies(HYBRID)}
    assert set(found) == {
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup/memory"),
        Path("/sys/fs/cgroup/cpu,cpuacct"),
        Path("/sys/fs/cgroup/cpuset"),
        Path("/sys/fs/cgroup/systemd"),
    }
    assert found[Path("/sys/fs/cgroup/unified")].version == 2
    assert found[Path("/sys/fs/cgroup/cpu,cpuacct")].controllers == {"cpu", "cpuacct"}
    assert found[Path("/sys/fs/cgroup/systemd")].controllers == {"xattr", "name=systemd"}


def test_pure_v2_host() -> None:
    text = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
    (only,) = cgroups.hierarchies(text)
    assert (only.mountpoint, only.version) == (Path("/sys/fs/cgroup"), 2)


def test_mountpoints_unescape_and_select_below() -> None:
    text = (
        "40 1 0:50 / /var/lib/m/state/with\\040space rw - tmpfs tmpfs rw\n"
        "41 1 0:51 / /var/lib/m/state rw - tmpfs tmpfs rw\n"
        "42 1 0:52 / /var/lib/m/statefile rw - tmpfs tmpfs rw\n"
    )
    points = mounts.mountpoints(text)
    assert points[0] == "/var/lib/m/state/with space"
    assert mounts.mounts_below(Path("/var/lib/m/state"), points) == points[:2]
    assert mounts.mounts_below(Path("/var/lib/m/other"), points) == []


def test_an_exiting_process_shown_as_pid_0_is_never_a_pid() -> None:
    # The kernel prints 0 for a process whose pid is gone as cgroup.procs is read; kill(0)
    # would signal the caller's whole process group.
    assert cgroups._live_pids("12\n0\n345\n") == {12, 345}


def test_stop_all_refuses_to_signal_a_process_group() -> None:
    with pytest.raises(MachineError, match="refusing to signal pid 0"):
        processes.stop_all(lambda: [0])
