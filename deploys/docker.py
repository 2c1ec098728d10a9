"""Docker: the engine, its root-only socket, the DS01 access service every
user's docker goes through, the docker wrapper, image hygiene and the GPU
device permissions.

Policy: the ``docker`` section (sockets, capabilities, log rotation, image
prune), ``schedules.image_prune`` and ``gpu.bare_metal_roles``. The rules
themselves live in ds01/docker/policy.py; this file only places things.
/etc/docker/daemon.json (templates/docker/daemon.json.j2) is managed here too;
JSON has no comments, so it carries no header.
"""

import hashlib

from pyinfra import host
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, systemd

from deploys._support import REPO, apt_packages, wheelhouse
from ds01.docker import cleanup
from ds01.names import DOCKER_USERS_GROUP, ROOT_SLICE, role_group
from ds01.units import format_size
from facts.python import PythonVersion
from operations import deferred, groups

TEMPLATES = REPO / "templates/docker"
policy = host.data.policy
dk = policy.docker
bare_metal = [role_group(r) for r in policy.gpu.bare_metal_roles]
real_socket_group = role_group("admin") if dk.admins_use_real_socket else "root"

# Preflight
if len(bare_metal) > 1:
    raise SystemExit(
        f"docker on {host.name}: gpu.bare_metal_roles lists {len(bare_metal)} roles; the NVIDIA "
        "device files carry one group. Keep one role (usually admin) there."
    )
python_version = host.get_fact(PythonVersion) or "3.11"
nvidia_runtime = host.get_fact(Which, command="nvidia-container-runtime")


def groups_exist():
    # Read when it runs: the groups come from deploys/groups.py in the same converge
    # (facts.groups.ManagedGroups: decided at execution while planning a fresh server).
    deferred.managed_groups_now()
    yield from ()


deferred.planned_at_execution(
    name=f"Groups {DOCKER_USERS_GROUP} and {real_socket_group} exist (deploys/groups.py)",
    plan=groups_exist,
    what="docker groups",
)

# Install
apt.packages(
    name="Docker engine (docker.io)", packages=apt_packages("docker")
)

# Configure the engine: systemd cgroups under ds01.slice, log rotation, live restore
daemon_json = files.template(
    name="Docker daemon settings /etc/docker/daemon.json",
    src=str(TEMPLATES / "daemon.json.j2"), dest="/etc/docker/daemon.json",
    user="root", group="root", mode="0644",
    cgroup_parent=ROOT_SLICE, log_max_size=format_size(dk.log_max_size),
    log_max_files=dk.log_max_files, nvidia_runtime=nvidia_runtime,
)  # fmt: skip
socket_dropin = files.template(
    name=f"Real docker socket root:{real_socket_group} 0660 (docker.socket drop-in)",
    src=str(TEMPLATES / "docker.socket.conf.j2"),
    dest="/etc/systemd/system/docker.socket.d/ds01.conf",
    user="root", group="root", mode="0644",
    unix_group=real_socket_group, user_socket=dk.user_socket,
)  # fmt: skip
groups.exact_members(
    name="Group docker with no members (users go through the DS01 service)",
    group="docker",
    members=[],
)
systemd.service(
    name="Real docker socket listening", service="docker.socket",
    running=True, enabled=True,
    daemon_reload=socket_dropin.will_change, restarted=socket_dropin.will_change,
)  # fmt: skip
systemd.service(
    name="Docker engine running", service="docker.service",
    running=True, enabled=True,
    restarted=daemon_json.will_change or socket_dropin.will_change,
)  # fmt: skip

# The access service
wheels = wheelhouse(python_version)
build = hashlib.sha256(f"{wheels.ds01_build} {wheels.deps_build}".encode()).hexdigest()
unit_socket = files.template(
    name=f"DS01 docker socket {dk.user_socket} for {DOCKER_USERS_GROUP} (ds01-docker.socket)",
    src=str(TEMPLATES / "ds01-docker.socket.j2"), dest="/etc/systemd/system/ds01-docker.socket",
    user="root", group="root", mode="0644",
    user_socket=dk.user_socket, unix_group=DOCKER_USERS_GROUP,
)  # fmt: skip
unit_service = files.template(
    name="DS01 docker access service unit (ds01-docker.service)",
    src=str(TEMPLATES / "ds01-docker.service.j2"), dest="/etc/systemd/system/ds01-docker.service",
    user="root", group="root", mode="0644",
    real_socket=dk.real_socket, state_dir=policy.gpu.state_dir,
    runtime_dir=policy.gpu.runtime_dir, dcgm_job_map_dir=policy.gpu.dcgm_job_map_dir, build=build,
    policy_sha=hashlib.sha256(open(host.data.policy_file, "rb").read()).hexdigest(),
)  # fmt: skip
systemd.service(
    name="DS01 docker socket listening", service="ds01-docker.socket",
    running=True, enabled=True,
    daemon_reload=unit_socket.will_change or unit_service.will_change,
    restarted=unit_socket.will_change,
)  # fmt: skip
systemd.service(
    name="DS01 docker access service running", service="ds01-docker.service",
    running=True, enabled=True,
    restarted=unit_service.will_change or unit_socket.will_change,
)  # fmt: skip

# Every user's docker talks to the service
files.template(
    name="DOCKER_HOST for login shells /etc/profile.d/ds01-docker.sh",
    src=str(TEMPLATES / "docker-env.sh.j2"), dest="/etc/profile.d/ds01-docker.sh",
    user="root", group="root", mode="0644", user_socket=dk.user_socket,
)  # fmt: skip
files.template(
    name="docker wrapper /usr/local/bin/docker (help and errors; not a boundary)",
    src=str(TEMPLATES / "docker-wrapper.sh.j2"), dest="/usr/local/bin/docker",
    user="root", group="root", mode="0755",
    user_socket=dk.user_socket, real_docker="/usr/bin/docker",
)  # fmt: skip

# Image hygiene
files.template(
    name=f"Image prune /etc/cron.d/ds01-image-prune ({policy.schedules.image_prune})",
    src=str(TEMPLATES / "ds01-image-prune.cron.j2"), dest="/etc/cron.d/ds01-image-prune",
    user="root", group="root", mode="0644",
    schedule=policy.schedules.image_prune, keep_label=dk.image_prune.keep_label,
    unused_for=f"{dk.image_prune.unused_for // 86400}d",
)  # fmt: skip

# Stopped containers: removed after the role's lifecycle.remove_stopped_after, owners told first
files.directory(
    name=f"Container removal notices {cleanup.NOTICE_DIR}",
    path=cleanup.NOTICE_DIR, user="root", group="root", mode="0711",
)  # fmt: skip
files.template(
    name="Container removal notice at login /etc/profile.d/ds01-container-notice.sh",
    src=str(TEMPLATES / "ds01-container-notice.sh.j2"),
    dest="/etc/profile.d/ds01-container-notice.sh",
    user="root", group="root", mode="0644", notice_dir=cleanup.NOTICE_DIR,
)  # fmt: skip
files.template(
    name=f"Container cleanup /etc/cron.d/ds01-container-cleanup "
    f"({policy.schedules.container_cleanup})",
    src=str(TEMPLATES / "ds01-container-cleanup.cron.j2"),
    dest="/etc/cron.d/ds01-container-cleanup",
    user="root", group="root", mode="0644", schedule=policy.schedules.container_cleanup,
)  # fmt: skip

# Bare-metal GPU use: /dev/nvidia* for root and the bare-metal role only
device_group = bare_metal[0] if bare_metal else "root"


def nvidia_device_gid():
    # The module option takes a gid, known only once deploys/groups.py has run.
    gid = deferred.managed_groups_now()[device_group]["gid"] if bare_metal else 0
    yield from files.template._inner(
        src=str(TEMPLATES / "nvidia-modprobe.conf.j2"), dest="/etc/modprobe.d/ds01-nvidia.conf",
        user="root", group="root", mode="0644", unix_group=device_group, gid=gid,
    )  # fmt: skip


deferred.planned_at_execution(
    name=f"NVIDIA device files root:{device_group} 0660 /etc/modprobe.d/ds01-nvidia.conf",
    plan=nvidia_device_gid,
    what="NVIDIA device group",
)
files.template(
    name=f"NVIDIA udev devices root:{device_group} 0660 /etc/udev/rules.d/70-ds01-nvidia.rules",
    src=str(TEMPLATES / "70-ds01-nvidia.rules.j2"), dest="/etc/udev/rules.d/70-ds01-nvidia.rules",
    user="root", group="root", mode="0644", unix_group=device_group,
)  # fmt: skip
