"""pysyncobj's TCP transport, made to sync the journal before anything leaves the node.

A follower acknowledges entries by sending `next_node_idx` right after appending them, and
a leader ships entries it counts as stored by itself: syncing before every send makes both
true on disk, with one fdatasync per batch rather than per entry.
"""

from __future__ import annotations

from typing import Any

from pysyncobj.transport import TCPTransport


class SyncingTransport(TCPTransport):  # type: ignore[misc]  # pysyncobj is untyped
    def send(self, node: Any, message: Any) -> bool:
        self._syncObj.journal.sync()
        return bool(super().send(node, message))

    def backlog(self, node: Any) -> int:
        """Bytes queued for `node` that the socket has not taken yet."""
        connection = self._connections.get(node)
        return 0 if connection is None else int(connection.getSendBufferSize())
