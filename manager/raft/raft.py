"""One manager's raft node: Shoal's consensus core (manager.raft.core) driven on the
asyncio loop, with its log on disk (wal.py), its snapshots (snapshot_store.py) and its
messages on mutual-TLS gRPC streams (peer_transport.py). It is the store's Proposer and
gives leadership, linearizable read points, membership and status.

One task, the driver, owns the core: it feeds it what arrived (messages, ticks,
proposals, calls queued with `_in_driver`), then carries out each Ready in order: the log
written and fsynced (in a thread, so the loop keeps serving), messages sent, committed
entries applied to the store, read points answered. Proposals that arrive meanwhile wait
for the next Ready: under load, one fsync covers many writes.

Identity: members are node ids, the ones their certificates name; the transport admits
only managers of this cluster that the store has not removed, and the driver takes
messages only from members (or, while this manager has no log yet, from whoever leads).
Addresses are only where to reach a member: from the store's Node objects, else from
the configured address book.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from manager.ca.auth import AuthorizationInterceptor, Authorizer, Standing
from manager.ca.client import NodeCredentials
from manager.ca.pem import certificate_pem, private_key_pem
from manager.ca.roles import Role as CertificateRole
from manager.ca.tls import MANAGER_CHANNEL_OPTIONS
from manager.node_rpc import certificate_identity
from manager.raft import membership, metrics
from manager.raft.config import RaftConfig, parse_address
from manager.raft.core import (
    ConfigChange,
    ConfigChangeKind,
    Entry,
    EntryKind,
    HardState,
    Membership,
    Message,
    ProposalDropped,
    Ready,
    Role,
)
from manager.raft.core import NotLeader as CoreNotLeader
from manager.raft.core import Raft as Core
from manager.raft.errors import MembershipRefused, RaftDataError, RaftError, RaftFailed
from manager.raft.leadership import Leadership, LeadershipWatch
from manager.raft.peer_transport import TRANSPORT_POLICIES, Peers, add_transport_service
from manager.raft.read_barrier import SharedRounds
from manager.raft.snapshot_store import SnapshotStore
from manager.raft.wal import WriteAheadLog
from manager.reloadable_tls import ReloadableServerCredentials
from manager.store import (
    ApplyResult,
    InvalidAction,
    NotLeader,
    ProposalFailed,
    ProposalOutcomeUnknown,
    Store,
    TransactionTooLarge,
    decode_snapshot,
    encode_snapshot,
)
from manager.store.errors import StoreError
from manager.store.proposer import SequenceSource
from shoal.v1 import store_pb2

log = logging.getLogger(__name__)

T = TypeVar("T")

WAL_FILE = "raft.wal"
SNAPSHOT_FILE = "raft.snapshot"
# A read point asked of a leader that then died is never answered: after this long it is
# asked again (of the next leader). Commits take milliseconds; elections under a second.
READ_ATTEMPT_S = 1.0
ELECTION_POLL_S = 0.05
# A learner becomes a voter once its log is within this many entries of the commit index.
PROMOTION_LAG = 64
# Entries per append message (a byte limit applies too): a burst of proposals goes out in
# few messages, each answered with one fsync.
MAX_APPEND_ENTRIES = 4096
# Appends sent to a follower and not yet answered, at most (each up to a quarter of the
# message limit): what a slow follower can have queued for it.
MAX_INFLIGHT = 64
# A member is reachable while heard from within this many election timeouts (and its
# stream has not broken since: a manager that died is known at once).
REACHABLE_TIMEOUTS = 2
# How long a stopping leader waits for leadership to move before it just stops.
STOP_TRANSFER_S = 1.0
# Messages waiting for the driver; past this, more are dropped (Raft recovers from loss).
INBOX_LIMIT = 10_000


@dataclass(frozen=True)
class RaftStatus:
    node_id: str
    address: str
    term: int
    is_leader: bool
    leader: str | None  # node id
    commit_index: int
    last_applied: int
    members: list[str]  # node ids: voters and learners
    learners: list[str]
    reachable: list[str]  # node ids heard from lately, this one included
    log_entries: int
    snapshot_index: int


def bootstrap_entries(voters: list[str]) -> list[Entry]:
    """The first entries of a new group, the same on every founding member: each voter
    added, then promoted (term 1, committed from the start)."""
    entries: list[Entry] = []
    for node_id in sorted(voters):
        for kind in (ConfigChangeKind.ADD_LEARNER, ConfigChangeKind.PROMOTE):
            change = ConfigChange(kind, node_id).encode()
            entries.append(Entry(1, len(entries) + 1, EntryKind.CONFIG, change))
    return entries


class Raft:
    """Replicates one Store across the managers. Implements manager.store.Proposer."""

    def __init__(
        self,
        config: RaftConfig,
        store: Store,
        credentials: NodeCredentials,
        standing: Standing | None = None,
        addresses: Callable[[str], str | None] | None = None,
    ) -> None:
        """`standing`: asked of every caller of the raft port after its certificate checks
        out (refuse removed nodes); `addresses`: where a member listens now (the store's
        view), before the configured address book."""
        config.validate()
        self.config = config
        self._store = store
        self._credentials = credentials
        self._standing = standing
        self._addresses = addresses
        self._learned: dict[str, str] = {}
        self._sequences = SequenceSource()
        self.leadership = LeadershipWatch()
        self._core: Core | None = None
        self._wal: WriteAheadLog | None = None
        self._snapshots = SnapshotStore(config.data_dir / SNAPSHOT_FILE)
        self._peers: Peers | None = None
        self._server: grpc.aio.Server | None = None
        self._tls: ReloadableServerCredentials | None = None
        self._driver: asyncio.Task[None] | None = None
        self._failure: RaftFailed | None = None
        self._stopped: asyncio.Event | None = None
        self._wake = asyncio.Event()
        self._inbox: deque[Message] = deque()
        self._proposals: deque[tuple[bytes, asyncio.Future[ApplyResult]]] = deque()
        self._calls: deque[tuple[Callable[[Core], Any], asyncio.Future[Any]]] = deque()
        self._waiting: dict[int, tuple[int, asyncio.Future[ApplyResult]]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_points: list[tuple[int, asyncio.Future[int]]] = []
        self._read_ids = itertools.count(1)
        self._read_nonce = os.urandom(8)
        self._read_rounds = SharedRounds(self._read_round)
        self._membership_lock = asyncio.Lock()
        self._heard: dict[str, float] = {}
        self._seen_role: tuple[Role, int] | None = None
        self._compacting: asyncio.Task[tuple[int, bytes]] | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Read the log and snapshot, bind the raft port, start the driver."""
        if self._core is not None:
            raise RaftError("raft node already started")
        self._stopped = asyncio.Event()
        self._core = await asyncio.to_thread(self._open)
        try:
            await self._serve()
        except BaseException:
            assert self._wal is not None
            self._wal.close()
            raise
        self._peers = Peers(self._connect, self.address_of, on_reset=self._peer_reset)
        self._driver = asyncio.create_task(self._drive(), name=f"raft {self.config.node_id}")

    def _open(self) -> Core:
        """The core as the disk left it (a thread: reading the log takes a while)."""
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.data_dir.chmod(0o700)  # holds the whole store: the owner's only
        snapshot = self._snapshots.load()
        wal = WriteAheadLog(config.data_dir / WAL_FILE)
        self._wal = wal
        try:
            loaded = wal.loaded
            if loaded.snapshot is not None and (
                snapshot is None or snapshot.index < loaded.snapshot.index
            ):
                raise RaftDataError(
                    f"raft log {wal.path} starts after raft index {loaded.snapshot.index}, but "
                    f"the snapshot {self._snapshots.path} is "
                    f"{'missing' if snapshot is None else f'at {snapshot.index}'}"
                )
            entries = loaded.entries
            hard_state = loaded.hard_state
            if snapshot is not None:
                entries = [e for e in entries if e.index > snapshot.index]
                if entries and entries[0].index != snapshot.index + 1:
                    raise RaftDataError(
                        f"raft log {wal.path} does not follow the snapshot at {snapshot.index}"
                    )
                self._store.restore(decode_snapshot(snapshot.data))
            elif not entries and config.bootstrap:
                entries = bootstrap_entries([config.node_id, *config.peers])
                hard_state = HardState(term=1, commit=len(entries))
                wal.save(entries, hard_state)
                log.info("raft: new group of %s", sorted([config.node_id, *config.peers]))
            return Core(
                config.node_id,
                membership=Membership(frozenset()),
                hard_state=hard_state,
                snapshot=snapshot,
                entries=entries,
                rng=random.Random(),
                election_ticks=config.election_ticks,
                heartbeat_ticks=config.heartbeat_ticks,
                max_append_entries=MAX_APPEND_ENTRIES,
                max_append_bytes=config.max_message_bytes // 4,
                max_inflight=MAX_INFLIGHT,
            )
        except BaseException:
            wal.close()
            raise

    async def _serve(self) -> None:
        identity = self._credentials.identity
        if identity.node_id != self.config.node_id or identity.role is not CertificateRole.MANAGER:
            raise RaftError(
                f"the raft node {self.config.node_id} needs its own manager certificate, not "
                f"{identity.role.ou} {identity.node_id}'s"
            )
        authorizer = Authorizer(
            self._credentials.root, identity.cluster_id, standing=self._standing
        )
        server = grpc.aio.server(
            interceptors=[AuthorizationInterceptor(authorizer, TRANSPORT_POLICIES)],
            options=[
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
            ],
        )
        add_transport_service(
            server, self.config.node_id, certificate_identity(authorizer), self._deliver
        )
        self._tls = ReloadableServerCredentials(
            certificate_pem(self._credentials.certificate),
            private_key_pem(self._credentials.key),
            self._credentials.root.cert_pem,
        )
        try:
            server.add_secure_port(self.config.address, self._tls.credentials)
        except RuntimeError:
            raise RaftError(
                f"cannot bind the raft port {self.config.address}: in use, or not an address "
                "of this machine"
            ) from None
        await server.start()
        self._server = server

    def reload_credentials(self, credentials: NodeCredentials) -> None:
        """Serve and dial with a renewed certificate (new connections)."""
        self._credentials = credentials
        if self._tls is not None:
            self._tls.replace(
                certificate_pem(credentials.certificate), private_key_pem(credentials.key)
            )

    def _connect(self, address: str) -> grpc.aio.Channel:
        options = [o for o in MANAGER_CHANNEL_OPTIONS if not o[0].startswith("grpc.max_")] + [
            ("grpc.max_send_message_length", self.config.max_message_bytes),
            ("grpc.max_receive_message_length", self.config.max_message_bytes),
            # gRPC's own reconnect backoff starts at 1 s: a member that restarts must be
            # reached again well within an election timeout.
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 250),
            ("grpc.keepalive_time_ms", 1000),
            ("grpc.keepalive_timeout_ms", 2000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        return grpc.aio.secure_channel(address, self._credentials.channel_credentials(), options)

    async def stop(self) -> None:
        """Stop; a leader first hands leadership to a caught-up voter, so the others need
        not wait out an election timeout (a planned restart costs no failover)."""
        core = self._core
        if self.is_leader() and core is not None and len(core.membership.voters) > 1:
            try:
                await self.transfer_leadership(timeout=STOP_TRANSFER_S)
            except (RaftError, StoreError) as exc:
                log.info("raft: stopping without handing over leadership: %s", exc)
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()
        if self._stopped is not None:
            await self._stopped.wait()

    async def wait_stopped(self) -> RaftFailed | None:
        """Wait until the node stops; the failure that stopped it, or None for `stop()`."""
        assert self._stopped is not None, "raft node not started"
        await self._stopped.wait()
        return self._failure

    # -- the driver -----------------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        """A message from the transport (on the loop)."""
        if len(self._inbox) >= INBOX_LIMIT:
            return
        self._heard[message.src] = time.monotonic()
        self._inbox.append(message)
        self._wake.set()

    async def _drive(self) -> None:
        core = self._running_core()
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        next_tick = loop.time() + self.config.tick_period
        try:
            if core.membership.voters == {self.config.node_id}:
                core.campaign()  # alone: no one to wait for
            while True:
                if not (self._inbox or self._proposals or self._calls):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                            await self._wake.wait()
                self._wake.clear()
                await self._finish_compaction(core)
                while self._inbox:
                    message = self._inbox.popleft()
                    if self._accepts(core, message):
                        core.step(message)
                if loop.time() >= next_tick:
                    # One tick however long the loop was away: a stall here is not silence
                    # from the leader.
                    core.tick()
                    next_tick = loop.time() + self.config.tick_period
                self._run_calls(core)
                self._take_proposals(core)
                self._promote_learners(core)
                ready = core.ready()
                if ready:
                    await self._carry_out(core, ready)
                    core.advance(ready)
                self._after_ready(core)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # a bug or a disk error: stop, never go on half-done
            log.exception("raft node %s failed", self.config.node_id)
            error = exc
        finally:
            await self._shut_down(error)

    def _peer_reset(self, node_id: str) -> None:
        """The connection to a member was reset or refused: if it was the leader, do not
        wait out an election timeout to replace it."""
        core = self._core
        if core is not None and node_id == core.leader and core.role is Role.FOLLOWER:
            self._calls.append((Core.leader_lost, asyncio.get_running_loop().create_future()))
            self._wake.set()

    def _accepts(self, core: Core, message: Message) -> bool:
        members = core.membership.members
        if members:
            return message.src in members
        # No log yet (a joining manager): a leader among the managers it was told of brings
        # the group (any, when it was told of none).
        return not self.config.peers or message.src in self.config.peers

    def _run_calls(self, core: Core) -> None:
        while self._calls:
            fn, future = self._calls.popleft()
            if future.done():
                continue
            try:
                future.set_result(fn(core))
            except Exception as exc:
                future.set_exception(exc)

    def _take_proposals(self, core: Core) -> None:
        """Everything proposed since the last Ready, as one batch (one append message per
        follower, one fsync on each member)."""
        batch = [(data, f) for data, f in self._proposals if not f.done()]
        self._proposals.clear()
        if not batch:
            return
        try:
            indexes = core.propose_many([data for data, _ in batch])
        except CoreNotLeader:
            error: StoreError = NotLeader(self.leader_address())
        except ProposalDropped as exc:
            error = ProposalFailed(f"{exc}; retry shortly")
        else:
            for index, (_, future) in zip(indexes, batch, strict=True):
                self._waiting[index] = (core.term, future)
            return
        for _, future in batch:
            future.set_exception(error)

    def _promote_learners(self, core: Core) -> None:
        """Leader: a learner whose log caught up becomes a voter (one change at a time)."""
        if core.role is not Role.LEADER or not core.membership.learners:
            return
        if core.config_change_pending:
            return
        matches = core.match_indexes()
        for learner in sorted(core.membership.learners):
            if matches.get(learner, 0) + PROMOTION_LAG >= core.commit and self._recently_heard(
                learner
            ):
                core.propose_config(ConfigChange(ConfigChangeKind.PROMOTE, learner))
                log.info("raft: %s caught up: promoted to voter", learner)
                return

    async def _carry_out(self, core: Core, ready: Ready) -> None:
        wal = self._wal
        assert wal is not None and self._peers is not None
        if ready.snapshot is not None:
            # The leader's snapshot replaces everything: on disk before the log says so.
            await asyncio.to_thread(self._snapshots.save, ready.snapshot)
        if ready.entries or ready.hard_state is not None or ready.snapshot is not None:
            await asyncio.to_thread(wal.save, ready.entries, ready.hard_state, ready.snapshot)
        for message in ready.messages:
            self._peers.send(message)
        if ready.snapshot is not None:
            image = await asyncio.to_thread(decode_snapshot, ready.snapshot.data)
            self._store.restore(image)
            log.info("raft: store restored from the leader's snapshot at %d", image.index)
        for entry in ready.committed:
            self._apply(entry)
        for read in ready.read_states:
            future = self._reads.pop(read.context, None)
            if future is not None and not future.done():
                self._read_points.append((read.index, future))

    def _apply(self, entry: Entry) -> None:
        start = time.perf_counter()
        actions = store_pb2.StoreActions()
        result: ApplyResult | None = None
        if entry.kind is EntryKind.NORMAL and entry.data:
            try:
                actions = store_pb2.StoreActions.FromString(entry.data)
            except DecodeError as exc:
                log.error("raft entry %d is not a StoreActions (%s): skipped", entry.index, exc)
                result = ApplyResult(entry.index, InvalidAction(f"entry {entry.index} is bad"))
                actions = store_pb2.StoreActions()
        applied = self._store.apply(entry.index, actions)
        result = result or applied
        metrics.APPLY_SECONDS.observe(time.perf_counter() - start)
        waiting = self._waiting.pop(entry.index, None)
        if waiting is None:
            return
        term, future = waiting
        if future.done():
            return
        if entry.term == term:
            future.set_result(result)
        else:
            future.set_exception(_lost_leadership())

    def _after_ready(self, core: Core) -> None:
        leading = core.role is Role.LEADER
        if (core.role, core.term) != self._seen_role:
            log.info(
                "raft: %s in term %d (leader %s)", core.role.value, core.term, core.leader or "-"
            )
            self._seen_role = (core.role, core.term)
        if not leading and self._waiting:
            # Entries of a deposed leader may still commit under the next one; whoever
            # waits for them proposes again, which the store never applies twice.
            waiting, self._waiting = self._waiting, {}
            for _, proposal in waiting.values():
                if not proposal.done():
                    proposal.set_exception(_lost_leadership())
        announced = leading and core.term_at(core.applied) == core.term
        self.leadership.set(Leadership(announced, core.term))
        if self._read_points:
            points, self._read_points = self._read_points, []
            for index, future in points:
                if future.done():
                    continue
                if index <= core.applied:
                    future.set_result(index)
                else:
                    self._read_points.append((index, future))
        if self._peers is not None:
            self._peers.keep(core.membership.members - {self.config.node_id})
        metrics.TERM.set(core.term)
        metrics.COMMIT_INDEX.set(core.commit)
        metrics.LEADER.set(1 if leading else 0)
        self._maybe_compact(core)

    # -- snapshots of our own ---------------------------------------------------------------

    def _maybe_compact(self, core: Core) -> None:
        snapshot_index = core.snapshot.index if core.snapshot else 0
        if self._compacting is not None:
            return
        if core.applied - snapshot_index < self.config.compaction_min_entries:
            return
        image = self._store.capture()
        if image.index != core.applied:
            raise RaftError(f"the store is at {image.index}, raft applied {core.applied}")

        async def encode() -> tuple[int, bytes]:
            return image.index, await asyncio.to_thread(encode_snapshot, image)

        self._compacting = asyncio.create_task(encode(), name="raft snapshot")
        self._compacting.add_done_callback(lambda _: self._wake.set())

    async def _finish_compaction(self, core: Core) -> None:
        task = self._compacting
        if task is None or not task.done():
            return
        self._compacting = None
        index, data = task.result()
        start = time.perf_counter()
        snapshot = core.compact(index, data)
        if snapshot.index != index:
            return  # a newer snapshot (the leader's) came first
        await asyncio.to_thread(self._snapshots.save, snapshot)
        assert self._wal is not None
        # Every entry in the core went through a Ready already: all of them are durable.
        kept = core.entries(core.first_index, core.last_index)
        await asyncio.to_thread(self._wal.compact, snapshot, kept)
        metrics.SNAPSHOT_SECONDS.observe(time.perf_counter() - start)
        log.info("raft: snapshot at %d; log compacted", index)

    async def _shut_down(self, error: BaseException | None) -> None:
        if error is not None:
            self._failure = RaftFailed(f"the raft node failed: {error!r}", error)
        else:
            self._failure = RaftFailed("the raft node was stopped")
        for future in [
            *(f for _, f in self._waiting.values()),
            *(f for _, f in self._proposals),
            *(f for _, f in self._calls),
            *self._reads.values(),
            *(f for _, f in self._read_points),
        ]:
            if not future.done():
                future.set_exception(self._failure)
        self._waiting.clear()
        self._proposals.clear()
        self._calls.clear()
        self._reads.clear()
        self._read_points.clear()
        if self._compacting is not None:
            self._compacting.cancel()
        self.leadership.set(Leadership(False, self.leadership.current.term))
        metrics.LEADER.set(0)
        with contextlib.suppress(Exception):
            if self._peers is not None:
                await self._peers.close()
        with contextlib.suppress(Exception):
            if self._server is not None:
                await self._server.stop(grace=0.2)
        if self._wal is not None:
            self._wal.close()
            self._wal = None
        assert self._stopped is not None
        self._stopped.set()

    # -- proposals (manager.store.Proposer) -----------------------------------------------

    async def propose(self, actions: store_pb2.StoreActions) -> int:
        core = self._running_core()
        if core.role is not Role.LEADER:
            raise NotLeader(self.leader_address())
        self._sequences.stamp(actions)
        data = actions.SerializeToString()
        if len(data) > self.config.max_proposal_bytes:
            raise TransactionTooLarge(
                f"store transaction of {len(data)} bytes is larger than the limit of "
                f"{self.config.max_proposal_bytes}; split it"
            )
        start = time.perf_counter()
        future: asyncio.Future[ApplyResult] = asyncio.get_running_loop().create_future()
        self._proposals.append((data, future))
        self._wake.set()
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.config.proposal_timeout)
        except TimeoutError:
            raise ProposalOutcomeUnknown(
                f"not committed within {self.config.proposal_timeout} s; proposing the same "
                "StoreActions again is safe"
            ) from None
        metrics.PROPOSAL_SECONDS.observe(time.perf_counter() - start)
        return result.committed_index()

    async def read_barrier(self) -> int:
        """A linearizable read point, on any member: once this returns, this manager's
        store holds every write committed before the call (by this leader or any other);
        returns the raft index of that point. Control serves its reads after one.

        The leader confirms it still leads with a quorum's heartbeat answers (etcd's
        ReadIndex: no log entry); a follower asks the leader. Concurrent callers share
        rounds (read_barrier.py)."""
        self._running_core()
        start = time.perf_counter()
        index = await self._read_rounds.wait()
        metrics.READ_BARRIER_SECONDS.observe(time.perf_counter() - start)
        return index

    async def _read_round(self) -> int:
        """One read point, asked again of the next leader if the one asked is deposed (its
        answer never comes), until `proposal_timeout`: a read waits out a failover."""
        core = self._running_core()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.proposal_timeout
        while (remaining := deadline - loop.time()) > 0:
            if not core.leader:
                await asyncio.sleep(min(ELECTION_POLL_S, remaining))  # an election is on
                continue
            # The leader keys pending reads by context: unique across members and restarts.
            context = self._read_nonce + next(self._read_ids).to_bytes(8, "big")
            answer: asyncio.Future[int] = loop.create_future()
            self._reads[context] = answer
            try:
                await self._in_driver(functools.partial(Core.read_index, context=context))
                return await asyncio.wait_for(
                    asyncio.shield(answer), min(READ_ATTEMPT_S, remaining)
                )
            except (TimeoutError, CoreNotLeader) as exc:
                log.info(
                    "raft: no read point within %.1f s (%s): leader %s, term %d, log to %d, "
                    "commit %d, applied %d, waiting for %s",
                    READ_ATTEMPT_S,
                    type(exc).__name__,
                    core.leader or "unknown",
                    core.term,
                    core.last_index,
                    core.commit,
                    core.applied,
                    [index for index, _ in self._read_points] or "an answer",
                )
                continue
            finally:
                self._reads.pop(context, None)
                if not answer.done():
                    answer.cancel()
        raise ProposalFailed(
            "no linearizable read point: no leader confirmed one within "
            f"{self.config.proposal_timeout} s; retry"
        )

    # -- leadership -----------------------------------------------------------------------

    def is_leader(self) -> bool:
        core = self._core
        return core is not None and self._failure is None and core.role is Role.LEADER

    def leader_id(self) -> str | None:
        """The leader's node id as last known here (None during an election)."""
        core = self._core
        return core.leader or None if core is not None and self._failure is None else None

    def leader_address(self) -> str | None:
        """The leader's raft address as last known here (None during an election)."""
        leader = self.leader_id()
        return None if leader is None else self.address_of(leader)

    def address_of(self, node_id: str) -> str | None:
        """Where member `node_id` listens for raft messages."""
        if node_id == self.config.node_id:
            return self.config.address
        found = self._addresses(node_id) if self._addresses is not None else None
        return found or self._learned.get(node_id) or self.config.peers.get(node_id)

    def _recently_heard(self, node_id: str) -> bool:
        """Heard from lately, and its stream has not broken since."""
        heard = self._heard.get(node_id)
        if heard is None:
            return False
        failed = self._peers.failed_at(node_id) if self._peers is not None else None
        if failed is not None and failed > heard:
            return False
        return time.monotonic() - heard < REACHABLE_TIMEOUTS * self.config.election_timeout

    def _reachable(self, core: Core, strict: bool = True) -> set[str]:
        """Members heard from lately (`strict`: what a membership change may count on), or
        also those a stream is open to (what a follower, which hears only from the leader,
        can tell of the others)."""
        assert self._peers is not None
        peers = self._peers
        found = {
            member
            for member in core.membership.members
            if self._recently_heard(member) or (not strict and peers.connected(member))
        }
        return {self.config.node_id} | found

    # -- membership -----------------------------------------------------------------------

    async def add_member(self, node_id: str, address: str) -> None:
        """Add a manager as a learner (then start it with an empty data dir): it follows
        the log without a vote, and the leader makes it a voter once it has caught up, so
        a manager that never starts cannot cost the group its quorum."""
        parse_address(address, f"raft address of {node_id}")
        self._learned[node_id] = address
        await self._change_membership(
            ConfigChange(ConfigChangeKind.ADD_LEARNER, node_id), lambda core: None
        )

    async def remove_member(self, node_id: str, force: bool = False) -> None:
        """Remove a manager. Refused when the rest could not reach a quorum, unless
        `force`, and for the leader itself (transfer leadership first)."""

        def check(core: Core) -> None:
            if node_id in core.membership.learners:
                return  # a learner never counts towards a quorum
            membership.check_remove(
                set(core.membership.voters),
                self._reachable(core),
                self.config.node_id,
                node_id,
                force,
            )

        await self._change_membership(ConfigChange(ConfigChangeKind.REMOVE, node_id), check)

    async def _change_membership(self, change: ConfigChange, check: Callable[[Core], None]) -> None:
        loop = asyncio.get_running_loop()
        async with self._membership_lock:
            applied: asyncio.Future[ApplyResult] = loop.create_future()

            def propose(core: Core) -> None:
                if core.role is not Role.LEADER:
                    raise NotLeader(self.leader_address())
                check(core)
                try:
                    index = core.propose_config(change)
                except ProposalDropped as exc:
                    raise MembershipRefused(
                        f"raft refused to {change.kind.value} {change.node}: {exc}; retry"
                    ) from None
                self._waiting[index] = (core.term, applied)

            await self._in_driver(propose)
            try:
                (await asyncio.wait_for(applied, self.config.proposal_timeout)).committed_index()
            except TimeoutError:
                raise ProposalOutcomeUnknown(
                    f"the change to {change.kind.value} {change.node} did not commit within "
                    f"{self.config.proposal_timeout} s"
                ) from None
        log.info("raft: %s %s done", change.kind.value, change.node)

    async def transfer_leadership(self, to: str | None = None, timeout: float = 5.0) -> str:
        """Hand leadership to `to` (or the most up-to-date reachable voter) before this
        manager is demoted or removed; returns the new leader's node id."""

        def request(core: Core) -> str:
            if core.role is not Role.LEADER:
                raise NotLeader(self.leader_address())
            target = to
            if target is None:
                matches = core.match_indexes()
                others = [
                    v
                    for v in core.membership.voters
                    if v != self.config.node_id and self._recently_heard(v)
                ]
                if not others:
                    raise RaftError("no other reachable voter to hand leadership to")
                target = max(sorted(others), key=lambda v: matches.get(v, 0))
            try:
                core.transfer_leadership(target)
            except (ValueError, ProposalDropped) as exc:
                raise RaftError(f"leadership transfer to {target} refused: {exc}") from None
            return target

        target = await self._in_driver(request)
        try:
            async with asyncio.timeout(timeout):
                while (leader := self.leader_id()) in (None, self.config.node_id):
                    await asyncio.sleep(self.config.tick_period)
        except TimeoutError:
            raise RaftError(f"leadership did not move to {target} within {timeout} s") from None
        assert leader is not None
        return leader

    # -- status ---------------------------------------------------------------------------

    async def status(self) -> RaftStatus:
        core = self._running_core()
        return RaftStatus(
            node_id=self.config.node_id,
            address=self.config.address,
            term=core.term,
            is_leader=core.role is Role.LEADER,
            leader=core.leader or None,
            commit_index=core.commit,
            last_applied=core.applied,
            members=sorted(core.membership.members),
            learners=sorted(core.membership.learners),
            reachable=sorted(self._reachable(core, strict=False)),
            log_entries=core.last_index - core.first_index + 1,
            snapshot_index=core.snapshot.index if core.snapshot else 0,
        )

    # -- plumbing -------------------------------------------------------------------------

    def _running_core(self) -> Core:
        if self._failure is not None:
            raise self._failure
        if self._core is None:
            raise RaftFailed("the raft node is not started")
        return self._core

    async def _in_driver(self, fn: Callable[[Core], T]) -> T:
        """Run fn(core) in the driver, between two Readies."""
        self._running_core()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.append((fn, future))
        self._wake.set()
        return await future


def _lost_leadership() -> StoreError:
    return ProposalOutcomeUnknown(
        "leadership changed before the proposal was known to commit; proposing the same "
        "StoreActions again is safe"
    )
