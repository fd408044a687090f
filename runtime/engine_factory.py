"""Building the engine the way the `shoal` CLI (and later the agent) uses it.

The bridge network is imported only when a container needs it: pyroute2 costs tens of
milliseconds to import, which a `shoal ps` should not pay, and a bridged start imports it
(`prepare`) while its container's processes set up, not before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.config import EngineConfig
from runtime.container.engine import Engine

if TYPE_CHECKING:
    from runtime.network.bridge import BridgeNetwork


class LazyBridge:
    """The engine's Network, backed by runtime.network's BridgeNetwork on first use."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._bridge: BridgeNetwork | None = None

    def _get(self) -> BridgeNetwork:
        if self._bridge is None:
            from runtime.network.bridge import BridgeNetwork

            self._bridge = BridgeNetwork(self.config)
        return self._bridge

    def prepare(self) -> None:
        self._get()

    def attach(self, container_id: str, netns_path: str, ports: Sequence[str]) -> dict[str, Any]:
        from runtime.network.ports import parse_port

        attachment = self._get().attach(container_id, netns_path, [parse_port(p) for p in ports])
        return attachment.to_json()

    def detach(self, container_id: str) -> None:
        # The engine detaches only containers whose processes have all exited.
        self._get().detach(container_id, namespace_gone=True)


def make_engine(config: EngineConfig, cleanup_on_exit: bool = True) -> Engine:
    return Engine(config, network=LazyBridge(config), cleanup_on_exit=cleanup_on_exit)
