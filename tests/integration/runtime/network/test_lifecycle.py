"""Attach, detach, conflicts, bad input, restarts, crashes and teardown of the bridge network."""

from __future__ import annotations

import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from common import namespaces
from runtime.network import (
    NetworkError,
    PortConflictError,
    nat_rules,
    parse_port,
    setup_loopback,
)
from runtime.network import nft as nft_command
from runtime.network.state import NetworkState
from tests.integration.conftest import LabHandle
from tests.integration.runtime.network.conftest import (
    EngineHost,
    links_in,
    tcp_exchange,
    tcp_server,
)


def _state(host: EngineHost) -> dict[str, Any]:
    """Everything an attach may leave on the machine: links, records (with their addresses)
    and published elements."""
    state = NetworkState(host.root / "network" / "state.json", host.new_network().network)
    return {
        "links": sorted(links_in(host.netns)),
        "records": state.items(),
        "published": host.published(),
    }


def test_a_taken_host_port_is_refused_and_nothing_of_the_attempt_remains(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    host1.attach("c1", ns1, ["8080:80", "127.0.0.1:5353:53/udp"])
    before = _state(host1)
    for ports, taken in (
        (["8080:81"], "8080/tcp is already published by container c1"),
        (["9000:90", "127.0.0.1:8080:80"], "8080/tcp is already published by container c1"),
        (["5353:53/udp"], "5353/udp is already published by container c1"),
        (["9000:90", "9000:91"], "use the same host port"),
    ):
        with pytest.raises(PortConflictError, match=taken):
            host1.attach("c2", ns2, ports)
        assert _state(host1) == before
        assert sorted(links_in(ns2)) == ["lo"]
    # The same port over the other protocol, or on another host address, is free.
    host1.attach("c2", ns2, ["8080:80/udp", "127.0.0.2:5353:53/udp"])
    assert host1.published()["c2"] == {
        ("any_addr", ("udp", 8080)),
        ("any_port", ("udp", 8080)),
        ("ip_addr", ("127.0.0.2", "udp", 5353)),
        ("ip_port", ("127.0.0.2", "udp", 5353)),
    }


def test_a_failure_after_the_veth_exists_is_rolled_back(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    """nft refuses the publish (the port is in the table already, put there behind the
    engine's back): the record, address and veth made before it are all undone."""
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    host1.attach("c1", ns1)
    seed = nat_rules.publish("intruder", IPv4Address("172.18.9.9"), [parse_port("7777:77")])
    host1.call(lambda: nft_command.run(seed, "seed a foreign element"))
    before = _state(host1)
    with pytest.raises(PortConflictError, match="7777:77/tcp"):
        host1.attach("c2", ns2, ["7777:77"])
    assert _state(host1) == before
    assert sorted(links_in(ns2)) == ["lo"]
    assert host1.new_network().attachment("c2") is None


def test_bad_input_is_refused_clearly_and_leaves_nothing(
    host1: EngineHost, container_ns: Callable[[str], Path], tmp_path: Path
) -> None:
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    first = host1.attach("c1", ns1, ["8080:80"])
    before = _state(host1)
    not_a_namespace = tmp_path / "plain-file"
    not_a_namespace.write_text("")
    for container_id, netns, message in (
        ("../evil", ns2, "invalid container id"),
        ("c2", tmp_path / "missing", "cannot open network namespace"),
        ("c2", not_a_namespace, ": not a network namespace"),
        ("c2", host1.netns, "is the engine's own network namespace"),
        ("c1", ns2, "container c1 is already attached"),
        ("c2", ns1, "the container already has eth0"),
    ):
        with pytest.raises(NetworkError, match=message):
            host1.attach(container_id, netns, ["9090:90"])
        assert _state(host1) == before
    assert host1.new_network().attachment("c1") == first
    assert sorted(links_in(ns2)) == ["lo"]
    network = host1.new_network()
    specs: Any = ["9090:90"]  # strings, not PortMappings
    with pytest.raises(NetworkError, match="not a port mapping"):
        host1.call(lambda: network.attach("c2", str(ns2), specs))
    with pytest.raises(NetworkError, match="invalid container id"):
        host1.detach("")


def test_detach_removes_exactly_its_rules_and_veth_and_frees_its_address(
    lab: LabHandle, host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    machine2 = lab.machines[1]
    ns1, ns2, ns3 = container_ns("c1"), container_ns("c2"), container_ns("c3")
    a1 = host1.attach("c1", ns1, ["8080:80", "127.0.0.1:5353:53/udp"])
    a2 = host1.attach("c2", ns2, ["9090:80"])
    published_c2 = host1.published()["c2"]

    host1.detach("c1")
    assert host1.published() == {"c2": published_c2}
    machine_links = links_in(host1.netns)
    assert a1.host_veth not in machine_links and a2.host_veth in machine_links
    assert sorted(links_in(ns1)) == ["lo"]
    assert host1.new_network().attachment("c1") is None
    assert host1.new_network().attachment("c2") == a2
    with tcp_server(ns2, 80) as server:
        assert tcp_exchange(server, machine2.netns, host1.ip, 9090) == machine2.record.ip
        with pytest.raises(ConnectionRefusedError):
            tcp_exchange(server, machine2.netns, host1.ip, 8080)

    host1.detach("c1")  # idempotent
    host1.detach("never-attached")
    assert host1.attach("c3", ns3).ip == a1.ip  # the freed address is used again


def test_detach_cleans_up_by_tag_when_the_rules_were_changed_behind_its_back(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    host1.attach("c1", ns1, ["8080:80", "9090:90/udp"])
    host1.attach("c2", ns2, ["7070:70"])
    published_c2 = host1.published()["c2"]
    half = nat_rules.unpublish([parse_port("8080:80")])
    host1.call(lambda: nft_command.run(half, "remove half of c1's rules"))
    host1.detach("c1")
    assert host1.published() == {"c2": published_c2}
    assert host1.new_network().attachment("c1") is None


def test_the_pool_survives_an_engine_restart(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1, ns2, ns3 = container_ns("c1"), container_ns("c2"), container_ns("c3")
    before_restart = host1.new_network()
    a1 = host1.attach("c1", ns1, ["8080:80"], net=before_restart)
    a2 = host1.attach("c2", ns2, net=before_restart)
    del before_restart

    after_restart = host1.new_network()
    assert after_restart.attachment("c1") == a1
    assert after_restart.attachment("c2") == a2
    a3 = host1.attach("c3", ns3, net=after_restart)
    assert a3.ip not in (a1.ip, a2.ip)
    with pytest.raises(PortConflictError, match="8080/tcp is already published by container c1"):
        host1.attach("c4", container_ns("c4"), ["8080:80"], net=after_restart)
    host1.call(lambda: after_restart.detach("c1"))
    assert set(host1.published()) == set()


def test_stale_containers_are_reclaimed(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    """A container that died with its engine (no detach): its namespace is gone, its
    record, address and port rules remain until release_stale finds it dead."""
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    a1 = host1.attach("c1", ns1, ["8080:80"])
    a2 = host1.attach("c2", ns2, ["9090:80"])
    namespaces.remove_bound(ns1)  # the container's end: the kernel frees its namespace

    alive = {"c2"}
    released = host1.call(lambda: host1.new_network().release_stale(alive.__contains__))
    assert released == ["c1"]
    assert set(host1.published()) == {"c2"}
    assert host1.new_network().attachment("c1") is None
    assert host1.new_network().attachment("c2") == a2
    assert a1.host_veth not in links_in(host1.netns)
    assert host1.attach("c3", container_ns("c3")).ip == a1.ip


def test_teardown_all_leaves_no_bridge_no_table_and_no_state(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1 = container_ns("c1")
    a1 = host1.attach("c1", ns1, ["8080:80"])
    host1.call(lambda: host1.new_network().teardown_all())
    machine_links = links_in(host1.netns)
    assert "shoal0" not in machine_links and a1.host_veth not in machine_links
    assert host1.nft_table() is None
    assert not (host1.root / "network").exists()
    assert sorted(links_in(ns1)) == ["lo"]
    host1.call(lambda: host1.new_network().teardown_all())  # nothing left: still fine

    # The next attach builds it all again.
    assert host1.attach("c1", container_ns("again"), ["8080:80"]).ip == a1.ip
    assert "shoal0" in links_in(host1.netns)


def test_two_engines_racing_get_distinct_addresses_and_one_bridge(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    spaces = {
        f"e{engine}c{n}": container_ns(f"e{engine}c{n}") for engine in (1, 2) for n in range(4)
    }
    start = threading.Barrier(2, timeout=10)
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def engine(prefix: str) -> None:
        try:
            network = host1.new_network()
            start.wait()
            for cid, ns in spaces.items():
                if cid.startswith(prefix):
                    results[cid] = host1.attach(cid, ns, net=network).ip
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=engine, args=(p,)) for p in ("e1", "e2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(results) == 8 and len(set(results.values())) == 8
    bridges = [name for name in links_in(host1.netns) if name.startswith("shoal")]
    assert bridges == ["shoal0"]


def test_a_bridge_made_for_another_subnet_is_refused(
    host1: EngineHost, container_ns: Callable[[str], Path]
) -> None:
    ns1, ns2 = container_ns("c1"), container_ns("c2")
    host1.attach("c1", ns1)
    before = _state(host1)
    other = EngineHost(host1.machine, host1.root.parent / "other-root", subnet="10.99.0.0/16")
    with pytest.raises(NetworkError, match="bridge shoal0 was made for another subnet"):
        other.attach("c2", ns2)
    assert _state(host1) == before


def test_setup_loopback_for_a_container_without_network(
    container_ns: Callable[[str], Path], tmp_path: Path
) -> None:
    ns = container_ns("none")
    assert not links_in(ns)["lo"]["flags"] & 1
    setup_loopback(str(ns))
    assert links_in(ns)["lo"]["flags"] & 1
    assert sorted(links_in(ns)) == ["lo"]
    with tcp_server(ns, 7000, "127.0.0.1") as server:
        assert tcp_exchange(server, ns, "127.0.0.1", 7000) == "127.0.0.1"
    with pytest.raises(NetworkError, match="cannot open network namespace"):
        setup_loopback(str(tmp_path / "missing"))
