"""Capabilities and the default seccomp profile (Docker's default, built with libseccomp).

The profile is compiled to BPF once per engine root and cached, so starting a container only
loads bytes: building a filter of ~350 rules takes milliseconds the start path cannot spare.
"""

from __future__ import annotations

import errno
import os
import zlib
from pathlib import Path

# Docker's default capability set without CAP_MKNOD, as podman's (numbers from
# linux/capability.h): a container that could mknod could leave a device node for the host's
# disk in a bind-mounted host directory, where the device cgroup no longer guards it.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
DEFAULT_CAP_MASK = sum(1 << n for n in DEFAULT_CAPS.values())


def last_cap() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


# Allowed for every container, as in Docker's default profile; the rest fail with EPERM.
ALLOWED_SYSCALLS = """
accept accept4 access adjtimex alarm arch_prctl bind brk cachestat capget capset chdir chmod
chown clock_adjtime clock_getres clock_gettime clock_nanosleep close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_pwait
epoll_pwait2 epoll_wait eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2
fadvise64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchownat fcntl
fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync
ftruncate futex futex_requeue futex_wait futex_waitv futex_wake futimesat getcpu getcwd
getdents getdents64 getegid geteuid getgid getgroups getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresuid getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getxattr
inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents ioprio_get ioprio_set io_setup io_submit kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr
llistxattr lremovexattr lseek lsetxattr lstat madvise map_shadow_stack membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
modify_ldt mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink
mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
nanosleep newfstatat open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 ptrace process_vm_readv process_vm_writev pwrite64 pwritev pwritev2
read readahead readlink readlinkat readv recvfrom recvmmsg recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
sched_getaffinity sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min
sched_getscheduler sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop sendfile
sendmmsg sendmsg sendto setfsgid setfsuid setgid setgroups setitimer setpgid setpriority
setregid setresgid setresuid setreuid setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setxattr shmat shmctl shmdt shmget shutdown
sigaltstack signalfd signalfd4 socketpair splice stat statfs statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill
truncate umask uname unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid
write writev chroot
""".split()
# personality(2) only with the harmless personas Docker allows.
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)
# socket(2): every address family but AF_ALG (38) and AF_VSOCK (40), as Docker's profile.
BLOCKED_SOCKET_FAMILIES = (38, 40)
MAX_SOCKET_FAMILY = 46
# clone(2) without namespace flags (containers lack CAP_SYS_ADMIN); clone3 says ENOSYS so
# libcs fall back to clone, whose flags seccomp can see.
CLONE_NAMESPACE_FLAGS = 0x7E020000


def _build() -> bytes:
    import tempfile  # imported here, as pyseccomp: only needed when the cache is cold

    import pyseccomp as sc

    filt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    for name in ALLOWED_SYSCALLS:
        try:
            filt.add_rule(sc.ALLOW, name)
        except (ValueError, RuntimeError, OSError):
            continue  # unknown to this libseccomp: the kernel default (EPERM) applies
    for persona in PERSONALITIES:
        filt.add_rule(sc.ALLOW, "personality", sc.Arg(0, sc.EQ, persona))
    for family in range(1, MAX_SOCKET_FAMILY):
        if family not in BLOCKED_SOCKET_FAMILIES:
            filt.add_rule(sc.ALLOW, "socket", sc.Arg(0, sc.EQ, family))
    filt.add_rule(sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0))
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        filt.export_bpf(out)
        out.seek(0)
        return out.read()


def _profile_key() -> str:
    text = " ".join(
        [
            *ALLOWED_SYSCALLS,
            repr(PERSONALITIES),
            repr(BLOCKED_SOCKET_FAMILIES),
            hex(CLONE_NAMESPACE_FLAGS),
            os.uname().machine,
        ]
    )
    return f"{zlib.crc32(text.encode()):08x}"  # tells versions apart; hashlib loads OpenSSL


def default_profile_bpf(cache_dir: Path) -> bytes:
    """The compiled default profile, from the cache or built (and cached) now."""
    path = cache_dir / f"seccomp-default-{_profile_key()}.bpf"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    bpf = _build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(bpf)
    os.replace(tmp, path)
    return bpf
