"""Container networking for one host: the `shoal0` bridge, NAT, veth pairs, published ports.

The public names load on first use, so parsing a `-p` spec does not import pyroute2 (about
120 ms): `from runtime.network import BridgeNetwork` works as usual. Overlay networks
(VXLAN), the DNS resolver and service load balancing will live beside it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runtime.network import pyroute2_light

pyroute2_light.install()

if TYPE_CHECKING:
    from runtime.network.attachment import Attachment
    from runtime.network.bridge import BridgeNetwork
    from runtime.network.errors import (
        InvalidPortError,
        NetworkError,
        PoolExhaustedError,
        PortConflictError,
    )
    from runtime.network.links import setup_loopback
    from runtime.network.ports import PortMapping, parse_port

_HOMES = {
    "Attachment": "runtime.network.attachment",
    "BridgeNetwork": "runtime.network.bridge",
    "InvalidPortError": "runtime.network.errors",
    "NetworkError": "runtime.network.errors",
    "PoolExhaustedError": "runtime.network.errors",
    "PortConflictError": "runtime.network.errors",
    "PortMapping": "runtime.network.ports",
    "parse_port": "runtime.network.ports",
    "setup_loopback": "runtime.network.links",
}

__all__ = [
    "Attachment",
    "BridgeNetwork",
    "InvalidPortError",
    "NetworkError",
    "PoolExhaustedError",
    "PortConflictError",
    "PortMapping",
    "parse_port",
    "setup_loopback",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
