"""The log broker (leader only): `swarmctl service logs` gathered from the agents.

Users subscribe through Logs on any manager (a follower relays to the leader); agents
listen for the subscriptions that concern their node and publish their tasks' lines
through LogBroker. `LogBroker(store).run()` is a leader subsystem; serve it with
`add_logs_service` and `add_log_broker_service` behind the CA's AuthorizationInterceptor
with LOGS_POLICIES.
"""

from manager.logbroker.broker import BrokerConfig, LogBroker
from manager.logbroker.errors import (
    IncompleteLogs,
    InvalidSelector,
    LogBrokerError,
    NotRunning,
    NotYourSubscription,
    UnknownSubscription,
)
from manager.logbroker.servicer import (
    LOGS_POLICIES,
    STATUS_CODES,
    LeaderChannel,
    LogBrokerServicer,
    LogsServicer,
    add_log_broker_service,
    add_logs_service,
)

__all__ = [
    "LOGS_POLICIES",
    "STATUS_CODES",
    "BrokerConfig",
    "IncompleteLogs",
    "InvalidSelector",
    "LeaderChannel",
    "LogBroker",
    "LogBrokerError",
    "LogBrokerServicer",
    "LogsServicer",
    "NotRunning",
    "NotYourSubscription",
    "UnknownSubscription",
    "add_log_broker_service",
    "add_logs_service",
]
