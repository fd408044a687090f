"""VXLAN network identifiers of overlay networks: unique, from 4096 upwards (as Docker's)."""

from __future__ import annotations

from manager.allocator.errors import AllocationError

FIRST_VNI = 4096
LAST_VNI = (1 << 24) - 1


class VNIAllocator:
    def __init__(self) -> None:
        self._owners: dict[int, str] = {}
        self._by_owner: dict[str, int] = {}
        self._next = FIRST_VNI

    def vni_of(self, owner: str) -> int | None:
        return self._by_owner.get(owner)

    def allocate(self, owner: str) -> int:
        """The lowest free VNI at or above the last one handed out (wrapping around)."""
        if owner in self._by_owner:
            raise AllocationError(f"network {owner} already has VNI {self._by_owner[owner]}")
        size = LAST_VNI - FIRST_VNI + 1
        for step in range(size):
            vni = FIRST_VNI + (self._next - FIRST_VNI + step) % size
            if vni not in self._owners:
                self._hold(vni, owner)
                self._next = vni + 1 if vni < LAST_VNI else FIRST_VNI
                return vni
        raise AllocationError(f"no free VNI left between {FIRST_VNI} and {LAST_VNI}")

    def reserve(self, vni: int, owner: str) -> None:
        if self._by_owner.get(owner) == vni:
            return
        if not FIRST_VNI <= vni <= LAST_VNI:
            raise AllocationError(f"VNI {vni} is outside {FIRST_VNI}-{LAST_VNI}")
        held_by = self._owners.get(vni)
        if held_by is not None:
            raise AllocationError(f"VNI {vni} is already used by network {held_by}")
        if owner in self._by_owner:
            raise AllocationError(f"network {owner} already has VNI {self._by_owner[owner]}")
        self._hold(vni, owner)

    def release(self, owner: str) -> None:
        vni = self._by_owner.pop(owner, None)
        if vni is not None:
            del self._owners[vni]

    def _hold(self, vni: int, owner: str) -> None:
        self._owners[vni] = owner
        self._by_owner[owner] = vni
