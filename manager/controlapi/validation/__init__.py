"""Validation of every spec the Control API accepts, before anything is written.

Each `check_*_spec` raises InvalidArgument whose message starts with the offending field's
path, e.g. "spec.task.container.image: invalid reference 'UPPER': ...". The checks are pure
(no store): whether referenced objects exist is the servicer's business.
"""

from manager.controlapi.validation.cluster import check_cluster_spec
from manager.controlapi.validation.container import check_image_reference
from manager.controlapi.validation.network import check_network_spec
from manager.controlapi.validation.node import check_node_spec
from manager.controlapi.validation.payload import check_config_spec, check_secret_spec
from manager.controlapi.validation.service import check_service_spec

__all__ = [
    "check_cluster_spec",
    "check_config_spec",
    "check_image_reference",
    "check_network_spec",
    "check_node_spec",
    "check_secret_spec",
    "check_service_spec",
]
