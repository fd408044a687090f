"""The container's first process, between fork and exec: namespaces, rootfs, security, exec.

Runs in a child of the shim, which has already unshared the pid namespace, so this process
is PID 1 of the container. Everything is planned by the parent beforehand (`InitPlan`), so
this code only makes system calls. Any failure is written to the error pipe and ends the
process; a successful execve closes that pipe (CLOEXEC), which the engine reads as "started".
"""

from __future__ import annotations

import _socket  # the C module: the socket module's enums cost every start milliseconds
import contextlib
import errno
import fcntl
import os
import struct
import termios
from typing import NamedTuple, NoReturn

from common import libc
from runtime.container import devices
from runtime.container.security import DEFAULT_CAP_MASK

MASKED_FILES = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/interrupts",
)
MASKED_DIRS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/scsi",
    "/sys/firmware",
    # RAPL energy counters: a side channel on what other processes compute (CVE-2020-8694).
    "/sys/devices/virtual/powercap",
)
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


def _lo_up() -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP))
    finally:
        s.close()


class _Root:
    """The container's root filesystem before pivot_root, where the host is still in view.

    Every path is resolved inside the root (openat2 RESOLVE_IN_ROOT), as a process chrooted
    there would see it: an image's symlink (absolute, or `..` past the root) cannot lead a
    mount or a created file onto the host. Mounts are made on the resolved object through
    its /proc/self/fd magic link, never by path."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def open(self, path: str, directory: bool, create: bool = True) -> int:
        """An O_PATH fd of `path`. Missing components are made (directories 0755, the last
        an empty 0644 file unless `directory`) in parents resolved inside the root; a
        dangling symlink on the way is followed inside the root, as a chrooted mkdir -p."""
        flags = os.O_PATH | (os.O_DIRECTORY if directory else 0)
        for _ in range(MAX_SYMLINKS):
            try:
                return libc.open_in_root(self.fd, path, flags)
            except FileNotFoundError:
                if not create:
                    raise
            path = self._make(path, directory)
        raise OSError(errno.ELOOP, f"too many symlinks resolving {path}")

    def _make(self, path: str, directory: bool) -> str:
        """Make the first missing component of `path`, and those after it; returns the path
        to open: `path` itself, or the path a dangling symlink on the way leads to."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        parent = os.dup(self.fd)
        try:
            for depth, name in enumerate(parts, 1):
                sub = "/".join(parts[:depth])
                try:
                    found = libc.open_in_root(self.fd, sub, os.O_PATH)
                except FileNotFoundError:
                    try:
                        target = os.readlink(name, dir_fd=parent)
                    except OSError:  # not a symlink (EINVAL): a name to make
                        target = None
                    if target is not None:  # dangling: go where it points, inside the root
                        base = "" if target.startswith("/") else "/".join(parts[: depth - 1])
                        return "/".join([base, target, *parts[depth:]])
                    if depth == len(parts) and not directory:
                        os.close(os.open(name, _NEW_FILE, 0o644, dir_fd=parent))
                    else:
                        os.mkdir(name, 0o755, dir_fd=parent)
                    found = libc.open_in_root(self.fd, sub, os.O_PATH)
                os.close(parent)
                parent = found
        finally:
            os.close(parent)
        return path

    def mount(
        self,
        source: str,
        target: str,
        fstype: str | None,
        flags: int,
        data: str | None = None,
        directory: bool = True,
    ) -> None:
        fd = self.open(target, directory)
        try:
            libc.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
        except OSError as exc:
            message = f"mount {fstype or 'bind'} on {target}: {exc.strerror}"
            raise OSError(exc.errno, message) from None
        finally:
            os.close(fd)

    def protect(self, target: str, attrs: int) -> None:
        """Set mount attributes (read-only, ...) on the mount at `target` and all below it."""
        fd = self.open(target, directory=False, create=False)
        try:
            libc.set_mount_attrs(fd, attrs)
        finally:
            os.close(fd)

    def exists(self, path: str, directory: bool = False) -> bool:
        try:
            os.close(self.open(path, directory, create=False))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True


MAX_SYMLINKS = 40  # as the kernel's own limit
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
PROC_ATTRS = (
    libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | libc.MOUNT_ATTR_NOEXEC
)


def _mount_rootfs(plan: InitPlan) -> None:
    libc.mount("", "/", None, libc.MS_REC | libc.MS_PRIVATE)
    # nodev: a device node in the image or the container's own files opens nothing.
    libc.mount("overlay", plan.rootfs, "overlay", libc.MS_NODEV, plan.overlay_options)
    root = _Root(plan.rootfs)
    nosuid_noexec = libc.MS_NOSUID | libc.MS_NOEXEC | libc.MS_NODEV
    root.mount("proc", "/proc", "proc", nosuid_noexec)
    root.mount(
        "tmpfs", "/dev", "tmpfs", libc.MS_NOSUID | libc.MS_STRICTATIME, "mode=755,size=65536k"
    )
    dev = root.open("/dev", directory=True)  # the tmpfs just made: nothing of the image's
    try:
        for node in devices.NODES:
            os.mknod(node.name, 0o666 | 0o020000, os.makedev(node.major, node.minor), dir_fd=dev)
            os.chmod(node.name, 0o666, dir_fd=dev)
        for sub in ("pts", "shm", "mqueue"):
            os.mkdir(sub, 0o755, dir_fd=dev)
        for link, target in (
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            os.symlink(target, link, dir_fd=dev)
    finally:
        os.close(dev)
    root.mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc.MS_NOSUID | libc.MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )
    root.mount("shm", "/dev/shm", "tmpfs", nosuid_noexec, "mode=1777,size=65536k")
    root.mount("mqueue", "/dev/mqueue", "mqueue", nosuid_noexec)
    if plan.tty:
        root.mount(os.ttyname(0), "/dev/console", None, libc.MS_BIND, directory=False)
    root.mount("sysfs", "/sys", "sysfs", nosuid_noexec | libc.MS_RDONLY)
    for bind in plan.binds:
        if bind.source == "tmpfs":
            options = f"mode=1777,size={bind.tmpfs_size}" if bind.tmpfs_size else "mode=1777"
            root.mount("tmpfs", bind.target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, options)
            continue
        is_dir = os.path.isdir(bind.source)  # the host's path, given by the user
        root.mount(bind.source, bind.target, None, libc.MS_BIND | libc.MS_REC, directory=is_dir)
        if bind.readonly:
            root.protect(bind.target, libc.MOUNT_ATTR_RDONLY)
    for path in MASKED_FILES:
        if root.exists(path):
            root.mount("/dev/null", path, None, libc.MS_BIND, directory=False)
    for path in MASKED_DIRS:
        if root.exists(path, directory=True):
            root.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY)
    for path in READONLY_PATHS:
        if root.exists(path):
            fd = root.open(path, directory=False, create=False)
            try:
                here = f"/proc/self/fd/{fd}"
                libc.mount(here, here, None, libc.MS_BIND | libc.MS_REC)
            finally:
                os.close(fd)
            root.protect(path, PROC_ATTRS)
    os.fchdir(root.fd)
    os.close(root.fd)
    libc.pivot_root(".", ".")
    libc.umount(".", libc.MNT_DETACH)
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


def drop_privileges(user: str, last_cap: int, seccomp: libc.SockFprog | None) -> None:
    """Docker's default capabilities, the user's ids, no_new_privs, then seccomp (last).
    The inheritable set stays empty (CVE-2022-24769): a program with file capabilities
    gains none through it."""
    for cap in range(last_cap + 1):
        if not DEFAULT_CAP_MASK & (1 << cap):
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    libc.capset(DEFAULT_CAP_MASK, DEFAULT_CAP_MASK, 0)
    if user:
        uid, gid, extra = _lookup_user(user)
        os.setgroups(extra)
        os.setgid(gid)
        os.setuid(uid)  # a non-root uid loses every capability here
    else:
        os.setgroups([])
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    if seccomp is not None:
        libc.load_seccomp(seccomp)


def run(plan: InitPlan, fds: InitFds, seccomp: libc.SockFprog | None) -> NoReturn:
    """Become the container's process; never returns."""
    stage = "setup"
    try:
        stage = "join cgroup"
        for procs in plan.cgroup_procs:
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, b"0")
            os.close(fd)
        stage = "create namespaces"
        flags = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC | libc.CLONE_NEWCGROUP
        libc.unshare(flags | (libc.CLONE_NEWNET if plan.new_netns else 0))
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
        libc.sethostname(plan.hostname)
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
