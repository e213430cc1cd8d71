"""CPU and memory use of this container against its limits, from its cgroup files (v2 or v1)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def host_memory() -> int:
    """Total memory of the machine in bytes (the limit when the cgroup sets none)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


@dataclass
class CgroupReading:
    """One reading: CPU time used so far (µs), CPU and memory limits, memory in use."""

    cpu_usec: int | None
    cpu_limit: float  # cores
    memory_used: int | None
    memory_limit: int
    version: int
    at: float  # time.monotonic() of the reading


def read_cgroup(root: str | os.PathLike = "/sys/fs/cgroup") -> CgroupReading:
    """Read this container's cgroup: v2 (cpu.stat, cpu.max, memory.*) or v1 controllers."""
    root = Path(root)
    cores = float(os.cpu_count() or 1)
    if (root / "cgroup.controllers").exists() or (root / "cpu.stat").exists():
        usec = None
        for line in (_read(root / "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                usec = _int(value)
        limit = cores
        quota, _, period = (_read(root / "cpu.max") or "max").partition(" ")
        if quota != "max" and _int(quota) and _int(period):
            limit = _int(quota) / _int(period)
        used = _int(_read(root / "memory.current"))
        mem_max = _read(root / "memory.max")
        mem_limit = _int(mem_max) if mem_max and mem_max != "max" else host_memory()
        return CgroupReading(usec, limit, used, mem_limit, 2, time.monotonic())
    # cgroup v1 (hosts in hybrid mode): cpuacct, cpu and memory controllers
    nsec = _int(_read(root / "cpuacct" / "cpuacct.usage"))
    limit = cores
    quota = _int(_read(root / "cpu" / "cpu.cfs_quota_us"))
    period = _int(_read(root / "cpu" / "cpu.cfs_period_us"))
    if quota and quota > 0 and period:
        limit = quota / period
    used = _int(_read(root / "memory" / "memory.usage_in_bytes"))
    mem_limit = _int(_read(root / "memory" / "memory.limit_in_bytes")) or 0
    host = host_memory()
    if not mem_limit or (host and mem_limit > host):  # "no limit" is a huge number in v1
        mem_limit = host
    usec = nsec // 1000 if nsec is not None else None
    return CgroupReading(usec, limit, used, mem_limit, 1, time.monotonic())


def usage_model(before: CgroupReading, after: CgroupReading) -> dict:
    """CPU use between two readings (cores, percent of the limit) and memory use now."""
    cpu_used = None
    elapsed = after.at - before.at
    if after.cpu_usec is not None and before.cpu_usec is not None and elapsed > 0:
        cpu_used = max(0.0, (after.cpu_usec - before.cpu_usec) / 1e6 / elapsed)
    mem_used = after.memory_used
    return {
        "cpu": {
            "used": None if cpu_used is None else round(cpu_used, 3),
            "limit": round(after.cpu_limit, 3),
            "percent": None
            if cpu_used is None
            else round(min(100.0, 100 * cpu_used / after.cpu_limit), 1),
            "interval": round(elapsed, 2),
        },
        "memory": {
            "used": mem_used,
            "limit": after.memory_limit,
            "percent": None
            if mem_used is None or not after.memory_limit
            else round(100 * mem_used / after.memory_limit, 1),
        },
        "cgroup": after.version,
    }


# use at which the panel warns; full below FULL_AVAILABLE bytes (or 2 %) available (ext4
# keeps a little of the free space back, so writes fail before 100 %)
WARN_PERCENT = 90.0
FULL_AVAILABLE = 32 * 1024**2


def storage_model(path: str | os.PathLike, instance: str = "") -> dict:
    """Size, use and free space of the filesystem holding path (statvfs), with a warning
    from WARN_PERCENT full that says what to do."""
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    percent = round(100 * used / total, 1) if total else None
    full = free < min(FULL_AVAILABLE, total // 50)
    warning = None
    if percent is not None and (percent >= WARN_PERCENT or full):
        what = f"Storage {percent:g}% full"
        if full:
            what = "Storage full: writes fail"
        name = instance or "NAME"
        warning = (
            f"{what}. Delete files you no longer need, or stop the instance and grow its "
            f"storage (`workbench instances update {name} --storage N`, N in GiB)."
        )
    return {
        "path": str(path),
        "total": total,
        "used": used,
        "free": free,
        "percent": percent,
        "warning": warning,
    }
