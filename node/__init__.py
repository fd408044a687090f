"""swarmd: the node daemon.

gRPC's fork support must be off before grpc is imported: the engine forks (container shims)
without exec, and gRPC's fork handlers cannot run in a shim that unshared its pid namespace.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
