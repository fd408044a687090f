"""Bridge networking for one host: containers on `shoal0`, NAT out, published ports in.

Everything lands in the network namespace of the calling thread (the engine's host; a lab
machine's namespace in tests). Every change runs under the network directory's lock and
saves its record before the resources it names (see `state`), so a crash leaves only what
`detach`, `release_stale` or `teardown_all` can find and undo.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface

from common.namespaces import same_netns
from runtime.config import EngineConfig
from runtime.network import conntrack, links, lock, nat_rules, nft, sysctl
from runtime.network.attachment import Attachment, check_container_id
from runtime.network.errors import NetworkError, PortConflictError
from runtime.network.ipam import gateway_of, mac_for, parse_subnet
from runtime.network.ports import PortMapping, check_no_conflicts
from runtime.network.rtnl import RtnlSocket
from runtime.network.state import NetworkState

BRIDGE = "shoal0"
DEFAULT_SUBNET = "172.18.0.0/16"
VETH_PREFIX = "vsh"
IFNAMSIZ = 15  # usable characters of an interface name
STATE_FILE = "state.json"
LOCK_FILE = "lock"


def veth_name(container_id: str) -> str:
    """The host-side veth of a container: its id when short, else the id's start and a
    checksum of the whole id (two ids that share a prefix still get two names). CRC-32, not
    a sha256 from hashlib: loading OpenSSL would cost every container start milliseconds."""
    room = IFNAMSIZ - len(VETH_PREFIX)
    if len(container_id) <= room:
        return VETH_PREFIX + container_id
    half = room // 2
    checksum = f"{zlib.crc32(container_id.encode()):08x}"
    return VETH_PREFIX + container_id[:half] + checksum[: room - half]


class BridgeNetwork:
    """The bridge network of one engine, with its state under `config.network_dir`."""

    def __init__(self, config: EngineConfig, *, subnet: str = DEFAULT_SUBNET) -> None:
        self.directory = config.network_dir
        self.network = parse_subnet(subnet)
        self.gateway = IPv4Interface(f"{gateway_of(self.network)}/{self.network.prefixlen}")

    # -- state ---------------------------------------------------------------------------

    def _state(self) -> NetworkState:
        return NetworkState(self.directory / STATE_FILE, self.network)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[RtnlSocket, NetworkState]]:
        """The network lock, a netlink socket in the calling thread's namespace, and the
        state as it is now."""
        with lock.exclusive(self.directory / LOCK_FILE), RtnlSocket() as sock:
            yield sock, self._state()

    def attachment(self, container_id: str) -> Attachment | None:
        check_container_id(container_id)
        return self._state().get(container_id)

    # -- the bridge ----------------------------------------------------------------------

    def setup(self) -> None:
        """Create or repair the bridge, forwarding and Shoal's nft table (idempotent)."""
        with self._locked() as (sock, _state):
            self._setup(sock)

    def _setup(self, sock: RtnlSocket) -> int:
        index = links.ensure_bridge(sock, BRIDGE, self.gateway, mac_for(self.gateway.ip))
        sysctl.write("ipv4/ip_forward", "1")
        # Lets 127.0.0.1:PORT be DNAT'ed out of the bridge (and replies come back).
        sysctl.write(f"ipv4/conf/{BRIDGE}/route_localnet", "1")
        nft.run(nat_rules.base_ruleset(self.network, BRIDGE), "set up NAT for the bridge")
        links.set_up(sock, index)  # last: an up bridge means all of the above is done
        return index

    def _bridge_index(self, sock: RtnlSocket) -> int:
        """The bridge's index, setting it up first unless it is up already."""
        found = links.link_state(sock, BRIDGE)
        if found is None or not found.up:
            return self._setup(sock)
        if found.mac != mac_for(self.gateway.ip):  # its MAC is derived from its gateway
            raise NetworkError(
                f"bridge {BRIDGE} was made for another subnet than {self.network} "
                f"(its MAC is {found.mac}): remove it (teardown) or configure that subnet"
            )
        return found.index

    # -- containers ----------------------------------------------------------------------

    def attach(
        self,
        container_id: str,
        netns_path: str,
        ports: Sequence[PortMapping] = (),
        ifname: str = links.CONTAINER_IFNAME,
    ) -> Attachment:
        """Connect the container whose network namespace is at `netns_path` to the bridge:
        `ifname` (eth0 unless the container has overlay interfaces before it) with a pool
        address, a default route via the gateway, `ports` published."""
        check_container_id(container_id)
        wanted = tuple(ports)
        for port in wanted:
            if not isinstance(port, PortMapping):
                raise NetworkError(f"not a port mapping: {port!r}")
        check_no_conflicts(wanted)
        with links.container_netns(netns_path) as fd:
            if same_netns(fd):
                raise NetworkError(f"{netns_path} is the engine's own network namespace")
            with self._locked() as (sock, state):
                return self._attach(sock, state, container_id, fd, wanted, ifname)

    def _attach(
        self,
        sock: RtnlSocket,
        state: NetworkState,
        container_id: str,
        fd: int,
        ports: tuple[PortMapping, ...],
        ifname: str,
    ) -> Attachment:
        if state.get(container_id) is not None:
            raise NetworkError(f"container {container_id} is already attached")
        self._check_ports_free(ports, state)
        bridge = self._bridge_index(sock)
        ip = state.free_address()
        attachment = Attachment(
            ip=str(ip),
            prefixlen=self.network.prefixlen,
            gateway=str(self.gateway.ip),
            mac=mac_for(ip),
            host_veth=veth_name(container_id),
            ports=ports,
        )
        state.add(container_id, attachment)
        try:
            # A restarted container: its last namespace may not be torn down quite yet.
            links.delete_link(sock, attachment.host_veth)
            links.create_veth(sock, attachment.host_veth, bridge, fd, attachment.mac, ifname=ifname)
            address = IPv4Interface(f"{ip}/{self.network.prefixlen}")
            links.configure_container(fd, address, self.gateway.ip, ifname=ifname)
            if ports:
                self._publish(container_id, ip, ports)
        except BaseException:
            links.delete_link(sock, attachment.host_veth)
            state.remove(container_id)
            raise
        return attachment

    @staticmethod
    def _check_ports_free(ports: tuple[PortMapping, ...], state: NetworkState) -> None:
        for port in ports:
            for other_id, other in state.items():
                for used in other.ports:
                    if port.conflicts_with(used):
                        raise PortConflictError(
                            f"cannot publish {port}: host port {port.host_port}/{port.protocol} "
                            f"is already published by container {other_id} ({used})"
                        )

    @staticmethod
    def _publish(container_id: str, ip: IPv4Address, ports: tuple[PortMapping, ...]) -> None:
        try:
            nft.run(nat_rules.publish(container_id, ip, ports), f"publish ports of {container_id}")
        except nft.NftError as exc:
            if exc.exists:
                listed = ", ".join(map(str, ports))
                raise PortConflictError(
                    f"cannot publish {listed}: a host port is already in Shoal's nft table"
                ) from None
            raise
        conntrack.forget_udp_flows(ports)  # flows seen before the port was published

    def detach(self, container_id: str, namespace_gone: bool = False) -> None:
        """Disconnect a container: its port rules, its veth, its address. Idempotent.

        `namespace_gone`: the container's network namespace has died (its processes all
        exited), so the kernel removes the veth pair with it; not waiting for that deletion
        (about 20 ms of RTM_DELLINK) speeds up every container's exit."""
        check_container_id(container_id)
        with self._locked() as (sock, state):
            self._detach(sock, state, container_id, delete_veth=not namespace_gone)

    def _detach(
        self,
        sock: RtnlSocket,
        state: NetworkState,
        container_id: str,
        delete_veth: bool = True,
    ) -> None:
        attachment = state.get(container_id)
        if attachment is None:
            return
        if attachment.ports:
            self._unpublish(container_id, attachment.ports)
            conntrack.forget_udp_flows(attachment.ports)  # flows still sent to its address
        if delete_veth:
            links.delete_link(sock, attachment.host_veth)
        state.remove(container_id)

    @staticmethod
    def _unpublish(container_id: str, ports: tuple[PortMapping, ...]) -> None:
        try:
            nft.run(nat_rules.unpublish(ports), f"unpublish ports of {container_id}")
        except nft.NftError as exc:
            if not exc.missing:
                raise
            # Some are gone already (a crash, a flushed ruleset): delete what is left by tag.
            listing = nft.list_table()
            commands = [] if listing is None else nat_rules.unpublish_owned(listing, container_id)
            if commands:
                nft.run(commands, f"unpublish ports of {container_id}")

    def release_stale(self, alive: Callable[[str], bool]) -> list[str]:
        """Detach every container for which `alive` says False (an engine that crashed
        leaves records, addresses and port rules behind); returns their ids."""
        with self._locked() as (sock, state):
            dead = state.stale(alive)
            for container_id in dead:
                self._detach(sock, state, container_id)
            return dead

    def teardown_all(self) -> None:
        """Remove every container's veth, the bridge, Shoal's nft table and all state."""
        with self._locked() as (sock, state):
            for _container_id, attachment in state.items():
                links.delete_link(sock, attachment.host_veth)
            try:
                nft.run(nat_rules.delete_table(), "delete Shoal's nft table")
            except nft.NftError as exc:
                if not exc.missing:
                    raise
            links.delete_link(sock, BRIDGE)
            (self.directory / STATE_FILE).unlink(missing_ok=True)
            (self.directory / LOCK_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.directory.rmdir()
