"""The gRPC message limits every Shoal channel and server sets.

gRPC refuses messages over 4 MiB by default: a node with a few dozen large tasks, or a
list of 100,000 tasks, goes past that. SwarmKit raises it to 128 MiB; so does Shoal, and
what can grow without bound (a node's assignments) is also sent in chunks well below it.
"""

from __future__ import annotations

MAX_MESSAGE_BYTES = 128 << 20
MESSAGE_LIMITS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
