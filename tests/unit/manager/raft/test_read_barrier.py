"""Read points shared by concurrent readers: a reader is served by a round that started after
it asked, one round at a time; a failed round fails its readers and no others."""

from __future__ import annotations

import asyncio

import pytest

from manager.raft.read_barrier import SharedRounds
from manager.store import NotLeader


class Rounds:
    """A round function whose rounds the test finishes one by one."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[int]] = []
        self.changed = asyncio.Event()

    async def run(self) -> int:
        round_done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.started.append(round_done)
        self.changed.set()
        return await round_done

    async def wait_started(self, count: int) -> asyncio.Future[int]:
        async with asyncio.timeout(5):
            while len(self.started) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.started[count - 1]


async def test_readers_share_a_round_and_later_readers_wait_for_the_next() -> None:
    rounds = Rounds()
    shared = SharedRounds(rounds.run)
    first = [asyncio.ensure_future(shared.wait()) for _ in range(3)]
    in_flight = await rounds.wait_started(1)
    # These came while the first round was in flight: it may sit before a write they saw
    # acknowledged, so they must not get its index.
    later = [asyncio.ensure_future(shared.wait()) for _ in range(2)]
    in_flight.set_result(7)
    assert await asyncio.gather(*first) == [7, 7, 7]
    assert not any(reader.done() for reader in later)

    (await rounds.wait_started(2)).set_result(9)
    assert await asyncio.gather(*later) == [9, 9]
    assert len(rounds.started) == 2


async def test_a_failed_round_fails_its_readers_only() -> None:
    rounds = Rounds()
    shared = SharedRounds(rounds.run)
    failing = asyncio.ensure_future(shared.wait())
    (await rounds.wait_started(1)).set_exception(NotLeader("10.0.0.9:4242"))
    with pytest.raises(NotLeader, match=r"10\.0\.0\.9:4242"):
        await failing

    after = asyncio.ensure_future(shared.wait())
    (await rounds.wait_started(2)).set_result(12)
    assert await after == 12


async def test_a_reader_that_gives_up_leaves_the_round_to_the_others() -> None:
    rounds = Rounds()
    shared = SharedRounds(rounds.run)
    impatient = asyncio.ensure_future(shared.wait())
    patient = asyncio.ensure_future(shared.wait())
    in_flight = await rounds.wait_started(1)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    in_flight.set_result(3)
    assert await patient == 3
