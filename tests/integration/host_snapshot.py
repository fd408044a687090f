"""What the lab may touch on the host, captured so a test can demand it comes back unchanged."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from common import namespaces
from deploy import cgroups, mounts
from deploy.state import Storage

OWN_PREFIX = f"st{os.getpid()}-"  # the labs of this test run (conftest's RUN_PREFIX)


def _other_labs() -> frozenset[str]:
    """Labs of other test runs or benchmarks, which come and go on their own meanwhile."""
    return frozenset(rec.name for rec in Storage().labs() if not rec.name.startswith(OWN_PREFIX))


def _of_lab(entry: object, labs: frozenset[str]) -> bool:
    """True for a resource of one of `labs` (or the shared parent cgroup such a lab may
    create and remove)."""
    text = str(entry)
    if text.endswith("/swarm-machine"):
        return True
    return any(re.search(rf"(^|/|'){re.escape(lab)}-", text) for lab in labs)


@dataclass(frozen=True)
class HostSnapshot:
    netns: frozenset[str]
    links: frozenset[str]
    mounts: frozenset[tuple[str, int]]  # (mount point, how many mounts stacked there)
    cgroups: frozenset[str]
    other_labs: frozenset[str]

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
            other_labs=_other_labs(),
        )

    def difference(self, other: HostSnapshot) -> dict[str, tuple[list[object], list[object]]]:
        """Per field: (only in self, only in other); empty when the host is unchanged."""
        out: dict[str, tuple[list[object], list[object]]] = {}
        labs = self.other_labs | other.other_labs
        for field in ("netns", "links", "mounts", "cgroups"):
            mine = {e for e in getattr(self, field) if not _of_lab(e, labs)}
            theirs = {e for e in getattr(other, field) if not _of_lab(e, labs)}
            if mine != theirs:
                out[field] = (sorted(mine - theirs), sorted(theirs - mine))
        return out
