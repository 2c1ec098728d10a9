"""Container create: the rules over one create body (Config at the top
level, HostConfig, NetworkingConfig), and the body the daemon gets instead:
the caller's limits, slice, labels, run-as-caller on bind mounts and the GPU
units the allocator assigns."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ds01.config import Policy, Role
from ds01.docker.images import readable_image
from ds01.docker.model import (
    ADMIN_ROLE,
    BUILTIN_NETWORKS,
    CTYPE,
    GPU,
    RUN_AS,
    USER_NETWORK_MODES,
    Allow,
    Caller,
    Decision,
    Facts,
    GpuRequest,
    Refused,
    Request,
    as_dict,
    as_int,
    as_list,
    as_str,
    container_type,
    own,
    relabel,
)
from ds01.docker.mounts import rewrite_mounts
from ds01.names import user_slice

_MIG_PROFILE = re.compile(r"^[1-9]g\.\d+gb$")
_NO_GPU = frozenset({"", "void", "none"})


def bind_sources(body: dict) -> list[str]:
    host = as_dict(body.get("HostConfig"), "HostConfig")
    out = []
    for b in as_list(host.get("Binds"), "HostConfig.Binds"):
        src = as_str(b, "a bind").split(":", 1)[0]
        if src.startswith("/"):
            out.append(src)
    for m in as_list(host.get("Mounts"), "HostConfig.Mounts"):
        m = as_dict(m, "a mount")
        if m.get("Type") == "bind":
            out.append(as_str(m.get("Source"), "Mount.Source"))
    return out


def named_volumes(body: dict) -> list[str]:
    host = as_dict(body.get("HostConfig"), "HostConfig")
    out = []
    for b in as_list(host.get("Binds"), "HostConfig.Binds"):
        src = as_str(b, "a bind").split(":", 1)[0]
        if src and not src.startswith("/"):
            out.append(src)
    for m in as_list(host.get("Mounts"), "HostConfig.Mounts"):
        m = as_dict(m, "a mount")
        if m.get("Type") == "volume" and m.get("Source"):
            out.append(as_str(m.get("Source"), "Mount.Source"))
    return out


def joined_containers(body: dict) -> list[str]:
    """Containers whose namespaces, volumes or links a create would share."""
    host = as_dict(body.get("HostConfig"), "HostConfig")
    out = []
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode"):
        mode = as_str(host.get(key), f"HostConfig.{key}")
        if mode.startswith("container:"):
            out.append(mode.split(":", 1)[1])
    for v in as_list(host.get("VolumesFrom"), "HostConfig.VolumesFrom"):
        out.append(as_str(v, "VolumesFrom").split(":", 1)[0])
    for link in as_list(host.get("Links"), "HostConfig.Links"):
        out.append(as_str(link, "Links").split(":", 1)[0].lstrip("/"))
    return out


def networks_of(body: dict) -> list[str]:
    host = as_dict(body.get("HostConfig"), "HostConfig")
    mode = as_str(host.get("NetworkMode"), "HostConfig.NetworkMode")
    nets = (
        []
        if mode in USER_NETWORK_MODES or mode == "host" or mode.startswith("container:")
        else [mode]
    )
    endpoints = as_dict(
        as_dict(body.get("NetworkingConfig"), "NetworkingConfig").get("EndpointsConfig"),
        "EndpointsConfig",
    )
    nets += [n for n in endpoints if n not in BUILTIN_NETWORKS]
    return nets


_HOST_MODES = {
    "PidMode": "the host's process namespace (--pid host)",
    "IpcMode": "the host's IPC namespace (--ipc host)",
    "UsernsMode": "the host's user namespace (--userns host)",
    "UTSMode": "the host's UTS namespace (--uts host)",
    "CgroupnsMode": "the host's cgroup namespace (--cgroupns host)",
    "NetworkMode": "the host's network (--network host)",
}
# HostConfig keys a user may not set at all (any non-empty value is refused).
_FORBIDDEN_HOST = {
    "Devices": "host devices (--device) are not available; ask for GPUs with --gpus",
    "DeviceCgroupRules": "device cgroup rules are not available",
    "MaskedPaths": "changing the masked /proc paths is not allowed",
    "ReadonlyPaths": "changing the read-only /proc paths is not allowed",
    "Cgroup": "joining another cgroup is not allowed",
}
# The values a user's request may give for those keys (the daemon's own default).
_FORBIDDEN_DEFAULT: dict[str, Any] = {"Devices": [], "DeviceCgroupRules": [], "Cgroup": ""}
_CPU_PERIOD = 100_000
# ulimits a container may set, and how high (the hard limit); others are refused
_ULIMIT_MAX = {"nofile": 1 << 20, "core": 0, "stack": 1 << 30, "memlock": 1 << 26}


def _check_ulimits(host: dict) -> None:
    for u in as_list(host.get("Ulimits"), "HostConfig.Ulimits"):
        u = as_dict(u, "a ulimit")
        name = as_str(u.get("Name"), "Ulimit.Name")
        if name not in _ULIMIT_MAX:
            raise Refused(
                f"--ulimit {name} is not allowed (allowed: {', '.join(sorted(_ULIMIT_MAX))})"
            )
        for key in ("Soft", "Hard"):
            v = as_int(u.get(key), f"Ulimit.{key}")
            if v < 0 or v > _ULIMIT_MAX[name]:
                raise Refused(
                    f"--ulimit {name}: {v} is above what DS01 allows ({_ULIMIT_MAX[name]})"
                )


def _check_ports(host: dict) -> None:
    """Host ports below 1024 are the server's own services."""
    for port, bindings in as_dict(host.get("PortBindings"), "HostConfig.PortBindings").items():
        for b in as_list(bindings, f"PortBindings.{port}"):
            raw = as_str(as_dict(b, "a port binding").get("HostPort"), "HostPort")
            for part in raw.split("-") if raw else []:
                if not part.isdigit():
                    raise Refused(f"malformed host port {raw!r}", 400)
                if 0 < int(part) < 1024:
                    raise Refused(
                        f"host port {part} is below 1024 (the server's own services); "
                        f"publish on a port from 1024 up, e.g. -p 8888:{port.split('/')[0]}"
                    )


def _normcap(cap: str) -> str:
    cap = cap.upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def _gpu_request(host: dict, env: list[str], limits: Role) -> GpuRequest | None:
    count, kind = 0, None
    for dr in as_list(host.get("DeviceRequests"), "HostConfig.DeviceRequests"):
        dr = as_dict(dr, "a device request")
        caps = [
            c
            for group in as_list(dr.get("Capabilities"), "Capabilities")
            for c in as_list(group, "Capabilities")
        ]
        driver = as_str(dr.get("Driver"), "Driver")
        if driver not in ("", "nvidia") or (driver == "" and "gpu" not in caps):
            raise Refused(
                f"device request for driver {driver!r} is not available; only GPUs "
                "(--gpus N) may be requested"
            )
        ids = [as_str(i, "DeviceIDs") for i in as_list(dr.get("DeviceIDs"), "DeviceIDs")]
        n = as_int(dr.get("Count"), "Count")
        if ids:
            profiles = {i for i in ids if _MIG_PROFILE.match(i) or i == "gpu"}
            if len(profiles) == 1 and len(ids) == len([i for i in ids if i in profiles]):
                kind = profiles.pop()
            count += len(ids)
        elif n < 0:
            raise Refused(
                f"--gpus all is not available on DS01: ask for a number of GPUs "
                f"(--gpus 1; your role may use up to {limits.gpu.max_units_per_container} "
                "per container)"
            )
        else:
            count += n
    for item in env:
        key, _, val = item.partition("=")
        if key == "NVIDIA_VISIBLE_DEVICES" and val.strip().lower() not in _NO_GPU:
            if val.strip().lower() == "all":
                raise Refused(
                    "NVIDIA_VISIBLE_DEVICES=all is not available on DS01: ask for a "
                    "number of GPUs (--gpus 1)"
                )
            if count == 0:
                count = len([v for v in val.split(",") if v.strip()])
    if count == 0:
        return None
    return GpuRequest(count, kind)


def _clamp_resources(host: dict, limits: Role, host_cpus: int | None) -> None:
    c = limits.container
    nano = as_int(host.get("NanoCpus"), "NanoCpus")
    quota, period = (
        as_int(host.get("CpuQuota"), "CpuQuota"),
        as_int(host.get("CpuPeriod"), "CpuPeriod"),
    )
    if not nano and quota > 0:
        nano = quota * 1_000_000_000 // (period or _CPU_PERIOD)
    limit_nano = int(min(c.cpus, host_cpus or c.cpus) * 1_000_000_000)
    host["NanoCpus"] = min(nano, limit_nano) if nano > 0 else limit_nano
    host["CpuQuota"] = 0
    host["CpuPeriod"] = 0
    mem = as_int(host.get("Memory"), "Memory")
    host["Memory"] = min(mem, c.memory) if mem > 0 else c.memory
    host["MemorySwap"] = host["Memory"] + c.swap
    shm = as_int(host.get("ShmSize"), "ShmSize")
    host["ShmSize"] = min(shm, c.shm_size) if shm > 0 else c.shm_size
    pids = as_int(host.get("PidsLimit"), "PidsLimit")
    host["PidsLimit"] = min(pids, c.pids) if pids > 0 else c.pids
    if as_int(host.get("CpuRealtimeRuntime"), "CpuRealtimeRuntime") > 0:
        raise Refused("real-time CPU scheduling is not available")
    if host.get("OomKillDisable"):
        raise Refused("disabling the OOM killer is not allowed (--oom-kill-disable)")
    if as_int(host.get("OomScoreAdj"), "OomScoreAdj") < 0:
        raise Refused("a negative OOM score adjustment is not allowed")


def _run_as_caller(config: dict, host: dict, caller: Caller) -> None:
    user = as_str(config.get("User"), "User")
    if user:
        name, _, group = user.partition(":")
        if name not in (str(caller.uid), caller.name):
            raise Refused(
                f"containers with bind mounts run as you ({caller.name}, uid {caller.uid}): "
                f"--user {user} would let the container use your folders as another "
                f"user; drop --user or use --user {caller.uid}:{caller.gid}"
            )
        if group and group not in (str(caller.gid), *caller.groups):
            raise Refused(f"--user {user}: you are not in group {group}")
        gid = group if group.isdigit() else str(caller.gid) if not group else group
        config["User"] = f"{caller.uid}:{gid}"
    else:
        config["User"] = f"{caller.uid}:{caller.gid}"
    for g in as_list(host.get("GroupAdd"), "GroupAdd"):
        if as_str(g, "GroupAdd") not in caller.groups:
            raise Refused(f"--group-add {g}: you are not in that group")
    if as_list(host.get("CapAdd"), "CapAdd"):
        raise Refused(
            "containers with bind mounts get no added capabilities (--cap-add): they "
            "could bypass file permissions on the mounted folders"
        )
    opts = [o for o in as_list(host.get("SecurityOpt"), "SecurityOpt")]
    if not any(o.startswith("no-new-privileges") for o in opts):
        opts.append("no-new-privileges")
    host["SecurityOpt"] = opts


@dataclass(frozen=True)
class CreateSpec:
    """One create request, parsed once: what every check reads."""

    body: dict[str, Any]  # the create body (Config at the top level); the rewrite's own copy
    host: dict[str, Any]  # its HostConfig
    caller: Caller
    policy: Policy
    facts: Facts
    limits: Role

    @property
    def role(self) -> str:
        return self.caller.role or ADMIN_ROLE


Check = Callable[[CreateSpec], None]


def image_usable(s: CreateSpec) -> None:
    image = as_str(s.body.get("Image"), "Image")
    if not image:
        raise Refused("malformed request: no image given", 400)
    readable_image(s.caller, s.policy, s.facts, image)


def containers_per_user(s: CreateSpec) -> None:
    cap = s.limits.lifecycle.max_containers
    if cap is None:
        return
    if s.facts.owned_containers is None:
        raise Refused("internal error: your containers were not counted; request refused", 500)
    if s.facts.owned_containers >= cap:
        raise Refused(
            f"you have {s.facts.owned_containers} containers, the most your role "
            f"({s.role}) may have is {cap}; remove one first (docker rm NAME)"
        )


def joined_objects_owned(s: CreateSpec) -> None:
    """Namespaces, networks and links of other containers: the caller's own."""
    for key in ("PidMode", "IpcMode", "UTSMode"):
        mode = as_str(s.host.get(key), f"HostConfig.{key}")
        if mode.startswith("container:"):
            own(s.caller, s.facts, "container", mode.split(":", 1)[1])
    for name in networks_of(s.body):
        own(s.caller, s.facts, "network", name)
    for link in as_list(s.host.get("Links"), "HostConfig.Links"):
        own(s.caller, s.facts, "container", as_str(link, "Links").split(":", 1)[0].lstrip("/"))


def not_privileged(s: CreateSpec) -> None:
    if s.host.get("Privileged") not in (None, False):
        raise Refused(
            "privileged containers are not allowed on DS01 (--privileged gives "
            "the container root on the server)"
        )


def allowed_capabilities(s: CreateSpec) -> None:
    allowed = {_normcap(c) for c in s.policy.docker.allowed_capabilities}
    for c in as_list(s.host.get("CapAdd"), "CapAdd"):
        if _normcap(as_str(c, "CapAdd")) not in allowed:
            raise Refused(f"capability {c} is not allowed; allowed: {', '.join(sorted(allowed))}")


def no_host_namespaces(s: CreateSpec) -> None:
    for key, why in _HOST_MODES.items():
        if as_str(s.host.get(key), f"HostConfig.{key}") == "host":
            raise Refused(f"{why} is not allowed on DS01")


def no_forbidden_host_keys(s: CreateSpec) -> None:
    # Present at all, not "truthy": an empty MaskedPaths unmasks /proc.
    for key, why in _FORBIDDEN_HOST.items():
        if s.host.get(key) is not None and s.host.get(key) != _FORBIDDEN_DEFAULT.get(key):
            raise Refused(why)


def only_no_new_privileges(s: CreateSpec) -> None:
    for opt in as_list(s.host.get("SecurityOpt"), "SecurityOpt"):
        if not re.fullmatch(r"no-new-privileges(?:[:=]true)?", as_str(opt, "SecurityOpt")):
            raise Refused(f"security option {opt!r} is not allowed (only no-new-privileges)")


def only_net_sysctls(s: CreateSpec) -> None:
    for key in as_dict(s.host.get("Sysctls"), "Sysctls"):
        if not key.startswith("net."):
            raise Refused(f"sysctl {key} is not allowed (only net.* inside the container)")


def default_runtime(s: CreateSpec) -> None:
    runtime = as_str(s.host.get("Runtime"), "Runtime")
    if runtime not in ("", "runc", "nvidia"):
        raise Refused(f"runtime {runtime!r} is not allowed")


def default_log_driver(s: CreateSpec) -> None:
    log = as_dict(s.host.get("LogConfig"), "LogConfig")
    if as_str(log.get("Type"), "LogConfig.Type") not in ("", "json-file", "local"):
        raise Refused("log drivers other than the default are not available on DS01")


def ulimits_capped(s: CreateSpec) -> None:
    _check_ulimits(s.host)


def no_privileged_ports(s: CreateSpec) -> None:
    _check_ports(s.host)


def own_network_mode(s: CreateSpec) -> None:
    mode = as_str(s.host.get("NetworkMode"), "HostConfig.NetworkMode")
    if mode.startswith("container:"):
        own(s.caller, s.facts, "container", mode.split(":", 1)[1])
    elif mode not in USER_NETWORK_MODES:
        own(s.caller, s.facts, "network", mode)


# Checks for everyone, then the ones admins are exempt from (in this order).
CHECKS: tuple[Check, ...] = (image_usable, containers_per_user, joined_objects_owned)
USER_CHECKS: tuple[Check, ...] = (
    not_privileged,
    allowed_capabilities,
    no_host_namespaces,
    no_forbidden_host_keys,
    only_no_new_privileges,
    only_net_sysctls,
    default_runtime,
    default_log_driver,
    ulimits_capped,
    no_privileged_ports,
    own_network_mode,
)


def decide_create(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    admin = caller.is_admin
    role = caller.role or ADMIN_ROLE
    limits = policy.limits_for(role, caller.name)
    body = json.loads(json.dumps(as_dict(req.body, "body")))  # deep copy: the rewrite is ours
    host = as_dict(body.get("HostConfig"), "HostConfig")
    body["HostConfig"] = host
    query = dict(req.query)
    spec = CreateSpec(body, host, caller, policy, facts, limits)
    for check in CHECKS + (() if admin else USER_CHECKS):
        check(spec)
    if not admin:
        host["LogConfig"] = {"Type": "", "Config": {}}

    has_binds = rewrite_mounts(spec)

    labels = relabel(body.get("Labels"), caller, "Labels")
    labels[CTYPE] = container_type(as_dict(body.get("Labels"), "Labels"))
    if has_binds and not admin:
        _run_as_caller(body, host, caller)
        labels[RUN_AS] = str(caller.uid)

    # ----- resources, cgroup, GPU
    _clamp_resources(host, limits, facts.host_cpus)
    host["CgroupParent"] = user_slice(role, caller.name)
    env = [as_str(x, "Env") for x in as_list(body.get("Env"), "Env")]
    gpu = _gpu_request(host, env, limits)
    host.pop("DeviceRequests", None)
    body["Env"] = [x for x in env if not x.startswith("NVIDIA_VISIBLE_DEVICES=")]
    body["Env"].append("NVIDIA_VISIBLE_DEVICES=void")  # overrides images' =all (nvidia/cuda)
    if gpu:
        restart = as_str(
            as_dict(host.get("RestartPolicy"), "RestartPolicy").get("Name"), "RestartPolicy"
        )
        if restart not in ("", "no"):
            raise Refused(
                f"GPU containers cannot use --restart {restart}: the daemon would start "
                "them without asking the GPU allocator; start them with docker start"
            )
        if not req.q("name"):
            query["name"] = gpu_container_name(caller.name)
    body["Labels"] = labels
    return Allow(
        endpoint="containers.create",
        body=body,
        query=query,
        gpu=gpu,
        gpu_hook="assign" if gpu else None,
    )


def gpu_container_name(user: str) -> str:
    """A name for a GPU container created without one (the allocator keys on names)."""
    stem = re.sub(r"[^a-zA-Z0-9_.-]", "-", user.split("@")[0]).strip("-.") or "user"
    return f"{stem}-gpu-{secrets.token_hex(3)}"


def apply_gpu(body: dict, uuids: list[str], device_requests: bool) -> dict:
    """Give a create body exactly the assigned units (and nothing else)."""
    out = dict(body)
    host = dict(out.get("HostConfig") or {})
    if device_requests:
        host["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": list(uuids), "Capabilities": [["gpu"]]}
        ]
    out["HostConfig"] = host
    env = [x for x in out.get("Env") or [] if not x.startswith("NVIDIA_VISIBLE_DEVICES=")]
    out["Env"] = env + [f"NVIDIA_VISIBLE_DEVICES={','.join(uuids)}"]
    out["Labels"] = {**(out.get("Labels") or {}), GPU: ",".join(uuids)}
    return out
