"""The paths a container sees masked or read-only: at least runc's current defaults (its
libcontainer/specconv Example spec, which Docker follows)."""

from __future__ import annotations

from runtime.container.init import MASKED_DIRS, MASKED_FILES, READONLY_PATHS

RUNC_MASKED = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",  # added to runc and Docker for CVE-2020-8694
}
RUNC_READONLY = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}


def test_every_path_runc_masks_is_masked() -> None:
    assert set(MASKED_FILES) | set(MASKED_DIRS) >= RUNC_MASKED
    assert set(READONLY_PATHS) >= RUNC_READONLY
