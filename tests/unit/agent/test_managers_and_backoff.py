"""The weighted manager list and the reconnect back-off."""

from __future__ import annotations

import collections
import random

import pytest

from agent.backoff import Backoff
from agent.errors import ConfigError
from agent.managers import Managers
from shoal.v1 import types_pb2


def peers(*weighted: tuple[str, int]) -> list[types_pb2.WeightedPeer]:
    return [
        types_pb2.WeightedPeer(peer=types_pb2.Peer(node_id=a, addr=a), weight=w)
        for a, w in weighted
    ]


def test_backoff_doubles_from_100ms_to_8s_with_jitter() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(8.0, 0.1 * 2**n) for n in range(12)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not in lock step
    backoff.reset()
    assert 0.05 <= backoff.next() <= 0.1


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="0 < base <= cap"):
        Backoff(base=1, cap=0.5)


def test_selection_follows_the_weights() -> None:
    managers = Managers(["m1:1"], rng=random.Random(7))
    managers.update(peers(("m1:1", 1), ("m2:1", 9)))
    picks = collections.Counter(managers.select() for _ in range(1000))
    assert 850 < picks["m2:1"] < 950


def test_the_manager_that_failed_last_is_not_picked_while_others_exist() -> None:
    managers = Managers(["a:1", "b:1", "c:1"], rng=random.Random(3))
    managers.failed("a:1")
    assert "a:1" not in {managers.select() for _ in range(200)}
    managers.succeeded("a:1")
    assert "a:1" in {managers.select() for _ in range(200)}


def test_a_lone_manager_is_retried() -> None:
    managers = Managers(["a:1"])
    managers.failed("a:1")
    assert managers.select() == "a:1"


def test_failures_halve_the_weight() -> None:
    managers = Managers(["a:1", "b:1", "c:1"], rng=random.Random(5))
    for _ in range(3):
        managers.failed("a:1")
    managers.failed("c:1")  # the last failure: c is excluded, a weighs 1/8 of b
    picks = collections.Counter(managers.select() for _ in range(900))
    assert picks["c:1"] == 0
    assert 50 < picks["a:1"] < 200


def test_the_dispatchers_list_replaces_ours_but_an_empty_one_does_not() -> None:
    managers = Managers(["seed:4242"])
    managers.update(peers(("m1:4242", 10), ("m2:4242", 10)))
    assert managers.addresses == ["m1:4242", "m2:4242"]
    managers.update([])
    assert managers.addresses == ["m1:4242", "m2:4242"]


@pytest.mark.parametrize("address", ["nohost", ":80", "host:", "host:http", "host:70000"])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid manager address '{address}'"):
        Managers([address])


def test_no_managers_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one manager"):
        Managers([])
