"""The whole DS01 platform, in the order the server needs it.

Each component also runs alone: pyinfra inventory.py deploys/<component>.py
"""

from pyinfra import host, local

local.include("deploys/base.py")
local.include("deploys/sssd.py")  # optional (identity.sssd.enabled): directory users via NSS
local.include("deploys/groups.py")
local.include("deploys/storage.py")
local.include("deploys/slices.py")
local.include("deploys/gpu.py")
local.include("deploys/docker.py")
local.include("deploys/privacy.py")
local.include("deploys/users.py")  # new-user hooks need storage and slices
local.include("deploys/backup.py")  # restic, only with a backup section
if host.data.policy.cluster is not None:  # optional (issue 14): Slurm on the GPU nodes
    local.include("deploys/slurm.py")  # after users: Slurm's users are the role groups'

local.include("deploys/maintenance.py")  # upgrades, logs, the daily doctor over all of the above
local.include("deploys/monitoring.py")  # last: it watches what the others set up
