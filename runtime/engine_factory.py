"""Building the engine the way the `shoal` CLI and the agent use it.

The network code is imported only when a container needs it: pyroute2 costs tens of
milliseconds to import, which a `shoal ps` should not pay, and a wired start imports it
(`prepare`) while its container's processes set up, not before.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any, Protocol

from runtime.config import EngineConfig
from runtime.container.engine import Engine
from runtime.container.spec import OverlayAttachment

if TYPE_CHECKING:
    from runtime.network.bridge import BridgeNetwork
    from runtime.network.overlay import OverlayNetwork


class Resolver(Protocol):
    """The embedded DNS resolver of containers on overlay networks (the agent's)."""

    def serve(self, container_id: str, netns_path: str, network_ids: Sequence[str]) -> None:
        """Answer the container's queries from now on (names of those networks)."""

    def stop(self, container_id: str) -> None: ...


class LazyNetworks:
    """The engine's networks, backed by runtime.network on first use: the bridge, overlay
    networks under `<network dir>/overlay/<network id>`, and the resolver of containers on
    overlays when one is given (without one, they resolve nothing)."""

    def __init__(self, config: EngineConfig, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver
        self._bridge: BridgeNetwork | None = None

    def _get(self) -> BridgeNetwork:
        if self._bridge is None:
            from runtime.network.bridge import BridgeNetwork

            self._bridge = BridgeNetwork(self.config)
        return self._bridge

    def prepare(self) -> None:
        self._get()

    def attach(
        self, container_id: str, netns_path: str, ports: Sequence[str], ifname: str
    ) -> dict[str, Any]:
        from runtime.network.ports import parse_port

        mappings = [parse_port(p) for p in ports]
        return self._get().attach(container_id, netns_path, mappings, ifname).to_json()

    def detach(self, container_id: str) -> None:
        # The engine detaches only containers whose processes have all exited.
        self._get().detach(container_id, namespace_gone=True)

    def overlay(self, attachment: OverlayAttachment) -> OverlayNetwork:
        """The overlay network an attachment names, with its state under the engine's
        network directory."""
        from runtime.network.overlay import OverlayNetwork, OverlaySpec

        spec = OverlaySpec(
            attachment.network_id,
            attachment.vni,
            IPv4Network(attachment.subnet),
            IPv4Address(attachment.gateway),
            IPv4Address(attachment.vtep),
        )
        return OverlayNetwork(self.config.network_dir / "overlay" / attachment.network_id, spec)

    def attach_overlay(
        self, container_id: str, netns_path: str, overlay: OverlayAttachment, ifname: str
    ) -> dict[str, Any]:
        endpoint = self.overlay(overlay).attach(
            container_id, netns_path, IPv4Address(overlay.address), ifname
        )
        return {"name": overlay.name, **endpoint.to_json()}

    def detach_overlay(self, container_id: str, overlay: OverlayAttachment) -> None:
        self.overlay(overlay).detach(container_id)

    def set_overlay_peers(
        self, overlay: OverlayAttachment, peers: Sequence[tuple[str, str]]
    ) -> None:
        from runtime.network.ipam import mac_for
        from runtime.network.vxlan import Peer

        self.overlay(overlay).set_peers(
            Peer(IPv4Address(ip), mac_for(IPv4Address(ip)), IPv4Address(vtep)) for ip, vtep in peers
        )

    def serve_dns(
        self, container_id: str, netns_path: str, overlays: Sequence[OverlayAttachment]
    ) -> None:
        network_ids = [o.network_id for o in overlays]
        if self.resolver is not None:
            self.resolver.serve(container_id, netns_path, network_ids)
            return
        from runtime.network import cluster_socket

        path = cluster_socket.socket_path(self.config)
        if path.exists():  # the node's swarmd serves what the `shoal` commands start
            cluster_socket.call(
                path,
                "serve",
                container_id=container_id,
                netns_path=netns_path,
                network_ids=network_ids,
            )

    def stop_dns(self, container_id: str) -> None:
        if self.resolver is not None:
            self.resolver.stop(container_id)

    def join_cluster(
        self, container_id: str, container_name: str, networks: Sequence[str]
    ) -> list[OverlayAttachment]:
        """Addresses on the cluster's attachable overlay networks, from the node's swarmd."""
        from runtime.network import cluster_socket

        path = cluster_socket.socket_path(self.config)
        joined = []
        try:
            for network in networks:
                answer = cluster_socket.call(
                    path,
                    "attach",
                    container_id=container_id,
                    container_name=container_name,
                    network=network,
                )
                joined.append(OverlayAttachment(**answer["overlay"]))
        except BaseException:
            if joined:
                self.leave_cluster(container_id)
            raise
        return joined

    def leave_cluster(self, container_id: str) -> None:
        """The container ended: the node's swarmd stops serving it and frees its addresses."""
        from runtime.network import cluster_socket

        cluster_socket.call(
            cluster_socket.socket_path(self.config), "release", container_id=container_id
        )


def make_engine(
    config: EngineConfig, cleanup_on_exit: bool = True, resolver: Resolver | None = None
) -> Engine:
    network = LazyNetworks(config, resolver)
    return Engine(config, network=network, cleanup_on_exit=cleanup_on_exit)
