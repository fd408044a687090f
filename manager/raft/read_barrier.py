"""Linearizable read points shared by concurrent readers.

A reader asks for a read point: a raft index such that, once this manager's store has
applied it, the store holds every write committed before the reader asked. A round makes
one (an empty entry committed through the leader, see `Raft.read_barrier`). Rounds cost a
commit each, so readers share them: every reader that arrives while a round is in flight
waits for the next round, which then serves all of them. Joining the round in flight would
be wrong: it may have been proposed before a write that the reader has already seen
acknowledged, and so sit before it in the log. One round runs at a time, so under load a
read waits for at most two rounds and the log gets one entry per round, not per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SharedRounds:
    def __init__(self, run_round: Callable[[], Awaitable[int]]) -> None:
        self._run_round = run_round
        # The round that serves the readers arrived since the current one started.
        self._next: asyncio.Future[int] | None = None
        self._runner: asyncio.Task[None] | None = None

    async def wait(self) -> int:
        """The index of a round that started after this call; its failure, raised."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        round_done = self._next
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # A reader that gives up (cancelled) leaves the round to the others.
        return await asyncio.shield(round_done)

    async def _run(self) -> None:
        while (round_done := self._next) is not None:
            self._next = None
            try:
                index = await self._run_round()
            except asyncio.CancelledError:  # the loop is closing: nobody gets an answer
                round_done.cancel()
                if self._next is not None:
                    self._next.cancel()
                    self._next = None
                raise
            except Exception as error:
                round_done.set_exception(error)
                # Retrieved here: a round whose readers all gave up must not log
                # "exception was never retrieved".
                round_done.exception()
            else:
                round_done.set_result(index)
