"""openat2(2) through ctypes (Python 3.11 has no binding): open a path below a directory,
with the kernel refusing any resolution that would leave it."""

from __future__ import annotations

import ctypes
import os

SYS_OPENAT2 = 437  # x86_64, arm64 and every architecture of the unified syscall table
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


def open_beneath(dir_fd: int, path: str, flags: int) -> int:
    """Open `path` relative to `dir_fd`; symlinks are followed only while they stay below
    `dir_fd` (absolute ones and `..` past it fail with EXDEV); /proc magic links never.
    Raises OSError with the kernel's errno."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(
        SYS_OPENAT2,
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)
