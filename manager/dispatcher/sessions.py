"""Agent sessions: at most one per node; a new one ends the node's previous one.

A session is what the agent's later calls (heartbeats, status updates, assignments) name;
it lives in the leader's memory only: after a leader change every agent opens a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from manager.dispatcher import metrics
from manager.dispatcher.errors import DispatcherError, InvalidSession, SessionEnded
from manager.store import new_id


class Session:
    def __init__(self, node_id: str) -> None:
        self.id = new_id()
        self.node_id = node_id
        # Set when what the agent is told at session level (node, managers, CA) may differ.
        self.changed = asyncio.Event()
        self._ended = asyncio.Event()
        self._error: DispatcherError | None = None

    @property
    def error(self) -> DispatcherError | None:
        """Why the session ended, or None while it is open."""
        return self._error

    def end(self, error: DispatcherError) -> None:
        if self._error is None:
            self._error = error
            self._ended.set()

    async def wait_ended(self) -> DispatcherError:
        await self._ended.wait()
        assert self._error is not None
        return self._error


class SessionRegistry:
    def __init__(self) -> None:
        self._by_node: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_node)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_node.values()))

    def get(self, node_id: str) -> Session | None:
        return self._by_node.get(node_id)

    def open(self, node_id: str, resume: str = "") -> Session:
        """The node's session `resume` if it is still its open session, else a new one
        (which ends the previous one)."""
        current = self._by_node.get(node_id)
        if current is not None and current.id == resume:
            return current
        if current is not None:
            current.end(
                SessionEnded(f"session {current.id} of node {node_id} was replaced by a new one")
            )
        session = Session(node_id)
        self._by_node[node_id] = session
        metrics.SESSIONS.set(len(self._by_node))
        return session

    def check(self, node_id: str, session_id: str) -> Session:
        """The node's open session, if `session_id` names it."""
        session = self._by_node.get(node_id)
        if session is None or session.id != session_id:
            raise InvalidSession(
                f"session {session_id!r} is not the current session of node {node_id}; "
                "open a new session"
            )
        return session

    def end(self, node_id: str, error: DispatcherError) -> None:
        session = self._by_node.pop(node_id, None)
        if session is not None:
            session.end(error)
            metrics.SESSIONS.set(len(self._by_node))

    def end_all(self, error: DispatcherError) -> None:
        for node_id in list(self._by_node):
            self.end(node_id, error)
