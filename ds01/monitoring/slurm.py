"""The exporter's Slurm metrics, from one :func:`ds01.cluster.queue.read`.

Served only where the policy has ``cluster:`` (the exporter checks), from
the exporter's :class:`ds01.cluster.queue.Poller`, which runs ``squeue`` and
``sinfo`` in its own thread, the exception to the collectors' "no
subprocess" rule (slurmctld holds the queue, no file does); a scrape never
waits for them.
A Slurm that does not answer is ``ds01_slurm_up 0`` and nothing else, so
the scrape still succeeds and the allocator's metrics are served.

No label is ``job`` or ``instance`` (the target's own, see
``tests/unit/monitoring``): a job's id is no label at all (one series per
job would grow without bound); jobs are counted by state, partition and QOS.
"""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import GaugeMetricFamily, Metric

from ds01.cluster import queue


def slurm_families(state: queue.SlurmState, now: float) -> list[Metric]:
    up = GaugeMetricFamily("ds01_slurm_up", "1 if squeue and sinfo answered at the last reading")
    up.add_metric([], 1 if state.up else 0)
    head: list[Metric] = [up]
    if state.at is not None:
        age = GaugeMetricFamily(
            "ds01_slurm_read_age_seconds", "seconds since the exporter's poller last read Slurm"
        )
        age.add_metric([], max(0.0, now - state.at))
        head.append(age)
    if not state.up:
        return head
    jobs = GaugeMetricFamily(
        "ds01_slurm_jobs", "Slurm jobs in the queue", labels=["state", "partition", "qos"]
    )
    for (st, part, qos), n in sorted(queue.job_counts(state.jobs).items()):
        jobs.add_metric([st, part, qos], n)
    pending = GaugeMetricFamily(
        "ds01_slurm_pending_jobs", "pending Slurm jobs by why they wait",
        labels=["partition", "reason"],
    )  # fmt: skip
    reasons = Counter((j.partition, j.reason) for j in state.jobs if j.state == queue.PENDING)
    for (part, reason), n in sorted(reasons.items()):
        pending.add_metric([part, reason], n)
    per_user = GaugeMetricFamily(
        "ds01_slurm_user_jobs", "the user's Slurm jobs", labels=["user", "account", "state"]
    )
    for (user, account, st), n in sorted(
        Counter((j.user, j.account, j.state) for j in state.jobs).items()
    ):
        per_user.add_metric([user, account, st], n)
    user_gpus = GaugeMetricFamily(
        "ds01_slurm_user_gpus", "GPUs (whole or MIG) the user's running jobs hold",
        labels=["user", "type"],
    )  # fmt: skip
    billing = GaugeMetricFamily(
        "ds01_slurm_user_billing", "billing units of the user's running jobs (the GPU "
        "quota's currency: 7 per whole GPU)", labels=["user"],
    )  # fmt: skip
    held: Counter[tuple[str, str]] = Counter()
    billed: Counter[str] = Counter()
    for j in state.jobs:
        if j.state != queue.RUNNING:
            continue
        for t, n in j.gpus_allocated.items():
            held[(j.user, t)] += n
        billed[j.user] += j.billing or 0
    for (user, t), n in sorted(held.items()):
        user_gpus.add_metric([user, t], n)
    for user, n in sorted(billed.items()):
        billing.add_metric([user], n)
    gres = GaugeMetricFamily(
        "ds01_slurm_gres", "GPUs (by type) of the partition's nodes: total or allocated",
        labels=["partition", "type", "kind"],
    )  # fmt: skip
    for g in queue.gres_use(state.nodes):
        gres.add_metric([g.partition, g.type, "total"], g.total)
        gres.add_metric([g.partition, g.type, "allocated"], g.allocated)
    nodes = GaugeMetricFamily(
        "ds01_slurm_nodes", "nodes of the partition by Slurm state", labels=["partition", "state"]
    )
    for (part, st), n in sorted(Counter((n.partition, n.state) for n in state.nodes).items()):
        nodes.add_metric([part, st], n)
    return [*head, jobs, pending, per_user, user_gpus, billing, gres, nodes]
