"""What the lab may touch on the host, captured so a test can demand it comes back unchanged."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from deploy import cgroups, mounts, namespaces

# Labs of test runs are named st<pid>-...; another run's labs come and go on their own.
_RUN_LAB = re.compile(r"\bst(\d+)-")


def _foreign(entry: object) -> bool:
    """True for a resource of another test run that is running concurrently (or the shared
    parent cgroup that such a run may create and remove)."""
    if str(entry).endswith("/swarm-machine"):
        return True
    match = _RUN_LAB.search(str(entry))
    return match is not None and int(match.group(1)) != os.getpid()


@dataclass(frozen=True)
class HostSnapshot:
    netns: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[tuple[str, int]]  # (mount point, how many mounts stacked there)
    cgroups: frozenset[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        with IPRoute() as ipr:
            links = frozenset(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links())
        netns_dir = namespaces.NETNS_DIR
        netns = frozenset(os.listdir(netns_dir)) if netns_dir.is_dir() else frozenset()
        cgroup_dirs = frozenset(
            str(Path(dirpath))
            for hier in cgroups.hierarchies()
            for dirpath, _dirs, _files in os.walk(hier.mountpoint)
        )
        return cls(
            netns=netns,
            links=links,
            mounts=frozenset(Counter(mounts.mountpoints()).items()),
            cgroups=cgroup_dirs,
        )

    def difference(self, other: HostSnapshot) -> dict[str, tuple[list[object], list[object]]]:
        """Per field: (only in self, only in other); empty when the host is unchanged."""
        out: dict[str, tuple[list[object], list[object]]] = {}
        for field in ("netns", "links", "mounts", "cgroups"):
            mine = {e for e in getattr(self, field) if not _foreign(e)}
            theirs = {e for e in getattr(other, field) if not _foreign(e)}
            if mine != theirs:
                out[field] = (sorted(mine - theirs), sorted(theirs - mine))
        return out
