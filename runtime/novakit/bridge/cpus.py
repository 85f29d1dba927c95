"""How many CPUs this process may use: the bridge runs one process per CPU.

Two limits apply, and the smaller counts: the CPUs the scheduler lets the process run on
(``sched_getaffinity``: ``taskset``, cpusets), and the cgroup's CPU quota (what a container's CPU
size sets: Fargate's task CPU, ``docker --cpus``). A quota of 1.5 CPUs counts as 2: two
processes together still use all of it, where one could use only one CPU. ``os.cpu_count()``
would count the host's CPUs and ignore both.

The parsing is pure (file contents in, a count out), so it is tested without a cgroup.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def quota_cpus(
    cpu_max: str | None = None,
    cfs_quota_us: str | None = None,
    cfs_period_us: str | None = None,
) -> float | None:
    """The CPUs a cgroup's quota allows, or ``None`` without a quota.

    ``cpu_max``: cgroup v2's ``cpu.max`` (``"200000 100000"``, or ``"max 100000"`` for none);
    ``cfs_quota_us``/``cfs_period_us``: cgroup v1's files (a quota of ``-1`` is none). v2 wins
    when both are given. Text that does not parse counts as no quota.
    """
    if cpu_max is not None:
        fields = cpu_max.split()
        if len(fields) != 2 or fields[0] == "max":
            return None
        return _ratio(fields[0], fields[1])
    if cfs_quota_us is None or cfs_period_us is None:
        return None
    return _ratio(cfs_quota_us.strip(), cfs_period_us.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return q / p


def usable(affinity: int, quota: float | None) -> int:
    """Processes worth running: the CPUs allowed, under the quota rounded up, at least 1."""
    count = max(1, affinity)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota - 1e-9)))
    return count


def usable_cpus() -> int:
    """The CPUs this process may use, from its affinity and its cgroup's quota."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    return usable(
        affinity,
        quota_cpus(_read(CGROUP_V2_CPU_MAX), _read(CGROUP_V1_QUOTA), _read(CGROUP_V1_PERIOD)),
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
