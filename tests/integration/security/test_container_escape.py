"""Escape probes: a container (or a hostile image) must reach no host device and write no
host file. Each test fails on the engine before the fix it guards (the hardening issue's
items 1 and 2); SECURITY.md points here."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.container import devices
from runtime.container.engine import Engine
from runtime.container.spec import ContainerSpec, Mount
from runtime.image.layer_store import LayerStore
from tests.integration.local_image import LocalImage
from tests.integration.runtime.image.crafted import Entry, unpack
from tests.polling import until

EPERM_TEXT = "Operation not permitted"


def _run(engine: Engine, image: LocalImage, script: str, **kwargs: object) -> str:
    """Run `sh -c script` to its end; its stdout and stderr, merged in order of lines."""
    kwargs.setdefault("network", "none")
    spec = ContainerSpec(image="busybox", command=("sh", "-c", script), **kwargs)  # type: ignore[arg-type]
    cid = engine.run(spec, image)
    engine.wait(cid, timeout=20)
    path = Path(engine.inspect(cid)["LogPath"])
    return "".join(json.loads(line)["log"] for line in path.read_text().splitlines())


def _facts(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _openable(kind: int, major: int, minor: int, scratch: Path) -> bool:
    node = scratch / f"probe-{major}-{minor}"
    os.mknod(node, kind | 0o600, os.makedev(major, minor))
    try:
        os.close(os.open(node, os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False
    finally:
        node.unlink()


def _a_host_block_device(scratch: Path) -> tuple[int, int]:
    """A block device that this (root, unconfined) test process can open: the probes below
    show that a container cannot, so the difference is Shoal's doing. (Some hosts refuse
    even root their root disk, so it is not simply the disk of /.)"""
    for entry in sorted(os.listdir("/sys/dev/block")):
        major, minor = (int(n) for n in entry.split(":"))
        if _openable(stat.S_IFBLK, major, minor, scratch):
            return major, minor
    raise AssertionError("no block device on this host can be opened, not even by root")


FUSE = (10, 229)  # a character device outside the allowlist that any process may open


# -- item 1: devices ------------------------------------------------------------------------


def test_a_container_cannot_make_a_device_node(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    major, minor = _a_host_block_device(tmp_path)
    out = _run(
        engine_on(),
        busybox,
        f"mknod /tmp/disk b {major} {minor} 2>&1; echo rc=$?; "
        "ls -l /tmp/disk 2>/dev/null | cut -c1 | sed 's/^/kind=/'",
    )
    facts = _facts(out)
    assert facts["rc"] != "0" and EPERM_TEXT in out, out
    assert "kind" not in facts  # nothing was made


def test_a_host_disk_node_handed_in_opens_nothing(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    """The device cgroup refuses the open even where a node exists: a bind-mounted host
    directory that holds one (the container itself can make none, see above)."""
    major, minor = _a_host_block_device(tmp_path)
    assert _openable(stat.S_IFCHR, *FUSE, tmp_path)
    hostdev = tmp_path / "hostdev"
    hostdev.mkdir()
    os.mknod(hostdev / "disk", stat.S_IFBLK | 0o666, os.makedev(major, minor))
    os.mknod(hostdev / "fuse", stat.S_IFCHR | 0o666, os.makedev(*FUSE))
    out = _run(
        engine_on(),
        busybox,
        "dd if=/hostdev/disk of=/dev/null bs=512 count=1 2>&1; echo disk=$?; "
        "dd if=/hostdev/fuse of=/dev/null bs=1 count=0 2>&1; echo fuse=$?",
        mounts=(Mount("bind", "/hostdev", str(hostdev)),),
    )
    facts = _facts(out)
    assert facts["disk"] != "0" and facts["fuse"] != "0", out
    assert out.count(EPERM_TEXT) == 2, out


def test_device_nodes_in_the_root_filesystem_open_nothing(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    """The root filesystem is nodev: even a node of an allowed device (1:3, null) that is
    part of an image cannot be opened from it, only the engine's own /dev."""
    layer = tmp_path / "layer"
    layer.mkdir()
    os.mknod(layer / "nullcopy", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    image = LocalImage([layer, *busybox.lower_dirs()], busybox.config)
    out = _run(
        engine_on(),
        image,
        "echo x > /nullcopy 2>&1; echo copy=$?; echo x > /dev/null; echo dev=$?; "
        "grep ' / / ' /proc/self/mountinfo | grep -q nodev && echo nodev=yes",
    )
    facts = _facts(out)
    assert facts == {"copy": "1", "dev": "0", "nodev": "yes"}, out
    assert "Permission denied" in out


def test_the_default_devices_still_work(
    engine_on: Callable[[], Engine], busybox: LocalImage
) -> None:
    script = (
        "echo x > /dev/null && echo null=ok; "
        'echo "zero=$(head -c 8 /dev/zero | wc -c)"; '
        'echo "urandom=$(head -c 8 /dev/urandom | wc -c)"; '
        'echo "random=$(head -c 8 /dev/random | wc -c)"; '
        "echo x > /dev/full 2>/dev/null || echo full=enospc; "
        "exec 3<>/dev/ptmx && echo ptmx=ok"
    )
    facts = _facts(_run(engine_on(), busybox, script))
    assert facts == {
        "null": "ok",
        "zero": "8",
        "urandom": "8",
        "random": "8",
        "full": "enospc",
        "ptmx": "ok",
    }


def _cgroup2_root() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _source, target, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(target)
    raise AssertionError("no cgroup2 hierarchy is mounted (every kernel Shoal supports has one)")


@pytest.fixture
def v2_cgroup() -> Iterator[Path]:
    path = _cgroup2_root() / f"shoal-devtest-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            os.kill(int(pid), 9)
        path.rmdir()


PROBE = """
import os, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write("0")
for path in sys.argv[2:]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print(path, "open")
    except OSError as exc:
        print(path, exc.strerror)
"""


def test_the_cgroup_v2_device_filter_refuses_a_host_block_device(
    v2_cgroup: Path, tmp_path: Path
) -> None:
    """The BPF_CGROUP_DEVICE program the engine attaches on cgroup v2 hosts, run by the
    kernel on a real cgroup v2 directory (this host's unified hierarchy)."""
    major, minor = _a_host_block_device(tmp_path)
    disk = tmp_path / "disk"
    os.mknod(disk, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    devices.attach_v2_filter(str(v2_cgroup))
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(v2_cgroup), "/dev/null", "/dev/urandom", str(disk)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert probe.stdout.splitlines() == [
        "/dev/null open",
        "/dev/urandom open",
        f"{disk} {EPERM_TEXT}",
    ]
    # The same probe outside the filtered cgroup opens the disk: the filter made the difference.
    os.close(os.open(disk, os.O_RDONLY))


def test_a_layer_never_makes_a_device_node(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "images")
    hostile = [
        Entry("disk", tarfile.BLKTYPE, mode=0o666, devmajor=8, devminor=0),
        Entry("mem", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=1),
        Entry("gone", tarfile.CHRTYPE, mode=0o000, devmajor=0, devminor=0),  # a whiteout
        Entry("pipe", tarfile.FIFOTYPE, mode=0o600),
        Entry("file", data=b"kept"),
    ]
    diff = store.diff_dir(unpack(store, tmp_path, hostile))
    kinds = {p.name: stat.S_IFMT(p.lstat().st_mode) for p in diff.iterdir()}
    assert kinds == {"gone": stat.S_IFCHR, "pipe": stat.S_IFIFO, "file": stat.S_IFREG}
    assert (diff / "gone").lstat().st_rdev == 0
    assert (diff / "file").read_bytes() == b"kept"
    everywhere = [p for p in (tmp_path / "images").rglob("*") if stat.S_ISBLK(p.lstat().st_mode)]
    assert everywhere == []


def test_capability_sets(engine_on: Callable[[], Engine], busybox: LocalImage) -> None:
    """Docker's bounding set without CAP_MKNOD; nothing inheritable (CVE-2022-24769), nothing
    ambient."""
    out = _run(engine_on(), busybox, "grep -E '^Cap(Inh|Bnd|Amb)' /proc/self/status")
    caps = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    assert caps["CapInh"] == 0 and caps["CapAmb"] == 0
    assert not caps["CapBnd"] & (1 << 27)  # CAP_MKNOD
    assert caps["CapBnd"] & (1 << 0)  # CAP_CHOWN: the set is otherwise Docker's


# -- item 2: mount targets ------------------------------------------------------------------


def test_mount_targets_resolve_inside_the_root_filesystem(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    """A hostile image's symlinks (absolute, and `..` past the root) under the targets of a
    service's mounts: the mounts land inside the container, the host directory stays empty."""
    victim = tmp_path / "victim"
    victim.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("from the source\n")
    (tmp_path / "file.txt").write_text("a file\n")
    layer = tmp_path / "layer"
    layer.mkdir()
    os.symlink(str(victim), layer / "abs")
    os.symlink("../" * 12 + str(victim).lstrip("/"), layer / "rel")
    image = LocalImage([layer, *busybox.lower_dirs()], busybox.config)
    mounts = (
        Mount("bind", "/abs/inner", str(source), readonly=True),
        Mount("bind", "/rel/file.txt", str(tmp_path / "file.txt")),
        Mount("tmpfs", "/abs/scratch"),
        Mount("volume", "/rel/deep/vol", "v1"),
    )
    out = _run(
        engine_on(),
        image,
        "cat /abs/inner/data.txt /rel/file.txt; "
        f"cat {victim}/inner/data.txt; "  # where the link leads, inside the container
        "touch /abs/inner/new 2>/dev/null || echo inner=readonly; "
        f"grep -q ' {victim}/scratch ' /proc/self/mountinfo && echo scratch=mounted",
        mounts=mounts,
    )
    assert out.splitlines()[:3] == ["from the source", "a file", "from the source"], out
    assert _facts(out) == {"inner": "readonly", "scratch": "mounted"}, out
    assert list(victim.iterdir()) == []
    assert not (source / "new").exists()


def test_a_container_cannot_redirect_its_own_mount_targets_to_the_host(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    """A container that made its /etc a symlink to a host path (what it can do to its own
    files) and is started again: /etc/hosts, hostname and resolv.conf are still mounted
    inside it, nothing is created on the host."""
    victim = tmp_path / "victim"
    victim.mkdir()
    engine = engine_on()
    cid = engine.create(
        ContainerSpec(image="busybox", command=("cat", "/etc/hostname"), network="none"),
        busybox,
    )
    upper = engine.store.find(cid).path / "upper"
    os.symlink(str(victim), upper / "etc")  # as `mv /etc /x; ln -s <host path> /etc` would
    engine.start(cid)
    assert engine.wait(cid, timeout=20)["exit_code"] == 0
    path = Path(engine.inspect(cid)["LogPath"])
    logged = "".join(json.loads(line)["log"] for line in path.read_text().splitlines())
    assert logged == cid[:12] + "\n"
    assert list(victim.iterdir()) == []


def _exec_output(engine: Engine, cid: str, script: str, scratch: Path) -> tuple[int, str]:
    """`shoal exec C sh -c script` as root: its exit code and output."""
    from runtime.container import exec as container_exec

    out = scratch / f"exec-{len(list(scratch.iterdir()))}.out"
    with open(out, "wb") as sink, open(os.devnull, "rb") as nothing:
        pid, _ = engine.exec(cid, ["sh", "-c", script], stdio=(nothing.fileno(), sink.fileno(),
                                                               sink.fileno()))  # fmt: skip
        code = container_exec.wait(pid)
    return code, out.read_text()


def test_shoal_exec_never_shows_the_host_interpreter_to_the_container(
    engine_on: Callable[[], Engine], busybox: LocalImage, tmp_path: Path
) -> None:
    """`shoal exec` sets up inside the container as the host's Python before it runs the
    command (CVE-2019-5736's pattern: a container process that opens /proc/PID/exe of that
    process holds the host's interpreter). Here it is held there, reading a FIFO the
    container put at /etc/passwd for the user lookup; the container's root finds it in its
    /proc and must not read where its exe points, nor reach its descriptors."""
    from runtime.container import exec as container_exec

    engine = engine_on()
    script = "rm /etc/passwd && mkfifo /etc/passwd && touch /tmp/ready && exec sleep 1000"
    cid = engine.run(
        ContainerSpec(image="busybox", command=("sh", "-c", script), network="none"), busybox
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        until(
            lambda: _exec_output(engine, cid, "test -e /tmp/ready", scratch)[0],
            "the FIFO in place",
            holds=lambda code: code == 0,
        )
        started: list[int] = []
        nothing = os.open(os.devnull, os.O_RDWR)

        def held_exec() -> None:  # returns once the command runs, after the FIFO is fed
            started.append(engine.exec(cid, ["true"], stdio=(nothing,) * 3, user="nobody")[0])

        holder = threading.Thread(target=held_exec)
        holder.start()
        probe = (
            "for p in /proc/[0-9]*; do "
            "  [ $p = /proc/$$ ] && continue; "
            "  grep -q python $p/cmdline 2>/dev/null || continue; "
            "  echo found=$p; readlink $p/exe && echo exe=readable; "
            "  for f in $p/fd/*; do readlink $f >/dev/null 2>&1 && echo fds=readable && break; "
            "  done; "
            "done; true"
        )
        seen = until(
            lambda: _exec_output(engine, cid, probe, scratch)[1],
            "the held exec process in the container's /proc",
            holds=lambda out: "found=" in out,
        )
        assert "exe=readable" not in seen, seen
        assert "fds=readable" not in seen, seen
        _exec_output(engine, cid, "echo nobody:x:65534:65534::/:/bin/false > /etc/passwd", scratch)
        holder.join(timeout=60)
        os.close(nothing)
        assert started and container_exec.wait(started[0]) == 0
    finally:
        engine.remove(cid, force=True)
