"""The managers' CA state: root CA with key, current join tokens, cluster id, node cert lifetime.

Servicers read it on every call, so a token rotation takes effect for the next join.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509

from manager.ca import base36
from manager.ca.certificates import (
    DEFAULT_NODE_CERT_LIFETIME,
    NodeIdentity,
    issue_node_certificate,
    node_cert_lifetime,
)
from manager.ca.join_tokens import JoinTokens
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from shoal.v1 import specs_pb2


@dataclass
class ClusterCA:
    cluster_id: str
    root: RootCA
    join_tokens: JoinTokens
    node_cert_lifetime: datetime.timedelta = DEFAULT_NODE_CERT_LIFETIME

    @classmethod
    def initialize(
        cls, spec: specs_pb2.ClusterSpec | None = None, now: datetime.datetime | None = None
    ) -> ClusterCA:
        """What `swarmd init` makes: a new cluster id, root CA and pair of join tokens."""
        root = RootCA.create(now)
        return cls(
            base36.new_id(), root, JoinTokens.generate(root.digest), node_cert_lifetime(spec)
        )

    def rotate_join_token(self, role: Role) -> None:
        self.join_tokens = self.join_tokens.rotate(role)

    def issue(
        self, csr_pem: bytes, node_id: str, role: Role, now: datetime.datetime | None = None
    ) -> x509.Certificate:
        node = NodeIdentity(node_id=node_id, role=role, cluster_id=self.cluster_id)
        return issue_node_certificate(self.root, csr_pem, node, self.node_cert_lifetime, now)
