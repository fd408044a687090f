"""The linearizability checker (tests/linearizability.py) accepts what a real register can do and
rejects what it cannot: stale reads, lost acknowledged writes, writes applied twice, values
from nowhere. The fault-injection suite trusts its verdict, so both directions are proven here,
by hand-written histories and by seeded simulations of a register under concurrent clients."""

from __future__ import annotations

import dataclasses
import random

import pytest

from tests.linearizability import DEFAULT_MAX_STEPS, Operation, Verdict, check


def write(client: str, value: str, call: float, ret: float | None, *, key: str = "k") -> Operation:
    """An acknowledged write (ret given) or one of unknown outcome (ret None)."""
    return Operation(client, key, "write", value, call, ret, ok=ret is not None)


def failed_write(client: str, value: str, call: float, ret: float) -> Operation:
    return Operation(client, "k", "write", value, call, ret, ok=False, definitely_failed=True)


def read(client: str, value: str | None, call: float, ret: float, *, key: str = "k") -> Operation:
    return Operation(client, key, "read", value, call, ret, ok=True)


def rejected(history: list[Operation], max_steps: int = DEFAULT_MAX_STEPS) -> Verdict:
    verdict = check(history, max_steps=max_steps)
    assert not verdict.ok, "a non-linearizable history was accepted"
    assert verdict.key == "k"
    assert verdict.explanation.startswith("key 'k' is not linearizable")
    return verdict


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        read("c1", None, 0, 1),
        write("c1", "a", 2, 3),
        read("c2", "a", 4, 5),
        write("c2", "b", 6, 7),
        read("c1", "b", 8, 9),
    ]
    verdict = check(history)
    assert verdict.ok, verdict.explanation
    assert (verdict.key, verdict.operations, verdict.keys) == (None, 5, 1)


@pytest.mark.parametrize("seen", [None, "a"])
def test_a_read_overlapping_a_write_may_see_either_value(seen: str | None) -> None:
    history = [write("c1", "a", 0, 10), read("c2", seen, 2, 5), read("c3", "a", 11, 12)]
    assert check(history).ok


def test_reads_overlapping_two_writes_may_see_them_in_either_order() -> None:
    history = [
        write("c1", "a", 0, 10),
        write("c2", "b", 0, 10),
        read("c3", "b", 1, 2),
        read("c3", "a", 3, 4),
        read("c4", "a", 5, 6),
    ]
    assert check(history).ok


def test_intervals_that_only_touch_count_as_overlapping() -> None:
    assert check([write("c1", "a", 0, 1), read("c2", None, 1, 2)]).ok


def test_a_stale_read_is_rejected_and_shown_with_the_writes_it_ignored() -> None:
    history = [
        write("c1", "a", 10.0, 10.5),
        write("c2", "b", 11.0, 11.5),
        read("c3", "a", 12.0, 12.5),  # starts after "b" was acknowledged
    ]
    explanation = rejected(history).explanation
    assert "c1 write 'a' [0.000000s .. 0.500000s], acknowledged" in explanation
    assert "c2 write 'b' [1.000000s .. 1.500000s], acknowledged" in explanation
    assert "c3 read -> 'a' [2.000000s .. 2.500000s]" in explanation
    assert "stale read" in explanation


def test_a_lost_acknowledged_write_is_rejected() -> None:
    history = [
        read("c1", None, 0, 1),
        write("c2", "a", 2, 3),
        read("c1", "a", 2.5, 3.5),
        read("c3", None, 4, 5),  # after the ack: back to the initial value
    ]
    explanation = rejected(history).explanation
    assert "initial value None" in explanation
    assert "c3 read -> None" in explanation


def test_a_read_of_a_value_never_written_is_rejected() -> None:
    history = [write("c1", "a", 0, 1), read("c2", "zz", 2, 3)]
    assert "'zz', which nothing wrote" in rejected(history).explanation


def test_a_definitely_failed_write_never_takes_effect() -> None:
    assert check([failed_write("c1", "a", 0, 1), read("c2", None, 2, 3)]).ok
    history = [failed_write("c1", "a", 0, 1), read("c2", "a", 0.5, 3)]
    explanation = rejected(history).explanation
    assert "definitely failed" in explanation


def test_a_write_applied_twice_is_rejected() -> None:
    history = [
        write("c1", "v1", 0, 1),
        read("c3", "v1", 2, 3),
        write("c2", "v2", 4, 5),
        read("c3", "v2", 6, 7),
        read("c3", "v1", 8, 9),  # "v1" again, with no second write of it
    ]
    rejected(history)


def test_values_seen_in_turn_cannot_alternate_even_when_the_writes_overlap() -> None:
    history = [
        write("c1", "v1", 0, 20),
        write("c2", "v2", 0, 20),
        read("c3", "v1", 1, 2),
        read("c3", "v2", 3, 4),
        read("c3", "v1", 5, 6),
    ]
    explanation = rejected(history).explanation
    assert "c3 read -> 'v2' [3.000000s .. 4.000000s]" in explanation


def test_a_write_of_unknown_outcome_may_take_effect_late_or_never() -> None:
    unknown = write("c1", "a", 0, None)
    assert check([unknown, read("c2", None, 1, 2), read("c2", "a", 100, 101)]).ok
    assert check([unknown, read("c2", None, 1, 2), read("c2", None, 100, 101)]).ok
    assert check([unknown, write("c2", "b", 5, 6), read("c3", "a", 7, 8)]).ok


def test_a_write_of_unknown_outcome_that_failed_may_still_take_effect() -> None:
    late = Operation("c1", "k", "write", "a", 0, 1, ok=False)  # an error, not a definite one
    assert check([late, read("c2", None, 2, 3), read("c2", "a", 4, 5)]).ok


def test_a_write_of_unknown_outcome_cannot_be_seen_before_its_call_nor_undone() -> None:
    unknown = write("c1", "a", 10, None)
    explanation = rejected([read("c2", "a", 0, 5), unknown]).explanation
    assert "ended before [1], its only write, was issued" in explanation
    assert "c1 write 'a' [10.000000s .. ?], outcome unknown" in explanation
    rejected([unknown, read("c2", "a", 11, 12), read("c3", None, 13, 14)])


def test_keys_are_independent_and_the_bad_one_is_named() -> None:
    history = [
        write("c1", "a", 0, 1, key="1-good"),
        write("c1", "a", 0, 1, key="2-bad"),  # the same value on another key: no duplicate
        write("c2", "b", 2, 3, key="2-bad"),
        read("c3", "a", 4, 5, key="1-good"),  # "b" was written on the other key only...
        read("c3", "a", 4, 5, key="2-bad"),  # ...where this read is stale
    ]
    verdict = check(history)
    assert (verdict.ok, verdict.key, verdict.operations, verdict.keys) == (False, "2-bad", 5, 2)
    assert "c2 write 'b'" in verdict.explanation
    assert check([op for op in history if op.client != "c2"]).ok


def test_registers_start_at_their_initial_value() -> None:
    history = [read("c1", "x", 0, 1, key="k"), read("c1", None, 0, 1, key="other")]
    assert check(history, initial={"k": "x"}).ok
    assert check(history).key == "k"


def test_repeated_values_are_still_checked_soundly() -> None:
    history = [
        write("c1", "a", 0, 1),
        write("c1", "b", 2, 3),
        write("c1", "a", 4, 5),  # the recorder never does this, but the checker stays right
        read("c2", "a", 6, 7),
    ]
    assert check(history).ok
    history[-1] = read("c2", "b", 6, 7)
    explanation = rejected(history).explanation
    assert "c2 read -> 'b' [6.000000s .. 7.000000s]" in explanation


def test_a_search_that_runs_out_of_steps_fails_rather_than_passes() -> None:
    history = [write(f"c{i}", f"v{i}", 0, 10) for i in range(5)] + [read("r", "v3", 11, 12)]
    assert check(history).ok
    verdict = rejected(history, max_steps=2)
    assert "cut short at max_steps=2" in verdict.explanation


def test_a_record_that_contradicts_itself_is_refused() -> None:
    with pytest.raises(ValueError, match="acknowledged write needs its return time"):
        check([Operation("c1", "k", "write", "a", 0, None, ok=True)])
    with pytest.raises(ValueError, match="returned before it was called"):
        check([read("c1", None, 2, 1)])
    with pytest.raises(ValueError, match="recorded read must have returned"):
        check([Operation("c1", "k", "read", None, 0, None, ok=True)])


def simulate(seed: int, operations: int, clients: int, key: str = "k") -> list[Operation]:
    """A history a real register produced: each client calls one operation at a time, each
    takes effect at one instant between its call and return (writes of unknown outcome: at
    any time after their call, or never; definitely failed ones: never)."""
    rng = random.Random(seed)
    free_at = [rng.uniform(0, 0.01) for _ in range(clients)]
    effects: list[tuple[float, int]] = []  # (when, index) of the operations that took effect
    history: list[Operation] = []
    for index in range(operations):
        client = min(range(clients), key=free_at.__getitem__)
        call = free_at[client]
        ret = call + rng.expovariate(100)
        name, kind = f"c{client}", rng.random()
        if kind < 0.5:
            history.append(read(name, None, call, ret, key=key))
            effects.append((rng.uniform(call, ret), index))
        elif kind < 0.95:
            history.append(write(name, f"v{index}", call, ret, key=key))
            effects.append((rng.uniform(call, ret), index))
        elif kind < 0.98:  # timed out: may apply long after the client gave up
            history.append(write(name, f"v{index}", call, None, key=key))
            ret = call + 0.05
            if rng.random() < 0.5:
                effects.append((call + rng.uniform(0, 0.2), index))
        else:
            history.append(Operation(name, key, "write", f"v{index}", call, ret, False, True))
        free_at[client] = ret + rng.uniform(0, 0.002)
    value: str | None = None
    for _, index in sorted(effects):
        op = history[index]
        if op.kind == "write":
            value = op.value
        else:
            history[index] = dataclasses.replace(op, value=value)
    return history


def make_stale(history: list[Operation], seed: int) -> tuple[list[Operation], Operation]:
    """One read, entirely after two acknowledged writes one after the other, made to return
    the first: surely not linearizable, whatever else happened."""
    rng = random.Random(seed)
    acked = [op for op in history if op.kind == "write" and op.ok]
    while True:
        index = rng.randrange(len(history) // 2, len(history))
        victim = history[index]
        if victim.kind != "read":
            continue
        second = [w for w in acked if w.ret is not None and w.ret < victim.call]
        w2 = rng.choice(second) if second else None
        first = [w for w in acked if w2 and w.ret is not None and w.ret < w2.call]
        if first:
            stale = dataclasses.replace(victim, value=rng.choice(first).value)
            return [*history[:index], stale, *history[index + 1 :]], stale


@pytest.mark.parametrize("seed", range(20))
def test_simulated_histories_pass_and_a_stale_read_in_them_fails(seed: int) -> None:
    history = simulate(seed, operations=300, clients=8)
    verdict = check(history)
    assert verdict.ok, verdict.explanation
    mutated, stale = make_stale(history, seed)
    verdict = rejected(mutated)
    t0 = min(op.call for op in history)
    assert f"{stale.client} read -> {stale.value!r} [{stale.call - t0:.6f}s" in (
        verdict.explanation
    )


def test_several_simulated_keys_are_checked_and_only_the_bad_one_is_named() -> None:
    history = [op for i in range(4) for op in simulate(100 + i, 200, 6, key=f"k{i}")]
    assert check(history).ok
    bad = [op for op in history if op.key == "k2"]
    mutated, _ = make_stale(bad, 0)
    verdict = check([op for op in history if op.key != "k2"] + mutated)
    assert (verdict.ok, verdict.key, verdict.keys, verdict.operations) == (False, "k2", 4, 800)


def test_two_thousand_operations_of_twenty_clients_on_one_key_are_checked() -> None:
    history = simulate(2024, operations=2000, clients=20)
    verdict = check(history)
    assert verdict.ok, verdict.explanation
    assert verdict.steps < 50 * len(history)  # the pruning works: no exponential search
    mutated, _ = make_stale(history, 2024)
    assert not check(mutated).ok
