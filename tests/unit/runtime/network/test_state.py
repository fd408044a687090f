"""The bridge network's state file on a temporary directory: allocation, release,
persistence, stale reclaim, and the clear errors for damaged or mismatched files."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from runtime.network import Attachment, NetworkError, PoolExhaustedError, parse_port
from runtime.network.state import NetworkState

SUBNET = IPv4Network("172.18.0.0/16")


def state(tmp_path: Path, network: IPv4Network = SUBNET) -> NetworkState:
    return NetworkState(tmp_path / "state.json", network)


def attach(s: NetworkState, container_id: str, *ports: str) -> Attachment:
    """What BridgeNetwork records: the lowest free address for the container."""
    ip = s.free_address()
    attachment = Attachment(
        ip=str(ip),
        prefixlen=s.network.prefixlen,
        gateway="172.18.0.1",
        mac="02:42:00:00:00:00",
        host_veth=f"vsh{container_id}",
        ports=tuple(parse_port(p) for p in ports),
    )
    s.add(container_id, attachment)
    return attachment


def test_addresses_are_distinct_and_lowest_first(tmp_path: Path) -> None:
    s = state(tmp_path)
    assert [attach(s, c).ip for c in ("a", "b", "c")] == [
        "172.18.0.2",
        "172.18.0.3",
        "172.18.0.4",
    ]


def test_a_removed_container_frees_its_address(tmp_path: Path) -> None:
    s = state(tmp_path)
    for c in ("a", "b", "c"):
        attach(s, c)
    s.remove("b")
    s.remove("b")
    assert s.get("b") is None
    assert attach(s, "d").ip == "172.18.0.3"


def test_everything_persists_for_a_new_state_object(tmp_path: Path) -> None:
    first = state(tmp_path)
    a = attach(first, "a", "8080:80", "127.0.0.1:53:53/udp")
    b = attach(first, "b")
    first.remove("a")
    again = state(tmp_path)
    assert again.items() == [("b", b)]
    assert attach(again, "c").ip == a.ip
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["subnet"] == "172.18.0.0/16"
    assert {cid: e["ip"] for cid, e in saved["endpoints"].items()} == {
        "b": "172.18.0.3",
        "c": "172.18.0.2",
    }
    with_ports = attach(again, "p", "8080:80", "127.0.0.1:53:53/udp")
    assert state(tmp_path).get("p") == with_ports


def test_stale_containers_are_found(tmp_path: Path) -> None:
    s = state(tmp_path)
    for c in ("a", "b", "c"):
        attach(s, c)
    assert s.stale(lambda cid: cid == "b") == ["a", "c"]
    assert s.stale(lambda cid: True) == []


def test_a_full_subnet_keeps_what_it_has(tmp_path: Path) -> None:
    s = state(tmp_path, IPv4Network("10.9.0.0/30"))  # gateway .1, one container: .2
    attach(s, "a")
    with pytest.raises(PoolExhaustedError, match=r"10\.9\.0\.0/30"):
        attach(s, "b")
    assert [cid for cid, _ in state(tmp_path, IPv4Network("10.9.0.0/30")).items()] == ["a"]


def test_state_made_for_another_subnet_is_refused(tmp_path: Path) -> None:
    attach(state(tmp_path), "a")
    with pytest.raises(NetworkError, match=r"holds subnet 172\.18\.0\.0/16, not 10\.1\.0\.0/16"):
        state(tmp_path, IPv4Network("10.1.0.0/16"))


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"version": 1}',
        '{"version": 2, "subnet": "172.18.0.0/16", "endpoints": {}}',
        '{"version": 1, "subnet": "x", "endpoints": {}}',
        '{"version": 1, "subnet": "172.18.0.0/16", "endpoints": {"a": {"ip": "1.2.3.4"}}}',
        '{"version": 1, "subnet": "172.18.0.0/16", "endpoints": {"../x": {}}}',
    ],
)
def test_a_damaged_file_is_an_error_naming_it(tmp_path: Path, content: str) -> None:
    (tmp_path / "state.json").write_text(content)
    with pytest.raises(NetworkError, match=r"state\.json"):
        state(tmp_path)
    assert (tmp_path / "state.json").read_text() == content


def test_nothing_is_written_until_something_changes(tmp_path: Path) -> None:
    s = state(tmp_path)
    s.remove("nobody")
    assert s.free_address() == IPv4Address("172.18.0.2")
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "a b", "x" * 129, "é"])
def test_container_ids_that_could_escape_are_refused(tmp_path: Path, bad: str) -> None:
    s = state(tmp_path)
    with pytest.raises(NetworkError, match="invalid container id"):
        attach(s, bad)
    assert not (tmp_path / "state.json").exists()
