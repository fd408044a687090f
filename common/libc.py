"""Linux calls Python 3.11's os module lacks, through ctypes on the process's own libc.

Everything raises OSError with the real errno. These run between fork and exec too, so they
allocate little and take no Python-level locks.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "bpf": 321},
    "aarch64": {"pivot_root": 41, "capset": 91, "bpf": 280},
}[os.uname().machine]
SYS_OPENAT2 = 437  # these two have one number on every architecture (the unified table)
SYS_MOUNT_SETATTR = 442

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

_libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc; find_library forks ldconfig
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str, path: str | None = None) -> None:
    """OSError with the call's errno when `result` says it failed (negative)."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def mount(
    source: str, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {fstype or 'bind'} on {target}",
        target,
    )


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), "umount", target)


def unshare(flags: int) -> None:
    """Unshare namespaces of the calling thread (net and uts work per thread)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace open at `fd`."""
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname", name)


def syncfs(path: str | Path) -> None:
    """Flush everything written to the filesystem holding `path` (many files at once)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.syncfs(fd), "syncfs", str(path))
    finally:
        os.close(fd)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(
        _libc.syscall(_SYS["pivot_root"], new_root.encode(), put_old.encode()),
        "pivot_root",
        new_root,
    )


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result: int = _libc.prctl(option, arg2, arg3, arg4, arg5)
    _check(result, f"prctl({option})")
    return result


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_SYS["capset"], ctypes.byref(header), data), "capset")


class SockFprog(ctypes.Structure):
    """struct sock_fprog: a compiled BPF program for seccomp."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def make_fprog(bpf: bytes) -> tuple[SockFprog, ctypes.Array[ctypes.c_char]]:
    """Build a sock_fprog over `bpf` (keep the returned buffer alive while using it)."""
    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    return SockFprog(len(bpf) // 8, ctypes.cast(buffer, ctypes.c_void_p)), buffer


def load_seccomp(prog: SockFprog) -> None:
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
        "seccomp",
    )


def bpf(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """bpf(2) with the `union bpf_attr` in `attr` (its whole length is passed as its size);
    returns what the command returns (a program's fd for BPF_PROG_LOAD)."""
    result = int(_libc.syscall(_SYS["bpf"], command, attr, len(attr)))
    _check(result, f"bpf({command})")
    return result


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2): open `path` relative to `dir_fd` under the RESOLVE_* rules (CLOEXEC)."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    fd = _libc.syscall(
        SYS_OPENAT2,
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    _check(fd, "openat2", path)
    return int(fd)


def open_beneath(dir_fd: int, path: str, flags: int) -> int:
    """Open `path` below `dir_fd`; symlinks are followed only while they stay below it
    (absolute ones and `..` past it fail with EXDEV); /proc magic links never."""
    return openat2(dir_fd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open `path` as a process chrooted at `root_fd` would: absolute symlinks and `..`
    resolve inside it, never out of it; /proc magic links never."""
    return openat2(root_fd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def set_mount_attrs(mount_fd: int, attrs: int) -> None:
    """Set MOUNT_ATTR_* `attrs` on the mount `mount_fd` is the root of and on every mount
    below it (mount_setattr(2) with AT_RECURSIVE: a remount with MS_REC is not recursive)."""
    attr = _MountAttr(attrs, 0, 0, 0)
    _check(
        _libc.syscall(
            SYS_MOUNT_SETATTR,
            ctypes.c_int(mount_fd),
            ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
            ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        "mount_setattr",
    )
