"""Slurm (issue 14): the cluster of the policy's ``cluster`` section.

Nothing happens without that section (deploys/all.py does not include this
file then). With it: the controller (the DS01 head) runs MariaDB, slurmdbd and
slurmctld and holds the accounts, QOS and user associations the roles and
the directory sync make; each compute node runs slurmd. Every host gets the
same slurm.conf, gres.conf and cgroup.conf (ds01/cluster/render.py, from
the policy and each node's ``slurmd -C`` and GPU layout) and the controller's
munge key. Compute nodes that are not the DS01 head admit SSH only into a
running job (pam_slurm_adopt); the head stays the interactive server.

A host's Slurm name is its inventory data ``slurm_name``, else its short
host name. docs/cluster.md says how to add a node.
"""

import base64
import json
from io import BytesIO, StringIO

from pyinfra import host, inventory
from pyinfra.facts.files import File, FindInFile
from pyinfra.operations import apt, files, server, systemd

from deploys._support import REPO, apt_packages, slurm_name
from ds01.cluster import accounts, containers, render
from ds01.cluster.nodes import node_facts, node_gres
from ds01.docker.model import ADMIN_ROLE
from ds01.gpu.layout import Layout
from ds01.gpu.simulated import simulated_layout
from ds01.names import role_group
from facts.gpu import GpuLayout
from facts.slurm import MungeKey, SlurmdGres, SlurmdHardware
from operations import deferred, slurm
from operations.deferred import role_users

policy = host.data.policy
cluster = policy.cluster
if cluster is None:
    raise SystemExit("slurm: the policy has no cluster section; there is nothing to deploy")
NVML_PLUGIN = "/usr/lib/x86_64-linux-gnu/slurm-wlm/gpu_nvml.so"
# Debian's libpam-slurm-adopt puts it outside PAM's own (multiarch) directory,
# where a bare module name is looked up.
PAM_SLURM_ADOPT = "/lib/security/pam_slurm_adopt.so"


hosts = {slurm_name(h): h for h in inventory.get_active_hosts()}
me = slurm_name(host)
is_controller = me == cluster.controller
is_node = me in cluster.nodes
compute_only = cluster.compute_only(me)
missing = sorted(({cluster.controller} | set(cluster.nodes)) - set(hosts))
if missing:
    raise SystemExit(
        f"slurm: cluster host(s) {', '.join(missing)} of the policy are not in the inventory "
        "(or not reachable): add them (docs/cluster.md) or remove them from cluster.nodes"
    )


def node_layout(name: str) -> Layout:
    h = hosts[name]
    if h.data.policy.gpu.backend == "simulated":
        return simulated_layout(policy.gpu.simulated, policy.site.name)
    return Layout.from_json(h.get_fact(GpuLayout))


def cluster_facts() -> dict:
    """Every compute node's facts, read when the files are written (slurmd is
    installed by then); a node without them yet leaves the files undecided."""
    out = {}
    for name in cluster.nodes:
        h = hosts[name]
        hardware = h.get_fact(SlurmdHardware)
        if hardware is None:
            raise deferred.Undecided(f"once slurmd is installed on {name}")
        plugin = h.get_fact(File, path=NVML_PLUGIN) is not None
        out[name] = node_facts(hardware, node_layout(name), plugin)
    return out


def put(text: str, dest: str, mode: str = "0644", user: str = "root"):
    return files.put._inner(src=StringIO(text), dest=dest, user=user, group=user, mode=mode)


# -- Packages ---------------------------------------------------------------
if is_controller:
    apt.packages(name="Slurm controller packages (slurmctld, slurmdbd, MariaDB, munge)",
                 packages=apt_packages("slurm_controller"))  # fmt: skip
if is_node:
    apt.packages(name="Slurm node packages (slurmd, munge, pam_slurm_adopt)",
                 packages=apt_packages("slurm_node"))  # fmt: skip

# -- munge: one key, the controller's ----------------------------------------


def munge_key():
    key = hosts[cluster.controller].get_fact(MungeKey)
    if key is None:
        raise deferred.Undecided(f"once munge has made its key on {cluster.controller}")
    yield from files.put._inner(src=BytesIO(base64.b64decode(key)), dest="/etc/munge/munge.key",
                                user="munge", group="munge", mode="0400")  # fmt: skip


key = None
if not is_controller:
    key = deferred.planned_at_execution(
        name=f"munge key /etc/munge/munge.key from {cluster.controller} (munge-only, 0400)",
        plan=munge_key, what="munge key",
    )  # fmt: skip
systemd.service(name="munge running", service="munge.service", running=True, enabled=True,
                restarted=bool(key and key.will_change))  # fmt: skip

# -- Configuration (the same files on every host) ----------------------------
files.directory(name="Slurm log directory /var/log/slurm", path="/var/log/slurm",
                user="slurm", group="slurm", mode="0750")  # fmt: skip
cgroup = files.put(name="Slurm cgroup.conf (cgroup v2: cores, memory, devices)",
                   src=StringIO(render.cgroup_conf()), dest="/etc/slurm/cgroup.conf",
                   user="root", group="root", mode="0644")  # fmt: skip


def slurm_files():
    facts = cluster_facts()
    yield from put(render.slurm_conf(policy, facts), "/etc/slurm/slurm.conf")
    yield from put(render.gres_conf(policy, facts), "/etc/slurm/gres.conf")


conf = deferred.planned_at_execution(
    name=f"Slurm slurm.conf and gres.conf ({len(cluster.nodes)} node(s), "
    f"{len(cluster.partitions)} partition(s))",
    plan=slurm_files, what="slurm.conf",
)  # fmt: skip

# -- Controller: accounting database, slurmdbd, accounts, slurmctld ----------
if is_controller:
    files.directory(name="slurmctld state directory", path="/var/lib/slurm/slurmctld",
                    user="slurm", group="slurm", mode="0750")  # fmt: skip
    systemd.service(name="MariaDB running", service="mariadb.service",
                    running=True, enabled=True)  # fmt: skip
    # MariaDB's user table can be read only once the server above runs.
    deferred.planned_at_execution(
        name=f"MariaDB user slurm (Unix socket, no password) on {cluster.accounting.database}",
        plan=lambda: slurm.socket_database_user._inner(
            user="slurm", database=cluster.accounting.database),
        what="MariaDB user slurm",
    )  # fmt: skip
    dbd = files.put(
        name="slurmdbd.conf (slurm-only, 0600)", src=StringIO(render.slurmdbd_conf(policy)),
        dest="/etc/slurm/slurmdbd.conf", user="slurm", group="slurm", mode="0600",
    )  # fmt: skip
    dropin = files.template(
        name="slurmdbd runs as slurm (drop-in slurmdbd.service.d/ds01.conf)",
        src=str(REPO / "templates/slurm/slurmdbd-ds01.conf.j2"),
        dest="/etc/systemd/system/slurmdbd.service.d/ds01.conf",
        user="root", group="root", mode="0644", create_remote_dir=True,
    )  # fmt: skip
    systemd.service(name="slurmdbd running", service="slurmdbd.service", running=True,
                    enabled=True, daemon_reload=dropin.will_change,
                    restarted=dbd.will_change or dropin.will_change)  # fmt: skip

    def slurm_accounts():
        want = accounts.desired(policy, role_users(policy))  # ds01.identity's roles
        yield from slurm.accounting._inner(want=accounts.desired_to_json(want))

    deferred.planned_at_execution(
        name=f"Slurm accounts and QOS of {len(policy.roles)} roles, users associated",
        plan=slurm_accounts, what="Slurm accounts",
    )  # fmt: skip
    systemd.service(name="slurmctld running", service="slurmctld.service", running=True,
                    enabled=True, restarted=conf.will_change)  # fmt: skip
    # Between converges the associations follow the role groups the directory sync
    # keeps (same schedule: a race costs at most one period, never an access).
    files.template(
        name=f"Cron job /etc/cron.d/ds01-slurm-sync ({policy.schedules.users_sync})",
        src=str(REPO / "templates/identity/cron.j2"), dest="/etc/cron.d/ds01-slurm-sync",
        user="root", group="root", mode="0644", deploy="deploys/slurm.py", job="users_sync",
        schedule=policy.schedules.users_sync,
        command="/usr/local/bin/ds01 job run slurm_sync -- /usr/local/bin/ds01 slurm sync",
    )  # fmt: skip

# -- Compute nodes: slurmd; SSH only into a job ------------------------------
if is_node and policy.gpu.backend == "simulated":
    # The test VM: device files for the simulated GPUs, which slurmd insists exist.
    devices = files.put(
        name="Device files of the simulated GPUs (/etc/tmpfiles.d/ds01-slurm-gpus.conf)",
        src=StringIO(render.simulated_device_nodes(node_gres(cluster.nodes[me], node_layout(me)))),
        dest="/etc/tmpfiles.d/ds01-slurm-gpus.conf", user="root", group="root", mode="0644",
    )  # fmt: skip
    server.shell(
        name="Simulated GPU device files created", _if=devices.did_change,
        commands=["systemd-tmpfiles --create /etc/tmpfiles.d/ds01-slurm-gpus.conf"],
    )  # fmt: skip
if is_node:
    systemd.service(name="slurmd running", service="slurmd.service", running=True, enabled=True,
                    restarted=conf.will_change or cgroup.will_change)  # fmt: skip
if is_node:
    # Containers in jobs (ds01 slurm run): the node's Slurm GPUs as CDI devices
    # numbered as Slurm numbers them (slurmd -G), which is not gres.conf's order.
    def cdi_file():
        rendered = sorted(g.files for g in node_gres(cluster.nodes[me], node_layout(me)))
        slurms = [tuple(u["files"]) for u in host.get_fact(SlurmdGres) or []]
        if sorted(slurms) != rendered:
            raise deferred.Undecided("once slurmd reads the gres.conf written above")
        spec = containers.cdi_spec(slurms)
        yield from put(json.dumps(spec, indent=2) + "\n", containers.CDI_SPEC)

    deferred.planned_at_execution(
        name=f"CDI spec {containers.CDI_SPEC} (the node's Slurm GPUs, for containers in jobs)",
        plan=cdi_file, what="CDI spec",
    )  # fmt: skip
    # Jobs run rootless Podman; its package enables a root API service and
    # root's container restarts, which nothing here uses.
    for unit in ("podman.socket", "podman.service", "podman-restart.service",
                 "podman-auto-update.service", "podman-auto-update.timer"):  # fmt: skip
        systemd.service(name=f"Podman's {unit} off (containers in jobs are rootless)",
                        service=unit, running=False, enabled=False)  # fmt: skip
    for conf, why in (("containers.conf", "crun, cgroupfs: containers stay in the job's cgroup"),
                      ("storage.conf", "one UID mapping suffices: directory users have no "
                                       "subuid range")):  # fmt: skip
        files.template(
            name=f"Podman /etc/containers/{conf} ({why})",
            src=str(REPO / f"templates/slurm/{conf}.j2"), dest=f"/etc/containers/{conf}",
            user="root", group="root", mode="0644", create_remote_dir=True,
        )  # fmt: skip
if compute_only:
    files.template(
        name="PAM: SSH lands in the user's job (pam_slurm_adopt), admins exempt",
        src=str(REPO / "templates/slurm/ds01-slurm-adopt.pam.j2"),
        dest="/etc/pam.d/ds01-slurm-adopt", user="root", group="root", mode="0644",
        admin_group=role_group(ADMIN_ROLE), module=PAM_SLURM_ADOPT,
    )  # fmt: skip
    files.block(
        name="sshd's account stack includes ds01-slurm-adopt, before common-account",
        path="/etc/pam.d/sshd", content="@include ds01-slurm-adopt",
        line=r"^@include common-account", before=True,
        # no / or ( ) in the marker: pyinfra finds the block with an awk regex
        marker="# {mark} ds01-infra slurm: SSH only into a job",
    )  # fmt: skip
    # pam_systemd would move the adopted login out of the job's cgroup again.
    # Through pam-auth-update, so that its next run (any PAM package's) keeps it off.
    def pam_systemd_off():
        if host.get_fact(FindInFile, path="/etc/pam.d/common-session",
                         pattern=r"^session.*pam_systemd\.so"):  # fmt: skip
            # It leaves hand-edited common-* files alone (exit 0): then fail, loudly.
            yield (
                "DEBIAN_FRONTEND=noninteractive pam-auth-update --disable systemd && "
                "! grep -q '^session.*pam_systemd\\.so' /etc/pam.d/common-session || "
                "{ echo 'pam-auth-update left pam_systemd on: /etc/pam.d/common-* changed by "
                "hand? see pam-auth-update(8) --force' >&2; exit 1; }"
            )

    deferred.planned_at_execution(
        name="pam_systemd off for logins (they belong to the job's cgroup)",
        plan=pam_systemd_off, what="pam_systemd",
    )  # fmt: skip
