"""A manager's default ports (swarmd derives raft's and the join API's from the cluster API's)."""

REMOTE_API_PORT = 4242  # cluster API, mutual TLS
RAFT_PORT = 4243  # raft, authenticated with the cluster key
JOIN_PORT = 4244  # join API, server TLS only (nodes without a certificate yet)
