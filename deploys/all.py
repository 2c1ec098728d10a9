"""The whole DS01 platform, in the order the server needs it.

Each component also runs alone: pyinfra inventory.py deploys/<component>.py

A Slurm compute node that is not the DS01 head (the policy's ``cluster``,
docs/cluster.md) gets only what a job needs there: the ds01 package, the
directory's users and the role groups, and Slurm. The interactive platform
(storage, slices, the GPU allocator, the docker service, monitoring) is the
head's.
"""

from pyinfra import host, local

from deploys._support import slurm_name

cluster = host.data.policy.cluster
compute_only = cluster is not None and cluster.compute_only(slurm_name(host))

local.include("deploys/base.py")
local.include("deploys/sssd.py")  # optional (identity.sssd.enabled): directory users via NSS
local.include("deploys/groups.py")
if not compute_only:
    local.include("deploys/storage.py")
    local.include("deploys/slices.py")
    local.include("deploys/gpu.py")
    local.include("deploys/docker.py")
    local.include("deploys/privacy.py")
    local.include("deploys/users.py")  # new-user hooks need storage and slices
    local.include("deploys/backup.py")  # restic, only with a backup section
if cluster is not None:  # optional (issue 14): Slurm on the GPU nodes
    local.include("deploys/slurm.py")  # after users: Slurm's users are the role groups'
if not compute_only:
    local.include("deploys/maintenance.py")  # upgrades, logs, the daily doctor over the above
    local.include("deploys/monitoring.py")  # last: it watches what the others set up
