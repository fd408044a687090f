"""The node's identity on disk: its key and certificate (mode 0600), the root CA it trusts,
and what it needs to start again (node id, role, addresses, raft peers).

    <state-dir>/certificates/node.key   0600
    <state-dir>/certificates/node.crt   0600
    <state-dir>/certificates/root.crt
    <state-dir>/node.json               node id, role, cluster id, addresses, raft peers
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from manager.ca.client import NodeCredentials
from manager.ca.pem import certificate_pem, load_certificate, load_private_key, private_key_pem
from manager.ca.root_ca import RootCA
from manager.ca.tls import write_private_file


@dataclass
class NodeState:
    node_id: str
    role: str  # swarm-manager | swarm-worker
    cluster_id: str
    hostname: str
    remote_api: str = ""  # managers: host:port of the cluster port
    raft_address: str = ""
    join_address: str = ""
    # Managers: added to the raft group (by `swarmd init`, or a leader answered its Join).
    raft_member: bool = False
    # The other managers' raft addresses by node id, for before the store has them.
    raft_peers: dict[str, str] = field(default_factory=dict)
    managers: list[str] = field(default_factory=list)  # remote API addresses, for agents


class Identity:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.certs = state_dir / "certificates"

    @property
    def bootstrap_file(self) -> Path:
        """The first manager, until it first leads: the Cluster object to create."""
        return self.certs / "bootstrap-cluster.pb"

    @property
    def default_control_socket(self) -> Path:
        """Managers: Control for local root (swarmd --listen-control-api moves it)."""
        return self.state_dir / "swarmd.sock"

    @property
    def exists(self) -> bool:
        return (self.state_dir / "node.json").exists()

    def save(self, credentials: NodeCredentials, state: NodeState) -> None:
        self.save_credentials(credentials)
        self.save_state(state)

    def save_credentials(self, credentials: NodeCredentials) -> None:
        self.certs.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(self.certs / "node.key", private_key_pem(credentials.key))
        write_private_file(self.certs / "node.crt", certificate_pem(credentials.certificate))
        write_private_file(self.certs / "root.crt", credentials.root.cert_pem)

    def save_state(self, state: NodeState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(asdict(state), indent=2, sort_keys=True).encode()
        write_private_file(self.state_dir / "node.json", data)

    def load(self) -> tuple[NodeCredentials, NodeState]:
        key = load_private_key((self.certs / "node.key").read_bytes(), "node key")
        cert = load_certificate((self.certs / "node.crt").read_bytes(), "node certificate")
        root = RootCA.from_pem((self.certs / "root.crt").read_bytes())
        fields = json.loads((self.state_dir / "node.json").read_text())
        if isinstance(fields.get("raft_peers"), list):
            raise ValueError(
                f"{self.state_dir}/node.json is from a Shoal that replicated with pysyncobj; "
                "its raft data cannot be read by this one: join this node again"
            )
        state = NodeState(**fields)
        return NodeCredentials(key=key, certificate=cert, root=root), state
