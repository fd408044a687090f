"""The dispatcher (leader only): agent sessions, heartbeats, assignments, task status batching.

`Dispatcher(store).run()` does the leader's work until cancelled; `add_dispatcher_service`
serves it over gRPC, the caller identified by `manager.node_rpc.certificate_identity`,
behind the CA's AuthorizationInterceptor with `DISPATCHER_POLICIES`.
"""

from manager.dispatcher.config import DispatcherConfig
from manager.dispatcher.dispatcher import HEARTBEAT_FAILURE, Dispatcher
from manager.dispatcher.errors import (
    ConfigError,
    DispatcherError,
    InvalidRequest,
    InvalidSession,
    NotRunning,
    NotYourTask,
    RateLimited,
    SessionEnded,
    StoreUnavailable,
    UnknownNode,
)
from manager.dispatcher.servicer import (
    DISPATCHER_POLICIES,
    STATUS_CODES,
    DispatcherServicer,
    add_dispatcher_service,
)
from manager.dispatcher.sessions import Session

__all__ = [
    "DISPATCHER_POLICIES",
    "HEARTBEAT_FAILURE",
    "STATUS_CODES",
    "ConfigError",
    "Dispatcher",
    "DispatcherConfig",
    "DispatcherError",
    "DispatcherServicer",
    "InvalidRequest",
    "InvalidSession",
    "NotRunning",
    "NotYourTask",
    "RateLimited",
    "Session",
    "SessionEnded",
    "StoreUnavailable",
    "UnknownNode",
    "add_dispatcher_service",
]
