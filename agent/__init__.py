"""The agent of every Shoal node (see agent.agent).

The runtime engine forks container shims from the agent's process. With gRPC's fork
support on, gRPC restarts its threads in every forked child, and a shim that has made its
pid namespace can start no thread: it dies. gRPC reads the setting when it is first
imported, so it is turned off here, when the agent is imported before gRPC; `Agent`
refuses to start when it is on.
"""

from __future__ import annotations

import os
import sys

GRPC_FORK_SUPPORT = "GRPC_ENABLE_FORK_SUPPORT"

if "grpc" not in sys.modules:
    os.environ.setdefault(GRPC_FORK_SUPPORT, "false")
