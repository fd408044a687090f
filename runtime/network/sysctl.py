"""Kernel settings of the calling thread's network namespace.

/proc/sys/net is resolved against the network namespace of the thread that opens it (checked
here: a thread that setns'es sees its new namespace's values), so writes land in the
namespace the engine runs in, never the host's when the engine runs in a lab machine.
"""

from __future__ import annotations

from pathlib import Path

from runtime.network.errors import NetworkError

PROC_SYS_NET = Path("/proc/sys/net")


def write(key: str, value: str) -> None:
    """Set `key` (relative to /proc/sys/net, e.g. "ipv4/ip_forward") unless it already is."""
    path = PROC_SYS_NET / key
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to {value}: {exc.strerror}") from None


def read(key: str) -> str:
    return (PROC_SYS_NET / key).read_text().strip()
