"""The exporter's collectors: small functions from a root path (or a parsed
record) to metric families, so tests run them on recorded cgroup trees,
snapshots and job records.

Every source is world-readable, which lets the exporter run as its own
unprivileged user: the cgroup v2 files of the slices, the allocator's status
snapshot in ``gpu.runtime_dir`` (the database itself is root's, 0600: the
snapshot is the allocator's published view, written after every COMMIT) and
the job records in ``/var/lib/ds01/jobs``. Storage use needs ``repquota``,
i.e. root: a root timer writes it to node-exporter's textfile directory
(:func:`storage_families`, ``ds01 monitoring storage-textfile``).

Cost is one directory walk and a few small reads per slice: no subprocess, no
database, no NVML call per scrape unless NVML is present.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ds01.gpu.snapshot import HELD_STATES
from ds01.jobs import JobRecord
from ds01.names import ROOT_SLICE, role_slice, systemd_unescape

CGROUP_ROOT = "/sys/fs/cgroup"
PRESSURE = ("cpu", "memory", "io")
MEMORY_EVENTS = ("high", "max", "oom_kill")
_SCOPE = re.compile(r"^docker-[0-9a-f]{12,64}\.scope$")


@dataclass
class SliceStats:
    """What one slice's cgroup files say (None: the file is absent)."""

    cpu_seconds: float | None = None
    memory: int | None = None
    memory_peak: int | None = None
    memory_events: dict[str, int] = field(default_factory=dict)
    io_read: int = 0
    io_write: int = 0
    # resource -> (some, full) stall seconds
    pressure: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    tasks: int | None = None
    containers: int = 0  # docker-<id>.scope children


def _read(path: str) -> str | None:
    # os.read, not open(): some 3000 small cgroup files per scrape, and a text
    # file object's set-up costs more than the read itself
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode()
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:  # "max"
        return None


def _keyed(text: str | None) -> dict[str, str]:
    """``key value`` lines (cpu.stat, memory.events)."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value.strip()
    return out


def _pressure(text: str | None) -> tuple[float, float | None] | None:
    """``some avg10=0.00 ... total=123`` lines: total stall seconds (some, full)."""
    if text is None:
        return None
    totals: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for item in rest.split():
            if item.startswith("total="):
                totals[kind] = int(item[6:]) / 1e6
    return totals.get("some", 0.0), totals.get("full")


def read_slice(path: str) -> SliceStats:
    """The stats of the cgroup directory ``path``."""
    s = SliceStats()
    usec = _keyed(_read(f"{path}/cpu.stat")).get("usage_usec")
    s.cpu_seconds = int(usec) / 1e6 if usec else None
    s.memory = _int(f"{path}/memory.current")
    s.memory_peak = _int(f"{path}/memory.peak")
    events = _keyed(_read(f"{path}/memory.events"))
    s.memory_events = {e: int(events[e]) for e in MEMORY_EVENTS if e in events}
    for line in (_read(f"{path}/io.stat") or "").splitlines():
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                s.io_read += int(value)
            elif key == "wbytes":
                s.io_write += int(value)
    for res in PRESSURE:
        if (p := _pressure(_read(f"{path}/{res}.pressure"))) is not None:
            s.pressure[res] = p
    s.tasks = _int(f"{path}/pids.current")
    try:
        s.containers = sum(1 for n in os.listdir(path) if _SCOPE.match(n))
    except OSError:
        pass
    return s


def user_slices(roles: list[str], root: str = CGROUP_ROOT) -> Iterator[tuple[str, str, str]]:
    """(role, user, directory) of every user slice present under ``root``;
    the slice's place in the tree is what says the user's role."""
    for role in roles:
        role_dir = f"{root}/{ROOT_SLICE}/{role_slice(role)}"
        prefix = role_slice(role).removesuffix(".slice") + "-"
        try:
            names = sorted(os.listdir(role_dir))
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(".slice"):
                user = systemd_unescape(name[len(prefix) : -len(".slice")])
                yield role, user, f"{role_dir}/{name}"


class _Families:
    """Metric families of slice stats, one label set per slice."""

    def __init__(self, prefix: str, labels: list[str], what: str):
        def g(name, doc, extra=()):
            return GaugeMetricFamily(
                f"{prefix}_{name}", f"{doc} ({what})", labels=[*labels, *extra]
            )

        def c(name, doc, extra=()):
            return CounterMetricFamily(
                f"{prefix}_{name}", f"{doc} ({what})", labels=[*labels, *extra]
            )

        self.cpu = c("cpu_seconds", "CPU time used, seconds")
        self.memory = g("memory_bytes", "memory in use (memory.current)")
        self.peak = g(
            "memory_peak_bytes", "highest memory use since the slice started (memory.peak)"
        )
        self.events = c(
            "memory_events",
            "memory.events: times over memory.high, at memory.max, OOM kills",
            ["event"],
        )
        self.io = c("io_bytes", "bytes read and written", ["direction"])
        self.pressure = c(
            "pressure_seconds",
            "PSI stall time: some task (some) or all tasks (full) waiting",
            ["resource", "kind"],
        )
        self.tasks = g("tasks", "processes and threads (pids.current)")
        self.containers = g("containers", "running containers (docker scopes in the slice)")

    def add(self, labels: list[str], s: SliceStats) -> None:
        if s.cpu_seconds is not None:
            self.cpu.add_metric(labels, s.cpu_seconds)
        if s.memory is not None:
            self.memory.add_metric(labels, s.memory)
        if s.memory_peak is not None:
            self.peak.add_metric(labels, s.memory_peak)
        for event, n in s.memory_events.items():
            self.events.add_metric([*labels, event], n)
        self.io.add_metric([*labels, "read"], s.io_read)
        self.io.add_metric([*labels, "write"], s.io_write)
        for res, (some, full) in s.pressure.items():
            self.pressure.add_metric([*labels, res, "some"], some)
            if full is not None:
                self.pressure.add_metric([*labels, res, "full"], full)
        if s.tasks is not None:
            self.tasks.add_metric(labels, s.tasks)
        self.containers.add_metric(labels, s.containers)

    def all(self) -> list[Metric]:
        return [self.cpu, self.memory, self.peak, self.events, self.io, self.pressure,
                self.tasks, self.containers]  # fmt: skip


def slice_families(
    roles: list[str], root: str = CGROUP_ROOT
) -> tuple[list[Metric], dict[str, str]]:
    """Per-user and per-role families from the slice tree, and the role of
    each user found there (the GPU families label holders with it)."""
    users = _Families("ds01_user", ["user", "role"], "all containers of the user")
    per_role = _Families("ds01_role", ["role"], "all containers of the role's users")
    role_of: dict[str, str] = {}
    for role, user, path in user_slices(roles, root):
        role_of[user] = role
        users.add([user, role], read_slice(path))
    for role in roles:
        path = f"{root}/{ROOT_SLICE}/{role_slice(role)}"
        if os.path.isdir(path):
            per_role.add([role], read_slice(path))
    return users.all() + per_role.all(), role_of


# --------------------------------------------------------------------------
# GPUs: the allocator's status snapshot, NVML where present
# --------------------------------------------------------------------------



def gpu_families(snapshot: dict | None, now: float, role_of: dict[str, str]) -> list[Metric]:
    """Units, leases and the queue from the allocator's status snapshot
    (:mod:`ds01.gpu.snapshot`; None: not readable, ``ds01_gpu_snapshot_up`` 0)."""
    up = GaugeMetricFamily("ds01_gpu_snapshot_up", "1 if the allocator's status snapshot was read")
    up.add_metric([], 0 if snapshot is None else 1)
    if snapshot is None:
        return [up]
    age = GaugeMetricFamily(
        "ds01_gpu_snapshot_age_seconds", "seconds since the allocator's last decision"
    )
    age.add_metric([], max(0.0, now - float(snapshot.get("at", now))))
    unit_labels = ["unit", "gpu", "kind"]
    weight = GaugeMetricFamily(
        "ds01_gpu_unit_weight", "GPU-equivalents of the unit (a whole GPU is 1)", labels=unit_labels
    )
    state = GaugeMetricFamily(
        "ds01_gpu_unit_state", "1 for the unit's current state", labels=[*unit_labels, "state"]
    )
    holder = GaugeMetricFamily(
        "ds01_gpu_unit_holder",
        "1 for the container and user holding the unit",
        labels=[*unit_labels, "user", "role", "container"],
    )
    held_for = GaugeMetricFamily(
        "ds01_gpu_unit_held_seconds",
        "how long the unit has been held by its container",
        labels=[*unit_labels, "user"],
    )
    idle_for = GaugeMetricFamily(
        "ds01_gpu_unit_idle_seconds",
        "how long the idle reaper has seen the unit's container idle (by its role's idle rule)",
        labels=[*unit_labels, "user"],
    )
    leases = GaugeMetricFamily(
        "ds01_gpu_leases", "units held by the user's containers", labels=["user", "role"]
    )
    equiv = GaugeMetricFamily(
        "ds01_gpu_held_equivalents", "GPU-equivalents held by the user", labels=["user", "role"]
    )
    count: Counter[str] = Counter()
    held: Counter[str] = Counter()
    for u in snapshot.get("units", []):
        labels = [u["uuid"], str(u["gpu"]), u["kind"]]
        weight.add_metric(labels, u["weight"])
        state.add_metric([*labels, u["state"]], 1)
        if u["state"] in HELD_STATES and u.get("user"):
            user = u["user"]
            holder.add_metric([*labels, user, role_of.get(user, ""), u.get("container") or ""], 1)
            if u.get("since") is not None:
                held_for.add_metric([*labels, user], max(0.0, now - u["since"]))
            if u.get("idle_since") is not None:
                idle_for.add_metric([*labels, user], max(0.0, now - u["idle_since"]))
            count[user] += 1
            held[user] += u["weight"]
    for user in sorted(count):
        leases.add_metric([user, role_of.get(user, "")], count[user])
        equiv.add_metric([user, role_of.get(user, "")], round(held[user], 6))
    qlen = GaugeMetricFamily(
        "ds01_gpu_queue_length", "entries waiting or reserved in the GPU queue", labels=["kind"]
    )
    qwait = GaugeMetricFamily(
        "ds01_gpu_queue_oldest_wait_seconds",
        "wait of the longest-waiting queue entry",
        labels=["kind"],
    )
    qmine = GaugeMetricFamily(
        "ds01_gpu_queue_entries", "queue entries of the user", labels=["user", "role"]
    )
    by_kind: dict[str, list[float]] = {}
    by_user: Counter[tuple[str, str]] = Counter()
    for q in snapshot.get("queue", []):
        by_kind.setdefault(q.get("kind") or "any", []).append(q["since"])
        by_user[(q["user"], q["role"])] += 1
    for kind, since in sorted(by_kind.items()):
        qlen.add_metric([kind], len(since))
        qwait.add_metric([kind], max(0.0, now - min(since)))
    for (user, role), n in sorted(by_user.items()):
        qmine.add_metric([user, role], n)
    total = GaugeMetricFamily("ds01_gpu_queue_length_total", "entries in the GPU queue, all kinds")
    total.add_metric([], sum(len(v) for v in by_kind.values()))
    warned = GaugeMetricFamily(
        "ds01_gpu_idle_warning",
        "1 while the idle reaper has warned the container (its idle rule was met)",
        labels=["user", "container"],
    )
    for w in snapshot.get("warnings", []):
        warned.add_metric([w["user"], w["container"]], 1)
    latency = HistogramMetricFamily(
        "ds01_gpu_decision_seconds",
        "time an allocator decision took, waiting for the lock included, by operation",
        labels=["op"],
    )
    for op, d in sorted(snapshot.get("decisions", {}).items()):
        buckets = [(repr(float(le)), n) for le, n in d["buckets"]] + [("+Inf", d["count"])]
        latency.add_metric([op], buckets, d["sum"])
    return [
        up,
        age,
        weight,
        state,
        holder,
        held_for,
        idle_for,
        leases,
        equiv,
        qlen,
        qwait,
        qmine,
        total,
        warned,
        latency,
    ]


# A reader of one unit's NVML figures: uuid -> (utilisation %, memory used bytes);
# it raises on an NVML error. None where the host has no NVML.
NvmlReader = Callable[[str], tuple[float | None, int | None]]


def nvml_families(units: list[dict], read: NvmlReader | None) -> list[Metric]:
    """Per-unit utilisation and memory from NVML; errors are counted, not raised."""
    if read is None:
        return []
    util = GaugeMetricFamily(
        "ds01_gpu_unit_utilization_percent",
        "NVML utilisation of the unit",
        labels=["unit", "gpu", "kind"],
    )
    mem = GaugeMetricFamily(
        "ds01_gpu_unit_memory_used_bytes",
        "NVML memory in use on the unit",
        labels=["unit", "gpu", "kind"],
    )
    errors = GaugeMetricFamily("ds01_gpu_nvml_errors", "units NVML failed to read at this scrape")
    failed = 0
    for u in units:
        labels = [u["uuid"], str(u["gpu"]), u["kind"]]
        try:
            pct, used = read(u["uuid"])
        except Exception:  # any NVML failure: counted, the scrape goes on
            failed += 1
            continue
        if pct is not None:
            util.add_metric(labels, pct)
        if used is not None:
            mem.add_metric(labels, used)
    errors.add_metric([], failed)
    return [util, mem, errors]


# --------------------------------------------------------------------------
# Scheduled jobs and storage
# --------------------------------------------------------------------------


def job_families(records: dict[str, JobRecord]) -> list[Metric]:
    """The last run of every scheduled job (``ds01.jobs.read_all()``)."""
    run = GaugeMetricFamily(
        "ds01_job_last_run_timestamp_seconds", "when the job's last run finished", labels=["key"]
    )
    ok = GaugeMetricFamily(
        "ds01_job_last_success_timestamp_seconds", "when the job last succeeded", labels=["key"]
    )
    failed = GaugeMetricFamily(
        "ds01_job_last_failed", "1 if the job's last run failed", labels=["key"]
    )
    code = GaugeMetricFamily(
        "ds01_job_last_exit_code", "exit code of the job's last run", labels=["key"]
    )
    took = GaugeMetricFamily(
        "ds01_job_last_duration_seconds", "how long the job's last run took", labels=["key"]
    )
    for key, rec in sorted(records.items()):
        run.add_metric([key], rec["finished"])
        if rec["last_success"] is not None:
            ok.add_metric([key], rec["last_success"])
        failed.add_metric([key], 0 if rec["result"] == "ok" else 1)
        code.add_metric([key], rec["exit_code"])
        took.add_metric([key], max(0.0, rec["finished"] - rec["started"]))
    return [run, ok, failed, code, took]


@dataclass(frozen=True)
class StorageUse:
    user: str
    area: str
    used_bytes: int
    quota_bytes: int  # 0: no limit
    files: int


def storage_families(uses: list[StorageUse]) -> list[Metric]:
    used = GaugeMetricFamily(
        "ds01_storage_used_bytes",
        "bytes the user owns on the area's filesystem",
        labels=["user", "area"],
    )
    quota = GaugeMetricFamily(
        "ds01_storage_quota_bytes",
        "the user's hard quota there (absent: no limit)",
        labels=["user", "area"],
    )
    files = GaugeMetricFamily(
        "ds01_storage_files", "files the user owns there", labels=["user", "area"]
    )
    for u in uses:
        used.add_metric([u.user, u.area], u.used_bytes)
        files.add_metric([u.user, u.area], u.files)
        if u.quota_bytes:
            quota.add_metric([u.user, u.area], u.quota_bytes)
    return [used, quota, files]
