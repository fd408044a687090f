"""What connects a container to the bridge, and the container ids that may name one."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from runtime.network.errors import NetworkError
from runtime.network.ports import PortMapping

CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_container_id(container_id: str) -> None:
    """Container ids end up in interface names and rule comments: plain names only."""
    if not isinstance(container_id, str) or not CONTAINER_ID_RE.match(container_id):
        raise NetworkError(
            f"invalid container id {container_id!r}: use 1-128 letters, digits, '_', '.' "
            "or '-', starting with a letter or digit"
        )


@dataclass(frozen=True)
class Attachment:
    """A container's place on the bridge: `ip`/`prefixlen` on its eth0, `mac`, the host-side
    veth name and the ports published to it."""

    ip: str
    prefixlen: int
    gateway: str
    mac: str
    host_veth: str
    ports: tuple[PortMapping, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ports"] = [asdict(port) for port in self.ports]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        return cls(
            ip=str(data["ip"]),
            prefixlen=int(data["prefixlen"]),
            gateway=str(data["gateway"]),
            mac=str(data["mac"]),
            host_veth=str(data["host_veth"]),
            ports=tuple(PortMapping(**port) for port in data["ports"]),
        )
