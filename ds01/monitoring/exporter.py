"""The DS01 exporter service and ``ds01 monitoring`` commands.

``ds01 monitoring exporter`` serves ``/metrics`` on the policy's
``monitoring.listen_address`` and ``ports.exporter``; it runs as the system
user ``ds01-exporter`` (deploys/monitoring.py), reads only world-readable
files and writes nothing. ``ds01 monitoring storage-textfile`` (root, on a
timer) writes the storage figures, which need ``repquota``, for
node-exporter's textfile collector.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric

from ds01.cluster.queue import Poller, SlurmState, reader
from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit
from ds01.jobs import JOBS_DIR, read_all
from ds01.monitoring import collectors
from ds01.monitoring.collectors import NvmlReader, StorageUse
from ds01.monitoring.slurm import slurm_families
from ds01.storage.quota import Usage, read_usages

log = logging.getLogger(__name__)
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
STORAGE_TEXTFILE = "ds01_storage.prom"


def read_snapshot(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Ds01Collector:
    """Everything the exporter serves, read afresh at each scrape.

    + policy: the roles (where the user slices are) and the snapshot's place
    + cgroup_root, snapshot, jobs_dir: the sources (tests point them at fixtures)
    + nvml: reads one unit's utilisation and memory (tests); default: the
      reconciler's readings file beside the snapshot
    + slurm: reads Slurm's queue (tests: a fixture); default a
      ``ds01.cluster.queue.Poller`` of ``reader(policy)``, started here: none
      without ``cluster:`` in the policy
    """

    def __init__(
        self,
        policy: Policy,
        *,
        cgroup_root: str = collectors.CGROUP_ROOT,
        snapshot: str | None = None,
        jobs_dir=JOBS_DIR,
        nvml: NvmlReader | None = None,
        clock: Callable[[], float] = time.time,
        slurm: Callable[[], SlurmState] | None = None,
    ):
        from ds01.gpu.snapshot import READINGS_NAME, snapshot_path

        self.roles = list(policy.roles)
        self.cgroup_root = cgroup_root
        self.snapshot = snapshot or snapshot_path(policy)
        self.readings = os.path.join(os.path.dirname(self.snapshot), READINGS_NAME)
        self.jobs_dir = jobs_dir
        self.nvml = nvml
        self.clock = clock
        if slurm is None and (read := reader(policy)) is not None:
            slurm = Poller(read).start()  # a scrape never waits for slurmctld
        self.slurm = slurm

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "ds01_exporter_collector_errors",
            "1 if the collector failed at this scrape",
            labels=["collector"],
        )
        role_of: dict[str, str] = {}

        def slices() -> list[Metric]:
            families, found = collectors.slice_families(self.roles, self.cgroup_root)
            role_of.update(found)
            return families

        snap = read_snapshot(self.snapshot)
        readings = read_snapshot(self.readings)
        nvml = self.nvml or readings_reader(readings, snap)

        def per_unit() -> list[Metric]:
            families = collectors.nvml_families((snap or {}).get("units", []), nvml)
            if readings is not None:
                age = GaugeMetricFamily(
                    "ds01_gpu_readings_age_seconds", "seconds since the reconciler read the GPUs"
                )
                age.add_metric([], max(0.0, self.clock() - float(readings.get("at", 0))))
                families.append(age)
            return families

        parts = [
            ("slices", slices),
            ("gpu", lambda: collectors.gpu_families(snap, self.clock(), role_of)),
            ("nvml", per_unit),
            ("jobs", lambda: collectors.job_families(read_all(self.jobs_dir))),
        ]
        if self.slurm is not None:
            slurm = self.slurm
            parts.append(("slurm", lambda: slurm_families(slurm(), self.clock())))
        for name, part in parts:
            try:
                families = part()
            except Exception:  # one broken source must not blank the others
                log.exception("collector %s failed", name)
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            yield from families
        yield errors


def readings_reader(data: dict | None, snapshot: dict | None) -> NvmlReader | None:
    """Per-unit figures from the reconciler's readings file (None: no file). A
    unit of a GPU NVML could not read raises (counted as an NVML error); one
    newer than the readings has no figures until the next pass."""
    if data is None:
        return None
    units = data.get("units", {})
    unread = set(data.get("unread_gpus", []))
    gpu_of = {u["uuid"]: u.get("gpu") for u in (snapshot or {}).get("units", [])}

    def read(uuid: str) -> tuple[float | None, int | None]:
        r = units.get(uuid)
        if r is None:
            if gpu_of.get(uuid) in unread:
                raise RuntimeError(f"GPU {gpu_of[uuid]} was not readable at the last pass")
            return None, None
        return r.get("utilization"), r.get("memory_used")

    return read


def registry_for(collector: Ds01Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def storage_uses(policy: Policy, usages: dict[str, Usage]) -> list[StorageUse]:
    """The quota area's per-user use from ``read_usages``."""
    from ds01.storage.quota import KIB, quota_area

    area = quota_area(policy)
    name = next((n for n, a in policy.storage.areas.items() if a is area), "")
    return [
        StorageUse(
            user=u.name,
            area=name,
            used_bytes=u.used_kib * KIB,
            quota_bytes=u.hard_kib * KIB,
            files=u.files,
        )  # fmt: skip
        for u in usages.values()
        if not u.name.isdigit() and u.name != "root"
    ]


class _Families:
    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def write_storage_textfile(policy: Policy, directory: str = TEXTFILE_DIR) -> int:
    """Run repquota and write the storage figures for the textfile collector
    (atomically: node-exporter never reads half a file). Returns the users."""
    fs = policy.storage.quota_filesystem
    uses: list[StorageUse] = []
    if fs is not None:
        uses = storage_uses(policy, read_usages(fs))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(collectors.storage_families(uses)))
    write_to_textfile(os.path.join(directory, STORAGE_TEXTFILE), registry)
    os.chmod(os.path.join(directory, STORAGE_TEXTFILE), 0o644)
    return len(uses)


# --------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    mon = sub.add_parser("monitoring", help="the DS01 exporter and monitoring files")
    msub = mon.add_subparsers(dest="monitoring_command", metavar="ACTION", required=True)
    p = msub.add_parser("exporter", help="serve the DS01 metrics (the ds01-exporter service)")
    add_policy_option(p)
    p.set_defaults(func=cmd_exporter)
    p = msub.add_parser("storage-textfile", help="write storage use for node-exporter (root)")
    add_policy_option(p)
    p.add_argument("--dir", default=TEXTFILE_DIR, help="textfile directory (default: %(default)s)")
    p.set_defaults(func=cmd_storage_textfile)
    p = msub.add_parser("dashboards", help="write the Grafana dashboards the policy gives")
    add_policy_option(p)
    p.add_argument("--out", required=True, help="directory for the dashboard JSON files")
    p.set_defaults(func=cmd_dashboards)
    p = msub.add_parser("rules", help="print the alert rules the policy gives")
    add_policy_option(p)
    p.set_defaults(func=cmd_rules)


def cmd_exporter(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    policy = load_or_exit(args.policy)
    mon = policy.monitoring
    stop = {signal.SIGTERM, signal.SIGINT}
    # Blocked before the server and poller threads start (they inherit the
    # mask): the main thread receives them in sigwait and the process exits cleanly.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    registry = registry_for(Ds01Collector(policy))
    start_http_server(mon.ports.exporter, addr=mon.listen_address, registry=registry)
    log.info("serving on %s:%d", mon.listen_address, mon.ports.exporter)
    signal.sigwait(stop)
    return 0


def cmd_storage_textfile(args: argparse.Namespace) -> int:
    policy = load_or_exit(args.policy)
    try:
        n = write_storage_textfile(policy, args.dir)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"ds01 monitoring storage-textfile: {e}", file=sys.stderr)
        return 1
    print(f"storage use of {n} user(s) written to {args.dir}/{STORAGE_TEXTFILE}")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from ds01.monitoring.render import rules_yaml

    sys.stdout.write(rules_yaml(load_or_exit(args.policy)))
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from ds01.monitoring.dashboards import dashboards

    os.makedirs(args.out, exist_ok=True)
    for name, model in dashboards(load_or_exit(args.policy)).items():
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(model, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"{args.out}/{name}: {len(model['panels'])} panels")
    return 0
