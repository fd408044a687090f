"""The container's first process, between fork and exec: namespaces, rootfs, security, exec.

Runs in a child of the shim, which has already unshared the pid namespace, so this process
is PID 1 of the container. Everything is planned by the parent beforehand (`InitPlan`), so
this code only makes system calls. Any failure is written to the error pipe and ends the
process; a successful execve closes that pipe (CLOEXEC), which the engine reads as "started".
"""

from __future__ import annotations

import _socket  # the C module: the socket module's enums cost every start milliseconds
import contextlib
import fcntl
import os
import struct
import termios
from typing import NamedTuple, NoReturn

from runtime.container import syscalls as sc
from runtime.container.security import DEFAULT_CAP_MASK

DEVICES = (  # name, major, minor (character devices, mode 0666)
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
MASKED_FILES = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/interrupts",
)
MASKED_DIRS = ("/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


class BindSpec(NamedTuple):
    source: str  # host path
    target: str  # path inside the container
    readonly: bool = False
    tmpfs_size: int = 0  # source == "tmpfs": a tmpfs of this size (0 = default)


class InitPlan(NamedTuple):
    rootfs: str
    overlay_options: str
    hostname: str
    new_netns: bool
    binds: tuple[BindSpec, ...]  # /etc files first, then the user's mounts
    cgroup_procs: tuple[str, ...]
    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str
    last_cap: int
    tty: bool


class InitFds(NamedTuple):
    stdin: int
    stdout: int
    stderr: int
    ready_w: int  # "namespaces made": the engine may now wire the network namespace
    go_r: int  # the engine's "network ready"
    error_w: int  # CLOEXEC: closed by a successful execve


def _mkdirs(path: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, 0o755)


def _touch(path: str) -> None:
    if not os.path.lexists(path):
        _mkdirs(os.path.dirname(path))
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _lo_up() -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP))
    finally:
        s.close()


def _mount_rootfs(plan: InitPlan) -> None:
    root = plan.rootfs
    sc.mount("", "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.mount("overlay", root, "overlay", 0, plan.overlay_options)
    nosuid_noexec = sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV
    sc.mount("proc", f"{root}/proc", "proc", nosuid_noexec)
    sc.mount(
        "tmpfs", f"{root}/dev", "tmpfs", sc.MS_NOSUID | sc.MS_STRICTATIME, "mode=755,size=65536k"
    )
    for name, major, minor in DEVICES:
        path = f"{root}/dev/{name}"
        os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for sub in ("pts", "shm", "mqueue"):
        os.mkdir(f"{root}/dev/{sub}", 0o755)
    sc.mount(
        "devpts",
        f"{root}/dev/pts",
        "devpts",
        sc.MS_NOSUID | sc.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    sc.mount("shm", f"{root}/dev/shm", "tmpfs", nosuid_noexec, "mode=1777,size=65536k")
    sc.mount("mqueue", f"{root}/dev/mqueue", "mqueue", nosuid_noexec)
    for link, target in (
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{link}")
    if plan.tty:
        _touch(f"{root}/dev/console")
        sc.mount(os.ttyname(0), f"{root}/dev/console", None, sc.MS_BIND)
    sc.mount("sysfs", f"{root}/sys", "sysfs", nosuid_noexec | sc.MS_RDONLY)
    for bind in plan.binds:
        target = f"{root}{bind.target}"
        if bind.source == "tmpfs":
            _mkdirs(target)
            options = f"mode=1777,size={bind.tmpfs_size}" if bind.tmpfs_size else "mode=1777"
            sc.mount("tmpfs", target, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, options)
            continue
        if os.path.isdir(bind.source):
            _mkdirs(target)
        else:
            _touch(target)
        sc.mount(bind.source, target, None, sc.MS_BIND | sc.MS_REC)
        if bind.readonly:
            sc.mount("", target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)
    for path in MASKED_FILES:
        if os.path.exists(f"{root}{path}"):
            sc.mount("/dev/null", f"{root}{path}", None, sc.MS_BIND)
    for path in MASKED_DIRS:
        if os.path.isdir(f"{root}{path}"):
            sc.mount("tmpfs", f"{root}{path}", "tmpfs", sc.MS_RDONLY)
    for path in READONLY_PATHS:
        if os.path.exists(f"{root}{path}"):
            sc.mount(f"{root}{path}", f"{root}{path}", None, sc.MS_BIND | sc.MS_REC)
            sc.mount(
                "",
                f"{root}{path}",
                None,
                sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | nosuid_noexec,
            )
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount(".", sc.MNT_DETACH)
    os.chdir("/")


def _lookup_user(user: str) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups of `user` ("name", "uid", "name:group", "uid:gid"),
    read from the container's own /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            with open(path) as f:
                return [line.split(":") for line in f.read().splitlines() if line.count(":") >= 2]
        except FileNotFoundError:
            return []

    passwd, groups = table("/etc/passwd"), table("/etc/group")
    if name.isdigit():
        uid = int(name)
        gid = next((int(e[3]) for e in passwd if e[2] == name and len(e) > 3), 0)
    else:
        entry = next((e for e in passwd if e[0] == name and len(e) > 3), None)
        if entry is None:
            raise OSError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise OSError(f"unable to find group {group}: no matching entries in group file")
            gid = int(match[2])
    username = next((e[0] for e in passwd if e[2] == str(uid)), name)
    extra = [int(g[2]) for g in groups if len(g) > 3 and username in g[3].split(",")]
    return uid, gid, extra


def drop_privileges(user: str, last_cap: int, seccomp: sc.SockFprog | None) -> None:
    """Docker's default capabilities, the user's ids, no_new_privs, then seccomp (last)."""
    for cap in range(last_cap + 1):
        if not DEFAULT_CAP_MASK & (1 << cap):
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    sc.prctl(sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)
    sc.capset(DEFAULT_CAP_MASK, DEFAULT_CAP_MASK, DEFAULT_CAP_MASK)
    if user:
        uid, gid, extra = _lookup_user(user)
        os.setgroups(extra)
        os.setgid(gid)
        os.setuid(uid)  # a non-root uid loses every capability here
    else:
        os.setgroups([])
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp is not None:
        sc.load_seccomp(seccomp)


def run(plan: InitPlan, fds: InitFds, seccomp: sc.SockFprog | None) -> NoReturn:
    """Become the container's process; never returns."""
    stage = "setup"
    try:
        stage = "join cgroup"
        for procs in plan.cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        stage = "create namespaces"
        flags = sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWCGROUP
        sc.unshare(flags | (sc.CLONE_NEWNET if plan.new_netns else 0))
        os.write(fds.ready_w, b"1")
        os.close(fds.ready_w)
        if plan.new_netns:
            stage = "loopback"
            _lo_up()
        stage = "stdio"
        os.setsid()
        for target, source in ((0, fds.stdin), (1, fds.stdout), (2, fds.stderr)):
            os.dup2(source, target)
        if plan.tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        stage = "rootfs"
        _mount_rootfs(plan)
        sc.sethostname(plan.hostname)
        stage = "network"
        if os.read(fds.go_r, 1) != b"1":
            raise OSError("the engine gave up on this container before it started")
        os.close(fds.go_r)
        stage = "working directory"
        _mkdirs(plan.cwd)
        os.chdir(plan.cwd)
        stage = "security"
        drop_privileges(plan.user, plan.last_cap, seccomp)
        os.closerange(3, fds.error_w)
        os.closerange(fds.error_w + 1, 65536)
        stage = "exec"
        env = dict(item.split("=", 1) for item in plan.env)
        os.execvpe(plan.argv[0], list(plan.argv), env)
    except BaseException as exc:  # report, then end: nothing may unwind into the parent's code
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if stage == "exec":
            message = f"exec {plan.argv[0]}: {text}"
            code = 127 if isinstance(exc, FileNotFoundError) else 126
        else:
            message, code = f"{stage}: {text}", 1
        with contextlib.suppress(OSError):
            os.write(fds.error_w, message.encode()[:4000])
        os._exit(code)
    os._exit(1)  # unreachable: execvpe does not return
