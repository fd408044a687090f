"""One manager's pysyncobj node, with Shoal's durable parts put in place of pysyncobj's.

Everything here runs in the tick thread (`ticker.TickThread`), except `apply` calls made
to queue a proposal (pysyncobj's queue is thread-safe) and `wake`.

What is changed, without forking pysyncobj (pinned to 0.3.17, whose internals this uses):
- the journal is `DurableJournal` (fsynced before any send and after every tick),
- snapshots are `SnapshotFiles` (Shoal's format, written off the tick thread, fsynced),
- commands are our protobuf bytes through the one replicated method `apply`,
- the raft port is encrypted and authenticated with the cluster key and bound to one address,
- a follower acknowledges every snapshot chunk, or the leader would drop the connection
  after `connection_timeout` of silence and restart any transfer that takes longer,
- new entries are sent to followers as soon as the leader appends them, and a new commit
  index as soon as the leader has it, not at the next heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from pysyncobj import SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.syncobj import SyncObjException

from manager.raft import metrics
from manager.raft.config import RaftConfig
from manager.raft.errors import RaftError, RaftFailed
from manager.raft.journal import DurableJournal
from manager.raft.snapshot_files import SnapshotFiles
from manager.raft.transport import SyncingTransport
from manager.store import ApplyResult, InvalidAction, Store
from shoal.v1 import store_pb2

log = logging.getLogger(__name__)

JOURNAL_FILE = "raft.journal"
SNAPSHOT_FILE = "raft.snapshot"
_NO_OP = b"\x01"  # pysyncobj's first log entry
_STATES = {0: "follower", 1: "candidate", 2: "leader"}


def _never_called(*args: Any) -> Any:
    """pysyncobj's own serializer hooks: set so that it hands snapshot work to its
    serializer object without pickling the node, and never called, since that object is
    replaced by SnapshotFiles."""
    raise RaftError("pysyncobj's serializer must not run: SnapshotFiles replaces it")


class RaftNode(SyncObj):  # type: ignore[misc]  # pysyncobj is untyped
    def __init__(
        self, config: RaftConfig, store: Store, on_leader_changed: Callable[[bool], None]
    ) -> None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.data_dir.chmod(0o700)  # holds the whole store: the owner's only
        self.journal = DurableJournal(config.data_dir / JOURNAL_FILE)
        self._store = store
        self._on_leader_changed = on_leader_changed
        # The commit index the followers were last sent (with entries or a heartbeat).
        self._commit_index_sent = 0
        low, high = config.election_timeout
        conf = SyncObjConf(
            password=config.key,
            autoTick=False,
            bindAddress=config.address,
            maxBindRetries=1,
            raftMinTimeout=low,
            raftMaxTimeout=high,
            appendEntriesPeriod=config.heartbeat_period,
            leaderFallbackTimeout=config.leader_fallback_timeout,
            connectionRetryTime=config.connection_retry_time,
            connectionTimeout=config.connection_timeout,
            appendEntriesUseBatch=True,
            # Above any single entry: pysyncobj's path for entries larger than a batch
            # splits them wrongly (it compares pickled offsets with the raw length).
            appendEntriesBatchSizeBytes=config.max_proposal_bytes + (1 << 18),
            logCompactionMinEntries=config.compaction_min_entries,
            logCompactionMinTime=config.compaction_min_seconds,
            logCompactionBatchSize=config.snapshot_chunk_bytes,
            fullDumpFile=str(config.data_dir / SNAPSHOT_FILE),
            serializer=_never_called,
            deserializer=_never_called,
            useFork=False,
            dynamicMembershipChange=True,
            onStateChanged=self._state_changed,
            sendBufferSize=1 << 20,
            recvBufferSize=1 << 20,
        )
        try:
            super().__init__(
                config.address, list(config.peers), conf, transportClass=SyncingTransport
            )
        except SyncObjException:
            self.journal._destroy()
            raise RaftError(
                f"cannot bind the raft port {config.address}: in use, or not an address "
                "of this machine"
            ) from None
        self.snapshots = SnapshotFiles(
            config.data_dir / SNAPSHOT_FILE,
            store,
            self.journal,
            [config.address, *config.peers],
            config.snapshot_chunk_bytes,
            self._SyncObj__transport.backlog,
        )
        self._use_durable_parts()
        # A pipe in pysyncobj's poller, written to cut a tick's wait short.
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller.subscribe(self._wake_read, self._drain_wakeups, POLL_EVENT_TYPE.READ)
        if config.joining:
            # Campaigning before the leader has added us would only depose it.
            self._SyncObj__raftElectionDeadline = math.inf

    def _use_durable_parts(self) -> None:
        """Swap pysyncobj's in-memory journal and pickling serializer for ours and redo
        what its constructor derived from the journal (no tick has run yet)."""
        journal = self.journal
        if len(journal) == 0:
            journal.add(_NO_OP, 1, 0)
            journal.sync()
        self._SyncObj__raftLog = journal
        self._SyncObj__raftCurrentTerm = max(journal.getCurrentTerm(), journal[-1][2])
        self._SyncObj__votedForNodeId = journal.getVotedForNodeId()
        self._SyncObj__raftCommitIndex = journal.getRaftCommitIndex()
        self._SyncObj__serializer = self.snapshots

    # -- the one replicated command -------------------------------------------------------

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, data: bytes) -> ApplyResult:
        """Apply one committed StoreActions to the store (on every member, in log order)."""
        index = self.raftLastApplied + 1
        start = time.perf_counter()
        try:
            actions = store_pb2.StoreActions.FromString(data)
        except DecodeError as error:
            log.error("raft entry %d is not a StoreActions (%s): skipped", index, error)
            return ApplyResult(index, InvalidAction(f"raft entry {index} does not parse"))
        result = self._store.apply(index, actions)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - start)
        return result

    # -- hooks into pysyncobj -------------------------------------------------------------

    def _state_changed(self, old: int, new: int) -> None:
        log.info(
            "raft %s: %s -> %s in term %d",
            self.selfNode.address,
            _STATES.get(old, old),
            _STATES.get(new, new),
            self.raftCurrentTerm,
        )
        self._on_leader_changed(self._isLeader())

    def _SyncObj__onNodeConnected(self, node: Any) -> None:
        SyncObj._SyncObj__onNodeConnected(self, node)
        self.snapshots.cancelTransmisstion(node)  # chunks in flight died with the old one

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        next_index = self._SyncObj__raftNextIndex.get(node)
        SyncObj._SyncObj__onMessageReceived(self, node, message)
        if kind == "next_node_idx" and not message.get("reset") and next_index is not None:
            # A late success reply moves nextIndex back to entries the follower already
            # has; pysyncobj would then resend them, and the follower truncate and rewrite
            # (already applied) entries. Replies only ever move it back on a mismatch.
            if self._SyncObj__raftNextIndex.get(node, next_index) < next_index:
                self._SyncObj__raftNextIndex[node] = next_index
            return
        if kind != "append_entries":
            return
        chunk = message.get("serialized")
        if chunk is None:
            return
        if chunk[2]:
            # Loading a big snapshot may have outlasted the election timeout: that was
            # not the leader's silence.
            self._SyncObj__raftElectionDeadline = monotonic() + self._SyncObj__generateRaftTimeout()
        else:
            # A no-op for the leader except that it reads something from us.
            self._SyncObj__transport.send(
                node,
                {"type": "next_node_idx", "next_node_idx": 0, "reset": False, "success": False},
            )

    def _checkCommandsToApply(self) -> None:
        # In each tick, after the leader has counted commits and applied them.
        appended = self.journal.appended
        super()._checkCommandsToApply()
        if not self._isLeader():
            return
        if self.journal.appended != appended:
            # Ship new entries now: waiting for the next heartbeat costs every write up to
            # a heartbeat period. And tick again at once rather than wait out the tick
            # period before counting their commit (at once when this manager is alone).
            self._SyncObj__sendAppendEntries()
            self.wake()
        elif self.raftCommitIndex > self._commit_index_sent:
            # Tell the followers the new commit index now, or they apply it only at the
            # next heartbeat: a follower's read barrier waits for that (raft.py).
            self._SyncObj__sendAppendEntries()

    def _SyncObj__sendAppendEntries(self) -> None:
        self._commit_index_sent = self.raftCommitIndex
        SyncObj._SyncObj__sendAppendEntries(self)

    # -- driven by the tick thread --------------------------------------------------------

    def tick(self, wait: float) -> bool:
        """One pysyncobj tick, then durability and health checks. True when, as leader, it
        appended entries: more proposals may be queued, tick again at once."""
        appended = self.journal.appended
        self.doTick(wait)
        self.journal.sync()
        if self.snapshots.fatal_error is not None:
            raise RaftFailed(
                f"raft snapshot {self.snapshots.path} could not be loaded: "
                f"{self.snapshots.fatal_error}",
                self.snapshots.fatal_error,
            )
        leader = self._isLeader()
        metrics.TERM.set(self.raftCurrentTerm)
        metrics.COMMIT_INDEX.set(self.raftCommitIndex)
        metrics.LEADER.set(1 if leader else 0)
        return leader and self.journal.appended != appended

    def wake(self) -> None:
        """Cut the tick's wait short (from any thread)."""
        with contextlib.suppress(BlockingIOError):  # a full pipe: a wake-up is pending
            os.write(self._wake_write, b"\0")

    def _drain_wakeups(self, fd: int, event: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass

    def close(self) -> None:
        self.snapshots.close()
        self.destroy()  # without autoTick this destroys at once, in this thread
        self._poller.unsubscribe(self._wake_read)
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- views (tick thread) --------------------------------------------------------------

    @property
    def address(self) -> str:
        return str(self.selfNode.address)

    def leader_address(self) -> str | None:
        leader = self._getLeader()
        return None if leader is None else str(leader.address)

    def members(self) -> set[str]:
        return {self.address} | {str(n.address) for n in self.otherNodes}

    def reachable(self) -> set[str]:
        return {self.address} | {str(n.address) for n in self.otherNodes if self.isNodeConnected(n)}
