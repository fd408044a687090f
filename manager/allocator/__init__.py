"""The allocator (leader only): overlay subnets, VNIs and addresses, service VIPs and
ingress ports; NEW tasks go PENDING once they have what they need.

`Allocator(store).run()` does the work until cancelled; the rest are its parts, usable alone.
"""

from manager.allocator.addresses import AddressPool
from manager.allocator.allocator import Allocator
from manager.allocator.errors import AllocationError
from manager.allocator.networks import VNI_OPTION, NetworkAllocator, is_allocated, is_overlay
from manager.allocator.ports import FIRST_DYNAMIC_PORT, LAST_DYNAMIC_PORT, PortAllocator
from manager.allocator.state import INGRESS_NETWORK_NAME, PENDING_MESSAGE, AllocatorState
from manager.allocator.subnets import (
    DEFAULT_ADDRESS_POOL,
    DEFAULT_SUBNET_SIZE,
    PoolConfig,
    SubnetAllocator,
)
from manager.allocator.vnis import FIRST_VNI, LAST_VNI, VNIAllocator

__all__ = [
    "DEFAULT_ADDRESS_POOL",
    "DEFAULT_SUBNET_SIZE",
    "FIRST_DYNAMIC_PORT",
    "FIRST_VNI",
    "INGRESS_NETWORK_NAME",
    "LAST_DYNAMIC_PORT",
    "LAST_VNI",
    "PENDING_MESSAGE",
    "VNI_OPTION",
    "AddressPool",
    "AllocationError",
    "Allocator",
    "AllocatorState",
    "NetworkAllocator",
    "PoolConfig",
    "PortAllocator",
    "SubnetAllocator",
    "VNIAllocator",
    "is_allocated",
    "is_overlay",
]
