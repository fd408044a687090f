"""The leadership watch: the current value, then each change, to every iterator once."""

from __future__ import annotations

import asyncio

from manager.raft import Leadership, LeadershipWatch


async def test_changes_reach_every_iterator_once_each() -> None:
    watch = LeadershipWatch()
    changes = watch.changes()
    assert await anext(changes) == Leadership(False, 0)

    watch.set(Leadership(True, 3))
    later = watch.changes()
    assert await anext(later) == Leadership(True, 3)  # a new iterator starts at the current
    watch.set(Leadership(True, 3))  # no change
    watch.set(Leadership(False, 3))
    watch.set(Leadership(False, 4))  # still not leader: no change
    watch.set(Leadership(True, 5))
    await later.aclose()  # a closed iterator no longer hears of changes
    watch.set(Leadership(False, 5))

    got = [await asyncio.wait_for(anext(changes), 1) for _ in range(4)]
    assert got == [
        Leadership(True, 3),
        Leadership(False, 3),
        Leadership(True, 5),
        Leadership(False, 5),
    ]
    assert watch.current == Leadership(False, 5)
    await changes.aclose()
