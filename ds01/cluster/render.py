"""slurm.conf, gres.conf, cgroup.conf and slurmdbd.conf from the policy's
``cluster`` section and each node's facts (``ds01.cluster.nodes``).

Every file is the same on every host (Slurm wants slurm.conf identical
everywhere; gres.conf holds one block per node), so one rendering serves the
whole cluster and a changed node changes the files everywhere at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from ds01.cluster.nodes import Gres, NodeFacts, SlurmNode, slurm_node
from ds01.config import Cluster, Policy

HEADER = (
    "# Managed by ds01-infra (deploys/slurm.py), rendered by ds01/cluster/render.py\n"
    "# from the policy's cluster section: edit the policy, not this file.\n"
)


def duration(seconds: int | None) -> str:
    """Slurm's time format, ``d-hh:mm:ss``; None is ``UNLIMITED``."""
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:{s:02d}"


def cluster_nodes(cluster: Cluster, facts: Mapping[str, NodeFacts]) -> list[SlurmNode]:
    """Slurm's view of every compute node; a node without facts is an error
    (rendering it from guesses would drain it or hide its GPUs)."""
    missing = sorted(set(cluster.nodes) - set(facts))
    if missing:
        raise ValueError(f"no facts for cluster node(s) {', '.join(missing)}")
    return [slurm_node(name, node, facts[name]) for name, node in sorted(cluster.nodes.items())]


def gres_types(nodes: list[SlurmNode]) -> list[str]:
    return sorted({g.type for n in nodes for g in n.gres})


def billing_weights(nodes: list[SlurmNode]) -> dict[str, int]:
    """Billing units of each GRES type on ``nodes``; where GPUs of one type
    differ, the larger weight (the quota never counts a unit short)."""
    out: dict[str, int] = {}
    for n in nodes:
        for g in n.gres:
            out[g.type] = max(out.get(g.type, 0), g.billing)
    return dict(sorted(out.items()))


def _node_line(n: SlurmNode) -> str:
    f = n.facts
    words = [f"NodeName={n.name}"]
    if n.address:
        words.append(f"NodeAddr={n.address}")
    words += [
        f"CPUs={f.cpus}", f"Sockets={f.sockets}", f"CoresPerSocket={f.cores_per_socket}",
        f"ThreadsPerCore={f.threads_per_core}", f"RealMemory={n.real_memory_mib}",
    ]  # fmt: skip
    counts = n.gres_counts()
    if counts:
        words.append("Gres=" + ",".join(f"gpu:{t}:{c}" for t, c in sorted(counts.items())))
    return " ".join(words + ["State=UNKNOWN"])


def slurm_conf(policy: Policy, facts: Mapping[str, NodeFacts]) -> str:
    cluster = policy.cluster
    assert cluster is not None
    nodes = cluster_nodes(cluster, facts)
    by_name = {n.name: n for n in nodes}
    tres = ["gres/gpu", *(f"gres/gpu:{t}" for t in gres_types(nodes))]
    lines = [
        HEADER,
        f"ClusterName={cluster.name}",
        f"SlurmctldHost={cluster.controller}",
        "SlurmUser=slurm",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "StateSaveLocation=/var/lib/slurm/slurmctld",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "MpiDefault=none",
        "ReturnToService=2",
        "",
        "# Jobs live in cgroups (cgroup.conf): cores, memory and GPU devices are",
        "# fenced; Contain makes the extern step pam_slurm_adopt puts SSH logins in.",
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup,task/affinity",
        "JobAcctGatherType=jobacct_gather/cgroup",
        "PrologFlags=Contain",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "GresTypes=gpu",
        "# A job without --mem gets memory in proportion to its CPUs (not the whole",
        "# node, which the role's per-user memory limit would refuse).",
        f"DefMemPerCPU={min(n.real_memory_mib // n.facts.cpus for n in nodes)}",
        "",
        "# Roles are accounts and QOS in slurmdbd (sacctmgr, deploys/slurm.py);",
        "# enforcing them there is what makes the policy's limits hold.",
        "AccountingStorageType=accounting_storage/slurmdbd",
        f"AccountingStorageHost={cluster.controller}",
        "AccountingStorageEnforce=associations,limits,qos,safe",
        "AccountingStorageTRES=" + ",".join(tres),
        "PriorityType=priority/multifactor",
        "PriorityWeightQOS=10000",
        "PriorityWeightAge=1000",
        "",
    ]
    lines += [_node_line(n) for n in nodes]
    lines.append("")
    for pname, part in sorted(cluster.partitions.items()):
        members = [by_name[n] for n in part.nodes]
        words = [
            f"PartitionName={pname}",
            "Nodes=" + ",".join(part.nodes),
            f"Default={'YES' if part.default else 'NO'}",
            f"MaxTime={duration(part.max_time)}",
            "State=UP",
        ]
        weights = billing_weights(members)
        if weights:
            # Only GPUs are billed: billing is the GPU quota's currency.
            words.append(
                'TRESBillingWeights="' + ",".join(f"GRES/gpu:{t}={w}" for t, w in weights.items())
                + '"'
            )
        lines.append(" ".join(words))
    return "\n".join(lines) + "\n"


def gres_conf(policy: Policy, facts: Mapping[str, NodeFacts]) -> str:
    """One block per node. Where Slurm's NVML plugin is present and Slurm owns
    all the node's GPUs, NVML finds them (and names MIG devices by UUID);
    elsewhere each unit is listed with its device files, MIG devices as
    ``MultipleFiles`` (the parent GPU and its two capability files)."""
    cluster = policy.cluster
    assert cluster is not None
    lines = [HEADER]
    for n in cluster_nodes(cluster, facts):
        if n.facts.nvml_plugin and not cluster.nodes[n.name].gpus.interactive:
            lines.append(f"NodeName={n.name} AutoDetect=nvml")
            continue
        for g in n.gres:
            key = "File" if len(g.files) == 1 else "MultipleFiles"
            lines.append(
                f"NodeName={n.name} AutoDetect=off Name=gpu Type={g.type} {key}={','.join(g.files)}"
            )
    return "\n".join(lines) + "\n"


def cgroup_conf() -> str:
    return (
        HEADER
        + "CgroupPlugin=cgroup/v2\n"
        + "ConstrainCores=yes\n"
        + "ConstrainRAMSpace=yes\n"
        + "# No swap beyond the job's memory, as containers get (swap: 0m).\n"
        + "ConstrainSwapSpace=yes\n"
        + "AllowedSwapSpace=0\n"
        + "# A job opens only the GPU devices (whole GPU or MIG capability files) it was given.\n"
        + "ConstrainDevices=yes\n"
    )


def slurmdbd_conf(policy: Policy) -> str:
    cluster = policy.cluster
    assert cluster is not None
    return (
        HEADER
        + "AuthType=auth/munge\n"
        + "DbdHost=localhost\n"
        + "SlurmUser=slurm\n"
        + "LogFile=/var/log/slurm/slurmdbd.log\n"
        + "# slurmdbd runs as slurm (deploys/slurm.py's drop-in): its own runtime directory.\n"
        + "PidFile=/run/slurmdbd/slurmdbd.pid\n"
        + "StorageType=accounting_storage/mysql\n"
        + "# localhost: MariaDB's Unix socket, where unix_socket authentication lets\n"
        + "# the slurm user in as itself; no password exists to leak.\n"
        + "StorageHost=localhost\n"
        + "StorageUser=slurm\n"
        + f"StorageLoc={cluster.accounting.database}\n"
    )


def simulated_device_nodes(gres: tuple[Gres, ...]) -> str:
    """tmpfiles.d lines creating the device files of a node's simulated GPUs
    (the test VM): slurmd checks that every gres.conf file exists; the nodes
    get the NVIDIA driver's numbers (195 for GPUs; 511 stands in for
    nvidia-caps, whose major the driver assigns at load) so cgroup device
    rules name distinct devices."""
    lines = [HEADER.rstrip("\n")]
    seen: set[str] = set()
    for g in gres:
        for path in g.files:
            if path in seen:
                continue
            seen.add(path)
            minor = int(path.rsplit("nvidia-cap", 1)[-1] if "caps" in path else path[11:])
            major = 511 if "caps" in path else 195
            lines.append(f"c {path} 0666 root root - {major}:{minor}")
    if any("caps" in p for p in seen):
        lines.insert(1, "d /dev/nvidia-caps 0755 root root -")
    return "\n".join(lines) + "\n"
