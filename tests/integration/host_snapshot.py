"""What the lab may touch on the host, captured so a test can demand it comes back unchanged."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from deploy import cgroups, mounts, namespaces


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
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                out[field] = (sorted(mine - theirs), sorted(theirs - mine))
        return out
