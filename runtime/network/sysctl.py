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


BRIDGE_NETFILTER = (
    "bridge-nf-call-iptables",
    "bridge-nf-call-ip6tables",
    "bridge-nf-call-arptables",
)


def bridge_netfilter_off() -> None:
    """Frames crossing a bridge of this namespace skip the IP firewall hooks (br_netfilter,
    when loaded, sends them through; a namespace without rules for them pays ~1 us a round
    trip for nothing)."""
    if not (PROC_SYS_NET / "bridge").is_dir():
        return  # br_netfilter is not loaded: nothing to turn off
    for key in BRIDGE_NETFILTER:
        write(f"bridge/{key}", "0")
