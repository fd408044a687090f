"""The asyncio face of one manager's raft node: the store's Proposer, leadership, read
barriers, membership and status.

The node runs in its own thread. Calls from the loop only queue work for it (a proposal,
or a function run between ticks); its answers come back through `call_soon_threadsafe`, so
nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pysyncobj.config import FAIL_REASON

from manager.raft import membership, metrics
from manager.raft.config import RaftConfig, parse_address
from manager.raft.errors import MembershipRefused, RaftError, RaftFailed
from manager.raft.leadership import Leadership, LeadershipWatch
from manager.raft.node import RaftNode
from manager.raft.read_barrier import SharedRounds
from manager.raft.ticker import TickThread
from manager.store import (
    ApplyResult,
    NotLeader,
    ProposalFailed,
    ProposalOutcomeUnknown,
    Store,
    TransactionTooLarge,
)
from manager.store.errors import StoreError
from manager.store.proposer import SequenceSource
from shoal.v1 import store_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")

_BARRIER = store_pb2.StoreActions().SerializeToString()  # no proposer: never deduplicated
_NOT_APPLIED = {FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, FAIL_REASON.DISCARDED}
_MAYBE_APPLIED = {FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME}
# A read barrier proposed to a leader that then died is never answered: after this long it
# is proposed again (commits take milliseconds; elections here well under a second).
BARRIER_ATTEMPT_S = 1.0
ELECTION_POLL_S = 0.05  # how often a read barrier looks for a new leader during an election


def _settle(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True)
class RaftStatus:
    address: str
    term: int
    is_leader: bool
    leader: str | None
    commit_index: int
    last_applied: int
    members: list[str]
    reachable: list[str]
    log_entries: int
    snapshot_index: int


class Raft:
    """Replicates one Store across the managers. Implements manager.store.Proposer."""

    def __init__(self, config: RaftConfig, store: Store) -> None:
        config.validate()
        self.config = config
        self._store = store
        self._sequences = SequenceSource()
        self.leadership = LeadershipWatch()
        self._node: RaftNode | None = None
        self._ticker: TickThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: RaftFailed | None = None
        self._stopped: asyncio.Event | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._membership_lock = asyncio.Lock()
        self._read_rounds = SharedRounds(self._read_round)

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal and snapshot, bind the raft port, start ticking."""
        if self._node is not None:
            raise RaftError("raft node already started")
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        # Key derivation and reading the journal take a while: not on the loop.
        node = await asyncio.to_thread(RaftNode, self.config, self._store, self._leader_changed)
        self._node = node
        self._ticker = TickThread(
            node,
            self.config.tick_period,
            self.config.election_timeout[0] / 2,
            self._tick_thread_stopped,
        )
        self._ticker.start()

    async def stop(self) -> None:
        if self._ticker is not None:
            await asyncio.to_thread(self._ticker.stop)
        if self._stopped is not None:
            await self._stopped.wait()

    async def wait_stopped(self) -> RaftFailed | None:
        """Wait until the node stops; the failure that stopped it, or None for `stop()`."""
        assert self._stopped is not None, "raft node not started"
        await self._stopped.wait()
        return self._failure

    # -- proposals (manager.store.Proposer) -----------------------------------------------

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        node = self._running_node()
        if not node._isLeader():
            raise NotLeader(node.leader_address())
        self._sequences.stamp(actions)
        data = actions.SerializeToString()
        if len(data) > self.config.max_proposal_bytes:
            raise TransactionTooLarge(
                f"store transaction of {len(data)} bytes is larger than the limit of "
                f"{self.config.max_proposal_bytes}; split it"
            )
        start = time.perf_counter()
        result = await self._submit(node, data)
        metrics.PROPOSAL_SECONDS.observe(time.perf_counter() - start)
        return result.committed_index()

    async def read_barrier(self) -> int:
        """A linearizable read point, on any member: once this returns, this manager's
        store holds every write committed before the call (by this leader or any other);
        returns the raft index of that point. Control serves its reads after one.

        It commits an empty entry through the leader (a follower's pysyncobj hands it to
        the leader) and returns once this member has applied it: the entry commits only
        while its leader still has a majority, and it follows every earlier commit in the
        log. Concurrent callers share entries (read_barrier.py)."""
        self._running_node()
        start = time.perf_counter()
        index = await self._read_rounds.wait()
        metrics.READ_BARRIER_SECONDS.observe(time.perf_counter() - start)
        return index

    async def _read_round(self) -> int:
        """Commit an empty entry through whichever member leads. The entry changes nothing,
        so one lost with a leader that died (or stuck behind an election) is proposed again
        to the next one, until `proposal_timeout`: a read waits out a failover instead of
        failing with it."""
        node = self._running_node()
        loop = self._running_loop()
        deadline = loop.time() + self.config.proposal_timeout
        while (remaining := deadline - loop.time()) > 0:
            if node.leader_address() is None:
                await asyncio.sleep(min(ELECTION_POLL_S, remaining))  # an election is on
                continue
            try:
                return (await self._submit(node, _BARRIER, min(BARRIER_ATTEMPT_S, remaining))).index
            except (ProposalOutcomeUnknown, NotLeader):
                continue
        raise ProposalFailed(
            "no linearizable read point: no leader committed a barrier entry within "
            f"{self.config.proposal_timeout} s; retry"
        )

    async def _submit(
        self, node: RaftNode, data: bytes, timeout: float | None = None
    ) -> ApplyResult:
        timeout = self.config.proposal_timeout if timeout is None else timeout
        loop = self._running_loop()
        future: asyncio.Future[ApplyResult] = loop.create_future()
        self._pending.add(future)

        def done(result: Any, error: int) -> None:  # tick thread
            loop.call_soon_threadsafe(self._resolve, future, result, error)

        node.apply(data, callback=done)
        node.wake()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise ProposalOutcomeUnknown(
                f"not committed within {timeout} s; proposing the same StoreActions again is safe"
            ) from None
        finally:
            self._pending.discard(future)

    def _resolve(self, future: asyncio.Future[ApplyResult], result: Any, error: int) -> None:
        if future.done():
            return
        if error == FAIL_REASON.SUCCESS:
            future.set_result(result)
        else:
            future.set_exception(self._proposal_error(error))

    def _proposal_error(self, error: int) -> StoreError:
        if error in _NOT_APPLIED:
            return NotLeader(self.leader_address())
        if error in _MAYBE_APPLIED:
            return ProposalOutcomeUnknown(
                "leadership changed before the proposal was known to commit; proposing the "
                "same StoreActions again is safe"
            )
        if error == FAIL_REASON.QUEUE_FULL:
            return ProposalFailed("the raft proposal queue is full; retry later")
        return ProposalFailed(f"raft refused the proposal (pysyncobj reason {error})")

    # -- leadership -----------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._node is not None and self._failure is None and bool(self._node._isLeader())

    def leader_address(self) -> str | None:
        """Raft address of the leader as last known here (None during an election)."""
        return None if self._node is None else self._node.leader_address()

    def _leader_changed(self, leader: bool) -> None:  # tick thread
        node = self._node
        if node is None:  # a state change while the node is being built: no entry yet
            return
        term = node.raftCurrentTerm
        if leader:
            node.apply(_BARRIER, callback=functools.partial(self._barrier_committed, term))
        else:
            self._post(self.leadership.set, Leadership(False, term))

    def _barrier_committed(self, term: int, result: Any, error: int) -> None:  # tick thread
        node = self._node
        if (
            error == FAIL_REASON.SUCCESS
            and node is not None
            and node._isLeader()
            and node.raftCurrentTerm == term
        ):
            self._post(self.leadership.set, Leadership(True, term))

    # -- membership -----------------------------------------------------------------------

    async def add_member(self, address: str, force: bool = False) -> None:
        """Add one manager (then start it with joining=True). Refused when the group could
        then not reach a quorum, unless `force`."""
        parse_address(address, "new raft member")
        await self._change_membership(
            address,
            lambda node: membership.check_add(node.members(), node.reachable(), address, force),
            lambda node, callback: node.addNodeToCluster(address, callback=callback),
        )

    async def remove_member(self, address: str, force: bool = False) -> None:
        """Remove one manager. Refused when the rest could not reach a quorum, unless
        `force`, and for the leader itself."""
        parse_address(address, "raft member")
        await self._change_membership(
            address,
            lambda node: membership.check_remove(
                node.members(), node.reachable(), node.address, address, force
            ),
            lambda node, callback: node.removeNodeFromCluster(address, callback=callback),
        )

    async def _change_membership(
        self,
        address: str,
        check: Callable[[RaftNode], None],
        change: Callable[[RaftNode, Callable[[Any, int], None]], None],
    ) -> None:
        loop = self._running_loop()
        async with self._membership_lock:
            future: asyncio.Future[int] = loop.create_future()

            def done(result: Any, error: int) -> None:  # tick thread
                loop.call_soon_threadsafe(_settle, future, error)

            def in_tick(node: RaftNode) -> None:
                if not node._isLeader():
                    raise NotLeader(node.leader_address())
                check(node)
                change(node, done)

            await self._in_tick(in_tick)
            try:
                error = await asyncio.wait_for(future, self.config.proposal_timeout)
            except TimeoutError:
                raise ProposalOutcomeUnknown(
                    f"the membership change for {address} did not commit within "
                    f"{self.config.proposal_timeout} s"
                ) from None
        if error == FAIL_REASON.REQUEST_DENIED:
            raise MembershipRefused(
                f"raft refused the membership change for {address}: the leader's first "
                "entry of its term or the previous change has not committed yet; retry"
            )
        if error != FAIL_REASON.SUCCESS:
            raise self._proposal_error(error)

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0) -> str:
        """Hand leadership to `to` (or the most up-to-date member) before this manager is
        demoted or removed; returns the new leader's address."""
        if to is not None:
            parse_address(to, "new raft leader")
        loop = self._running_loop()
        sent: asyncio.Future[int] = loop.create_future()

        def request(node: RaftNode) -> None:
            if not node._isLeader():
                raise NotLeader(node.leader_address())
            node.transferLeadership(
                to, callback=lambda result, error: loop.call_soon_threadsafe(_settle, sent, error)
            )

        await self._in_tick(request)
        if await sent != FAIL_REASON.SUCCESS:
            raise RaftError(
                f"leadership transfer to {to or 'another member'} refused: the target must be "
                "connected and hold every entry of the leader's log"
            )
        try:
            async with (
                asyncio.timeout(timeout),
                contextlib.aclosing(self.leadership.changes()) as changes,
            ):
                async for change in changes:
                    if not change.is_leader:
                        break
                while (leader := self.leader_address()) in (None, self.config.address):
                    await asyncio.sleep(self.config.heartbeat_period)
        except TimeoutError:
            raise RaftError(f"leadership did not move within {timeout} s") from None
        assert leader is not None
        return leader

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> RaftStatus:
        def read(node: RaftNode) -> RaftStatus:
            return RaftStatus(
                address=node.address,
                term=node.raftCurrentTerm,
                is_leader=bool(node._isLeader()),
                leader=node.leader_address(),
                commit_index=node.raftCommitIndex,
                last_applied=node.raftLastApplied,
                members=sorted(node.members()),
                reachable=sorted(node.reachable()),
                log_entries=len(node.journal),
                snapshot_index=node.snapshots.snapshot_index,
            )

        return await self._in_tick(read)

    # -- plumbing -------------------------------------------------------------------------

    def _running_node(self) -> RaftNode:
        if self._failure is not None:
            raise self._failure
        if self._node is None:
            raise RaftFailed("the raft node is not started")
        return self._node

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "raft node not started"
        return self._loop

    async def _in_tick(self, fn: Callable[[RaftNode], T]) -> T:
        node = self._running_node()
        assert self._ticker is not None
        result: T = await asyncio.wrap_future(self._ticker.call(lambda: fn(node)))
        return result

    def _post(self, fn: Callable[[T], None], value: T) -> None:
        """Run fn(value) on the loop (from the tick thread)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening
                loop.call_soon_threadsafe(fn, value)

    def _tick_thread_stopped(self, error: BaseException | None) -> None:  # tick thread
        self._post(self._stopped_on_loop, error)

    def _stopped_on_loop(self, error: BaseException | None) -> None:
        if error is not None:
            self._failure = RaftFailed(f"the raft node failed: {error!r}", error)
        else:
            self._failure = RaftFailed("the raft node was stopped")
        for future in list(self._pending):
            if not future.done():
                future.set_exception(self._failure)
        self.leadership.set(Leadership(False, self.leadership.current.term))
        assert self._stopped is not None
        self._stopped.set()
