"""Which devices a container may use: the device nodes made in its /dev and the cgroup
allowlist that the kernel enforces on every open and mknod, as runc's defaults.

Everything else (the host's disks above all) is refused by the kernel even when a device
node for it appears inside the container: on cgroup v1 through the `devices` controller
(deny all, then allow the list), on cgroup v2 through a BPF_CGROUP_DEVICE program attached
to the container's cgroup, built here instruction by instruction.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import NamedTuple

from common import libc

WILDCARD = -1
BLOCK, CHAR = "b", "c"


class Node(NamedTuple):
    """A character device made in every container's /dev (mode 0666)."""

    name: str
    major: int
    minor: int


NODES = (
    Node("null", 1, 3),
    Node("zero", 1, 5),
    Node("full", 1, 7),
    Node("random", 1, 8),
    Node("urandom", 1, 9),
    Node("tty", 5, 0),
)


class Rule(NamedTuple):
    """An allow rule of the device cgroup: type b|c, major/minor or WILDCARD, access of r/w/m."""

    type: str
    major: int
    minor: int
    access: str

    def v1_line(self) -> str:
        """As written to devices.allow: "c 1:3 rwm", "c 136:* rwm"."""

        def number(n: int) -> str:
            return "*" if n == WILDCARD else str(n)

        return f"{self.type} {number(self.major)}:{number(self.minor)} {self.access}"


ALLOWED = (
    Rule(CHAR, WILDCARD, WILDCARD, "m"),  # mknod of anything (opening it is another matter)
    Rule(BLOCK, WILDCARD, WILDCARD, "m"),
    *(Rule(CHAR, n.major, n.minor, "rwm") for n in NODES),
    Rule(CHAR, 5, 1, "rwm"),  # /dev/console
    Rule(CHAR, 5, 2, "rwm"),  # /dev/ptmx
    Rule(CHAR, 136, WILDCARD, "rwm"),  # /dev/pts/N
)


def v1_rules() -> list[tuple[str, str]]:
    """(file, line) writes that give a v1 devices cgroup exactly the allowlist."""
    return [("devices.deny", "a"), *(("devices.allow", r.v1_line()) for r in ALLOWED)]


# -- cgroup v2: a BPF_CGROUP_DEVICE program ---------------------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
DEV_TYPE = {BLOCK: 1, CHAR: 2}  # BPF_DEVCG_DEV_*
ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_*

# Opcodes (linux/bpf_common.h, linux/bpf.h).
LDX_W_MEM = 0x61  # dst = *(u32 *)(src + off)
MOV64_X = 0xBF  # dst = src
MOV64_K = 0xB7  # dst = imm
AND32_K = 0x54  # dst &= imm (32-bit)
RSH32_K = 0x74  # dst >>= imm (32-bit)
JNE_K = 0x55  # if dst != imm: pc += off
EXIT = 0x95

R0, R1, R2, R3, R4, R5 = range(6)


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: Rule) -> list[bytes]:
    """Allow and exit when the request (r2 type, r3 access, r4 major, r5 minor) matches."""
    mask = sum(ACCESS_BITS[a] for a in rule.access)
    checks: list[tuple[int, int, int, int]] = [  # (code, dst, src, imm); JNE jumps to the end
        (JNE_K, R2, 0, DEV_TYPE[rule.type]),
        (MOV64_X, R1, R3, 0),
        (AND32_K, R1, 0, ~mask & 0x7),  # access bits outside the rule's
        (JNE_K, R1, 0, 0),
    ]
    if rule.major != WILDCARD:
        checks.append((JNE_K, R4, 0, rule.major))
    if rule.minor != WILDCARD:
        checks.append((JNE_K, R5, 0, rule.minor))
    length = len(checks) + 2
    block = [
        _insn(code, dst, src, length - i - 1 if code == JNE_K else 0, imm)
        for i, (code, dst, src, imm) in enumerate(checks)
    ]
    return [*block, _insn(MOV64_K, R0, imm=1), _insn(EXIT)]


def bpf_program(rules: tuple[Rule, ...] = ALLOWED) -> bytes:
    """The device filter: 1 (allow) for a request some rule covers, else 0 (EPERM)."""
    prologue = [
        _insn(LDX_W_MEM, R2, R1, 0),
        _insn(MOV64_X, R3, R2),
        _insn(AND32_K, R2, imm=0xFFFF),  # device type
        _insn(RSH32_K, R3, imm=16),  # access
        _insn(LDX_W_MEM, R4, R1, 4),  # major
        _insn(LDX_W_MEM, R5, R1, 8),  # minor
    ]
    body = [insn for rule in rules for insn in _rule_block(rule)]
    return b"".join([*prologue, *body, _insn(MOV64_K, R0, imm=0), _insn(EXIT)])


BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2  # other programs (systemd's) on the way up keep applying too
ATTR_SIZE = 128
LOG_SIZE = 1 << 16


def _load(program: bytes) -> int:
    code = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(LOG_SIZE)
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    struct.pack_into(
        "<IIQQIIQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(program) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_),
        1,  # log level: the verifier says why when it refuses
        LOG_SIZE,
        ctypes.addressof(log),
    )
    try:
        return libc.bpf(BPF_PROG_LOAD, attr)
    except OSError as exc:
        said = log.value.decode(errors="replace").strip()
        raise OSError(exc.errno, f"{exc.strerror}: {said}" if said else exc.strerror) from None


def attach_v2_filter(cgroup_dir: str, rules: tuple[Rule, ...] = ALLOWED) -> None:
    """Attach the device filter to a cgroup v2 directory. The program lives as long as the
    cgroup (the kernel holds it), so no descriptor is kept."""
    prog_fd = _load(bpf_program(rules))
    try:
        dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(ATTR_SIZE)
            struct.pack_into(
                "<IIII", attr, 0, dir_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI
            )
            libc.bpf(BPF_PROG_ATTACH, attr)
        finally:
            os.close(dir_fd)
    finally:
        os.close(prog_fd)
