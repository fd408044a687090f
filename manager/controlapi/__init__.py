"""The Control API of Shoal's managers: the cluster's user-facing gRPC service.

Every spec is validated before anything is written (INVALID_ARGUMENT naming the field);
writes are store transactions, one at a time, that a follower replays on the leader. Serve
`ControlServicer` behind the CA's `AuthorizationInterceptor` with `CONTROL_POLICIES`.
"""

from manager.controlapi.errors import (
    ControlError,
    FailedPrecondition,
    InvalidArgument,
    NameTaken,
    ObjectNotFound,
    Unavailable,
    status_of,
)
from manager.controlapi.forwarding import (
    FORWARDED_KEY,
    LeaderAnswered,
    LeaderChannel,
    StoreLeaderChannels,
    leader_control_address,
)
from manager.controlapi.hooks import (
    JoinTokenRotation,
    RaftMemberCheck,
    has_manager_status,
    rotate_join_token,
)
from manager.controlapi.policies import CONTROL_POLICIES
from manager.controlapi.server import ControlServicer, add_control_service

__all__ = [
    "CONTROL_POLICIES",
    "FORWARDED_KEY",
    "ControlError",
    "ControlServicer",
    "FailedPrecondition",
    "InvalidArgument",
    "JoinTokenRotation",
    "LeaderAnswered",
    "LeaderChannel",
    "NameTaken",
    "ObjectNotFound",
    "RaftMemberCheck",
    "StoreLeaderChannels",
    "Unavailable",
    "add_control_service",
    "has_manager_status",
    "leader_control_address",
    "rotate_join_token",
    "status_of",
]
