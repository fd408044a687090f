"""The bridge network's state: every attached container and its address, in one JSON file.

Allocating an address and recording the attachment is one atomic write, so a crash leaves
either both or neither. The caller holds the network lock (`lock.exclusive`) around a
load-change-save cycle, so two engines sharing the directory never hand out one address
twice. A record is saved before the veth and port rules it names are made, and removed only
after they are gone: whatever a crashed engine left behind can still be found and undone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from runtime.network.attachment import Attachment, check_container_id
from runtime.network.errors import NetworkError
from runtime.network.ipam import lowest_free
from runtime.network.state_files import read_json, write_json

FORMAT_VERSION = 1


class NetworkState:
    """Attachments of one subnet, loaded from `path` (empty when it does not exist)."""

    def __init__(self, path: Path, network: IPv4Network) -> None:
        self.path = path
        self.network = network
        self._endpoints: dict[str, Attachment] = {}
        data = read_json(path)
        if data is not None:
            self._load(data)

    def _load(self, data: object) -> None:
        if not isinstance(data, dict):
            raise NetworkError(f"network state {self.path} is damaged: not a JSON object")
        try:
            if data["version"] != FORMAT_VERSION:
                raise NetworkError(f"{self.path} has unknown format version {data['version']}")
            stored = ipaddress.ip_network(data["subnet"])
            endpoints = {cid: Attachment.from_json(a) for cid, a in data["endpoints"].items()}
            for cid in endpoints:
                check_container_id(cid)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise NetworkError(f"network state {self.path} is damaged: {exc!r}") from None
        except NetworkError as exc:
            raise NetworkError(f"network state {self.path} is damaged: {exc}") from None
        if stored != self.network:
            raise NetworkError(
                f"network state {self.path} holds subnet {stored}, not {self.network}: "
                "remove the bridge network (teardown) before changing the subnet"
            )
        self._endpoints = endpoints

    def save(self) -> None:
        write_json(
            self.path,
            {
                "version": FORMAT_VERSION,
                "subnet": str(self.network),
                "endpoints": {cid: a.to_json() for cid, a in sorted(self._endpoints.items())},
            },
        )

    def get(self, container_id: str) -> Attachment | None:
        return self._endpoints.get(container_id)

    def items(self) -> list[tuple[str, Attachment]]:
        return sorted(self._endpoints.items())

    def free_address(self) -> IPv4Address:
        """The lowest address no attachment holds (PoolExhaustedError when none is left)."""
        used = {IPv4Address(a.ip) for a in self._endpoints.values()}
        return lowest_free(self.network, used)

    def add(self, container_id: str, attachment: Attachment) -> None:
        """Record `attachment` (its address is taken from then on) and save."""
        check_container_id(container_id)
        self._endpoints[container_id] = attachment
        self.save()

    def remove(self, container_id: str) -> None:
        """Forget `container_id` (its address is free again) and save; absent is fine."""
        if self._endpoints.pop(container_id, None) is not None:
            self.save()

    def stale(self, alive: Callable[[str], bool]) -> list[str]:
        """Attached containers for which `alive` says False."""
        return [cid for cid in sorted(self._endpoints) if not alive(cid)]
