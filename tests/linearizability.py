"""Linearizability of a recorded history of register operations (test support).

The fault-injection suite records what its clients asked of the replicated store, and what
they were told, while nodes die and the network splits; `check` then says whether one order
of those operations, each placed somewhere between its call and its return, explains every
answer. That is what rules out a lost acknowledged write, a write applied twice and a stale
read, whatever the cluster went through.

The model is a set of independent registers keyed by string, so each key is checked on its
own (P-compositionality: a history is linearizable iff each key's is). Per key the search is
Wing & Gong's, with Lowe's just-in-time linearization and Porcupine's memoization: call and
return events sorted by time in a linked list, a depth-first search over which pending
operation takes effect next, a cache of (set linearized, register value) pairs already
explored, backtracking when an operation's return is reached before it took effect.

A write whose outcome is unknown (timed out, or failed ambiguously) has no return (it may
take effect at any time after its call) and is optional (it may never take effect). Write
values are unique per key (the recorder makes them so), which lets the search prune soundly:
a value once overwritten never comes back, so no write may take effect while reads of the
current value remain. For a value written more than once that prune is off and the search
is plainer, only slower. A search that runs out of steps fails: a check never passes unproven.
A failure is explained by the fewest operations that prove it where those are cheap to find
(with unique values, Gibbons & Korach's conditions always find some), else by the operations
around the one no order got past.

    verdict = check(history, initial={"k": None})
    assert verdict.ok, verdict.explanation
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_STEPS = 5_000_000  # per key; a plausible history needs a few per operation
SHOWN_AROUND = 10  # operations listed around the one a failed search got stuck on


@dataclass(frozen=True)
class Operation:
    """One client operation on one key, as the recorder saw it.

    `value` is what a write wrote or what a read returned. `call` and `ret` are
    time.monotonic() readings when the call was issued and when its answer came (`ret` is
    None when no answer came). A write is acknowledged (`ok`, with a `ret`), definitely failed
    (`definitely_failed`: it never took effect and is ignored), or of unknown outcome (neither:
    it may have taken effect at any time after its call, even after a failed answer, or
    never). Only reads that returned a value are recorded.
    """

    client: str
    key: str
    kind: Literal["write", "read"]
    value: str | None
    call: float
    ret: float | None
    ok: bool
    definitely_failed: bool = False


@dataclass(frozen=True)
class Verdict:
    """Whether a history is linearizable, and if not, for which key and why."""

    ok: bool
    key: str | None  # the first key (in sorted order) found not linearizable
    explanation: str  # the operations around the conflict, times relative to the first call
    operations: int  # in the history given
    keys: int  # distinct keys in the history
    steps: int = 0  # of the searches that ran: how hard the history was to check


@dataclass(frozen=True, slots=True, eq=False)
class _Op:
    """An operation as the search sees it: `ret` is +inf for an unknown outcome."""

    index: int
    kind: Literal["write", "read"]
    value: str | None
    call: float
    ret: float
    required: bool  # False for a write of unknown outcome: it may never take effect
    source: Operation | None  # None for the initial value's notional write


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one key's search found; on failure, where it got furthest."""

    ok: bool
    cut_short: bool
    steps: int
    deepest: int  # most operations linearized at once
    stuck_on: _Op | None  # the operation whose return blocked the deepest attempt
    stuck_at: str | None  # the register's value then


def check(
    history: Iterable[Operation],
    initial: Mapping[str, str | None] | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Verdict:
    """Check each key of `history` (registers starting at `initial`, else None) in turn,
    stopping at the first that is not linearizable; `max_steps` bounds each key's search."""
    operations = list(history)
    for op in operations:
        _validate(op)
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    t0 = min((op.call for op in operations), default=0.0)
    total_steps = 0
    for key in sorted(by_key):
        start = (initial or {}).get(key)
        ops, unique = _prepare(by_key[key], start)
        outcome = _search(ops, start, max_steps)
        total_steps += outcome.steps
        if outcome.ok:
            continue
        witness = _witness(ops, start, by_key[key], t0) if unique else None
        if witness is not None:
            explanation = witness
        elif outcome.cut_short:
            explanation = (
                f"the search was cut short at max_steps={max_steps} with at "
                f"most {outcome.deepest} of {len(ops)} operations linearized: key {key!r} "
                "could not be shown linearizable"
            )
        else:
            explanation = _stuck(ops, outcome, t0)
        return Verdict(
            ok=False,
            key=key,
            explanation=f"key {key!r} is not linearizable: {explanation}",
            operations=len(operations),
            keys=len(by_key),
            steps=total_steps,
        )
    return Verdict(
        ok=True,
        key=None,
        explanation=f"linearizable: {len(operations)} operations on {len(by_key)} keys",
        operations=len(operations),
        keys=len(by_key),
        steps=total_steps,
    )


def _validate(op: Operation) -> None:
    """Refuse a record that contradicts itself rather than guess what it meant."""
    problem = None
    if op.kind not in ("write", "read"):
        problem = "kind is neither write nor read"
    elif op.ret is not None and op.ret < op.call:
        problem = "it returned before it was called"
    elif op.kind == "read" and (op.ret is None or not op.ok or op.definitely_failed):
        problem = "a recorded read must have returned a value (ok, with ret)"
    elif op.ok and op.ret is None:
        problem = "an acknowledged write needs its return time"
    elif op.ok and op.definitely_failed:
        problem = "a write cannot be both acknowledged and definitely failed"
    if problem is not None:
        raise ValueError(f"malformed operation {op}: {problem}")


def _prepare(records: list[Operation], initial: str | None) -> tuple[list[_Op], bool]:
    """The operations the search needs, in call order, and whether write values are unique.

    Definitely failed writes never took effect and go. So does a write of unknown outcome
    whose value no read returned: leaving it out of any order changes no answer.
    """
    writes = [op for op in records if op.kind == "write" and not op.definitely_failed]
    written = Counter(op.value for op in writes)
    unique = all(count == 1 for count in written.values()) and initial not in written
    read_values = {op.value for op in records if op.kind == "read"}
    kept = [
        op
        for op in records
        if not op.definitely_failed and (op.kind == "read" or op.ok or op.value in read_values)
    ]
    kept.sort(key=lambda op: op.call)
    ops: list[_Op] = []
    for index, op in enumerate(kept):
        known = op.kind == "read" or op.ok
        ret = op.ret if known and op.ret is not None else math.inf
        ops.append(_Op(index, op.kind, op.value, op.call, ret, known, op))
    return ops, unique


def _search(ops: list[_Op], initial: str | None, max_steps: int) -> _Outcome:
    """Porcupine's depth-first search for a linearization of one key's operations.

    Events live in a doubly linked list (node 0 is the head, the last node the tail); the
    pending operations that may take effect next are the calls before the first return.
    Linearizing one lifts its call and return out of the list; backtracking puts them back.
    Two moves are forced, so their failure fails their parent too: a read of the current
    value (reads change nothing, so taking one as early as possible loses no order) and a
    write nobody read while no read of the current value remains (it changes only what
    nobody sees). No write may take effect while reads of the current value remain, unless
    that value is written again later: once overwritten, a value written once never comes
    back (the initial value counts as written once).
    """
    n = len(ops)
    events = sorted([(op.call, 0, op.index) for op in ops] + [(op.ret, 1, op.index) for op in ops])
    head, tail = 0, 2 * n + 1
    nxt = [*range(1, 2 * n + 2), tail]
    prv = [head, *range(2 * n + 1)]
    is_call = [False] * (2 * n + 2)
    op_of = [0] * (2 * n + 2)
    call_node = [0] * n
    ret_node = [0] * n
    for node, (_, kind, index) in enumerate(events, start=1):
        is_call[node] = kind == 0
        op_of[node] = index
        if kind == 0:
            call_node[index] = node
        else:
            ret_node[index] = node
    reads_of = Counter(op.value for op in ops if op.kind == "read")
    reads_left = Counter(reads_of)
    written = Counter([initial, *(op.value for op in ops if op.kind == "write")])
    recurring = {value for value, count in written.items() if count > 1}
    required_left = sum(op.required for op in ops)

    state = initial
    linearized = 0  # bitset of op indexes
    stack: list[tuple[int, str | None, bool]] = []  # (op, value before it, forced)
    cache: set[tuple[int, str | None]] = set()
    steps = deepest = 0
    stuck_on: _Op | None = None
    stuck_at: str | None = None

    def may_write() -> bool:
        return reads_left[state] == 0 or state in recurring

    def lift(index: int) -> None:
        for node in (call_node[index], ret_node[index]):
            nxt[prv[node]] = nxt[node]
            prv[nxt[node]] = prv[node]

    def unlift(index: int) -> None:
        for node in (ret_node[index], call_node[index]):
            nxt[prv[node]] = node
            prv[nxt[node]] = node

    def apply(op: _Op, forced: bool) -> None:
        nonlocal state, linearized, required_left
        stack.append((op.index, state, forced))
        lift(op.index)
        linearized |= 1 << op.index
        required_left -= op.required
        if op.kind == "write":
            state = op.value
        else:
            reads_left[op.value] -= 1

    def undo() -> tuple[int, bool]:
        nonlocal state, linearized, required_left
        index, before, forced = stack.pop()
        op = ops[index]
        unlift(index)
        linearized &= ~(1 << index)
        required_left += op.required
        state = before
        if op.kind == "read":
            reads_left[op.value] += 1
        return index, forced

    entry = head
    fresh = True  # just moved: look for a forced move before walking the list
    while True:
        backtrack = False
        if fresh:
            fresh = False
            if required_left == 0:
                return _Outcome(True, False, steps, len(stack), None, None)
            steps += 1
            forced = _forced(nxt, is_call, op_of, ops, state, reads_of, reads_left[state] == 0)
            if forced is not None:
                after = state if forced.kind == "read" else forced.value
                seen = (linearized | 1 << forced.index, after)
                if seen in cache:
                    backtrack = True
                else:
                    cache.add(seen)
                    apply(forced, True)
                    fresh = True
                    continue
            entry = nxt[head]
        if not backtrack:
            steps += 1
            if steps > max_steps:
                return _Outcome(False, True, steps, deepest, stuck_on, stuck_at)
            if is_call[entry]:
                op = ops[op_of[entry]]
                if (op.kind == "write" and may_write()) or (
                    op.kind == "read" and op.value == state
                ):
                    after = op.value if op.kind == "write" else state
                    seen = (linearized | 1 << op.index, after)
                    if seen not in cache:
                        cache.add(seen)
                        apply(op, False)
                        fresh = True
                        continue
                entry = nxt[entry]
                continue
            if entry != tail and len(stack) >= deepest:
                deepest, stuck_on, stuck_at = len(stack), ops[op_of[entry]], state
        while True:  # the current prefix fails: undo back to a choice not yet tried
            if not stack:
                return _Outcome(False, False, steps, deepest, stuck_on, stuck_at)
            index, forced_move = undo()
            if not forced_move:
                entry = nxt[call_node[index]]
                break


def _forced(
    nxt: list[int],
    is_call: list[bool],
    op_of: list[int],
    ops: list[_Op],
    state: str | None,
    reads_of: Counter[str | None],
    quiet: bool,
) -> _Op | None:
    """A pending operation that may as well take effect now (see `_search`), if any.

    `quiet` says no read of the current value remains.
    """
    node = nxt[0]
    while is_call[node]:
        op = ops[op_of[node]]
        if op.kind == "read":
            if op.value == state:
                return op
        elif quiet and op.required and reads_of[op.value] == 0:
            return op
        node = nxt[node]
    return None


def _witness(
    ops: list[_Op], initial: str | None, records: list[Operation], t0: float
) -> str | None:
    """The fewest operations that show a key's history is not linearizable, if cheaply found.

    Values are unique, so each value's operations (its write, then the reads of it) form one
    block in any linearization, and the blocks follow one another. Three things break that: a
    read of a value nobody wrote, a read that ended before its write was issued, and two
    values each with an operation ending before another's on the other value begins (then
    neither block can come first). This is Gibbons & Korach's test for read-mapped histories.
    """
    origin = _Op(-1, "write", initial, -math.inf, -math.inf, True, None)
    write_of = {op.value: op for op in ops if op.kind == "write"}
    write_of[initial] = origin
    blocks: dict[str | None, list[_Op]] = {value: [op] for value, op in write_of.items()}
    for read in (op for op in ops if op.kind == "read"):
        write = write_of.get(read.value)
        if write is None:
            failed = [op for op in records if op.kind == "write" and op.value == read.value]
            note = " (its write definitely failed)" if failed else ""
            return _show(
                [read, *(_record(op) for op in failed)],
                f"[1] returned {read.value!r}, which nothing wrote{note}, and it is not "
                f"the initial value {initial!r}",
                t0,
            )
        if read.ret < write.call:
            return _show(
                [write, read],
                f"[2] returned {read.value!r} but ended before [1], its only write, was issued",
                t0,
            )
        blocks[read.value].append(read)
    # Each block's earliest return (first) and latest call (last); in order of the latter,
    # so the conflict shown is the first one completed in time.
    spans = sorted(
        (
            (min(block, key=lambda op: op.ret), max(block, key=lambda op: op.call), value)
            for value, block in blocks.items()
        ),
        key=lambda span: span[1].call,
    )
    for later, (first_v, last_v, v) in enumerate(spans):
        for first_u, last_u, u in spans[:later]:
            if first_v.ret < last_u.call and first_u.ret < last_v.call:
                return _conflict(first_v, last_v, v, first_u, last_u, u, t0)
    return None


def _conflict(
    first_v: _Op,
    last_v: _Op,
    v: str | None,
    first_u: _Op,
    last_u: _Op,
    u: str | None,
    t0: float,
) -> str:
    """Say why the operations on values `v` and `u` fit in no order."""
    if first_u is last_u or first_v is last_v:
        if first_v is last_v:
            first_v, last_v, v, first_u, u = first_u, last_u, u, first_v, v
        return _show(
            [first_v, first_u, last_v],
            f"[2] (on {u!r}) came entirely after [1] and before [3] (both on {v!r}): {v!r} "
            f"would be current both before and after {u!r}, but a value once overwritten "
            "never comes back — a stale read, a lost write or a write applied twice",
            t0,
        )
    return _show(
        [first_v, last_u, first_u, last_v],
        f"[1] (on {v!r}) ended before [2] (on {u!r}) began, and [3] (on {u!r}) ended "
        f"before [4] (on {v!r}) began: neither value's operations can all come before the "
        "other's, as a value once overwritten never comes back",
        t0,
    )


def _stuck(ops: list[_Op], outcome: _Outcome, t0: float) -> str:
    """Without a witness: the operation no order got past, and the ones nearest it in time."""
    blocker = outcome.stuck_on
    if blocker is None:
        return "no order of its operations explains them"

    def distance(op: _Op) -> float:  # between intervals: 0 if they overlap
        return max(op.call - blocker.ret, blocker.call - op.ret, 0.0)

    around = sorted(ops, key=distance)[:SHOWN_AROUND]
    if all(op is not blocker for op in around):
        around[-1] = blocker
    around.sort(key=lambda op: op.call)
    number = around.index(blocker) + 1
    return _show(
        around,
        f"no order of the operations gets past [{number}]: the search linearized at most "
        f"{outcome.deepest} of {len(ops)} operations, the register then holding "
        f"{outcome.stuck_at!r}; the operations nearest [{number}] in time are shown",
        t0,
    )


def _record(op: Operation) -> _Op:
    """A record the search left out, for showing only."""
    ret = op.ret if op.ret is not None else math.inf
    return _Op(-1, op.kind, op.value, op.call, ret, op.ok, op)


def _show(shown: list[_Op], why: str, t0: float) -> str:
    """The numbered operations, one a line, then why they conflict."""
    lines = [f"  [{number}] {_describe(op, t0)}" for number, op in enumerate(shown, start=1)]
    return "\n".join([why, *lines])


def _describe(op: _Op, t0: float) -> str:
    """One operation, with its times relative to the history's first call."""
    source = op.source
    if source is None:
        return f"initial value {op.value!r} (before everything)"
    what = f"write {source.value!r}" if source.kind == "write" else f"read -> {source.value!r}"
    when = f"{source.call - t0:.6f}s .. "
    when += "?" if source.ret is None else f"{source.ret - t0:.6f}s"
    if source.kind == "read":
        outcome = ""
    elif source.definitely_failed:
        outcome = ", definitely failed"
    elif source.ok:
        outcome = ", acknowledged"
    else:
        outcome = ", outcome unknown"
    return f"{source.client} {what} [{when}]{outcome}"
