"""Who may call the Control API: managers only (a worker's certificate is refused), for every
method of the service, as the CA's AuthorizationInterceptor reads it.

Serve Control behind `AuthorizationInterceptor(authorizer, CONTROL_POLICIES)` (merged with
CA_POLICIES when both services share a server). The table is built from the service's
descriptor, so a method added to control.proto is manager-only from the start.
"""

from __future__ import annotations

from manager.ca.auth import Policy, requires, rpc_method
from manager.ca.roles import Role
from shoal.v1 import control_pb2

CONTROL_SERVICE = "Control"

CONTROL_POLICIES: dict[str, Policy] = {
    rpc_method(control_pb2.DESCRIPTOR, CONTROL_SERVICE, method.name): requires(Role.MANAGER)
    for method in control_pb2.DESCRIPTOR.services_by_name[CONTROL_SERVICE].methods
}
