"""Small helpers every part of Shoal may use; this package imports nothing of Shoal.

Importing it also turns gRPC's fork support off for the process (GRPC_ENABLE_FORK_SUPPORT,
unless set already), which must happen before grpc is imported: every Shoal program imports
`common` first. With it on, grpcio (1.80 on, grpc/grpc#43055) runs its after-fork handler
in children that only exec, and about a quarter of the children forked while calls are in
flight abort before exec ("Check failed: next_worker->state == KICKED"): container shims,
nft, a restarted swarmd. Shoal forks only to exec, never to use gRPC in the child.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
