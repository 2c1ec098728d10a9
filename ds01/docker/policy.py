"""The one decision over every Docker API request a user makes.

The access service (``ds01.docker.service``) calls, for each request:

1. :func:`route` -- which endpoint it is (unknown endpoints are refused);
2. :func:`needs` -- which daemon objects and host paths the decision must see
   (the service looks them up: labels of the named container, the real path of
   a bind-mount source, how many containers the caller owns);
3. :func:`decide` -- pure: request + caller + policy + those facts ->
   :class:`Allow` (possibly rewritten) or :class:`Deny` (status, message).

Anything :func:`decide` cannot interpret is refused: the service fails closed.
The rules are tabled in docs/docker.md; tests/unit/docker/test_policy.py
exercises each one, allowed and denied.

Ownership is the ``ds01.user`` label. The service sets it (with ``ds01.managed``,
``ds01.role`` and ``ds01.container_type``) on every container, volume, network
and built or committed image, and overwrites whatever a client sends under
``ds01.``. An object without the label belongs to nobody: only admins touch it
(base images pulled from a registry can be used by everyone, removed by admins).

Running as another uid on bind mounts: a container with any bind mount runs as
the caller (``uid:gid``), with ``no-new-privileges``, no added capabilities and
only the caller's own supplementary groups. Root in such a container would be
root on the host files behind the bind (it could read other users' files in a
shared area or plant a set-uid binary in the caller's home). ``exec`` into such
a container may not switch to another user either, and ``docker cp`` to or from
it is refused (the daemon copies as root, through the binds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ds01.config import Policy, Role
from ds01.docker.create import (
    _CPU_PERIOD,
    apply_gpu,
    bind_sources,
    decide_create,
    gpu_container_name,
    joined_containers,
    named_volumes,
    networks_of,
)
from ds01.docker.images import (
    decide_build,
    decide_images_create,
    free_image_name,
    image_ref,
    readable_image,
    shared_image,
)
from ds01.docker.model import (
    ADMIN_ROLE,
    BUILTIN_NETWORKS,
    CTYPE,
    GPU,
    LABEL_PREFIX,
    MANAGED,
    MAX_JSON_BODY,
    OWNER,
    ROLE,
    RUN_AS,
    SHARED,
    Allow,
    Caller,
    Decision,
    Deny,
    Facts,
    GpuRequest,
    Needs,
    Refused,
    Request,
    Target,
    as_dict,
    as_int,
    as_str,
    need,
    no_such,
    own,
    parse_filters,
    relabel,
    with_owner_filter,
)
from ds01.docker.routes import (
    MIN_API_VERSION,
    PINNED_API_VERSION,
    Route,
    check_version,
    route,
    split_version,
    upstream_path,
)

# The rules' public names (the service, the GPU glue and the tests use these).
__all__ = [
    "ADMIN_ROLE",
    "Allow",
    "CTYPE",
    "Caller",
    "Decision",
    "Deny",
    "Facts",
    "GPU",
    "GpuRequest",
    "MANAGED",
    "MAX_JSON_BODY",
    "MIN_API_VERSION",
    "Needs",
    "OWNER",
    "PINNED_API_VERSION",
    "ROLE",
    "RUN_AS",
    "Refused",
    "Request",
    "Route",
    "SHARED",
    "Target",
    "apply_gpu",
    "check_version",
    "decide",
    "filter_response",
    "gpu_container_name",
    "needs",
    "parse_filters",
    "route",
    "split_version",
    "upstream_path",
]


def needs(req: Request, caller: Caller, rt: Route) -> Needs:
    """The facts :func:`decide` will read for this request."""
    n = Needs()
    if not caller.role and not caller.is_admin:
        return n
    e, ref = rt.endpoint, rt.ref
    if e.startswith("container."):
        n.targets.append(("container", ref))
    elif e == "exec":
        n.targets.append(("exec", ref))
    elif e == "image.read" or e == "image.remove":
        n.targets.append(("image", ref))
    elif e == "image.tag":
        n.targets += [
            ("image", ref),
            ("image", image_ref(req.q("repo"), req.q("tag") or "latest")),
        ]
    elif e.startswith("network.") and e != "network.connect":
        n.targets.append(("network", ref))
        n.own_containers = e == "network.read" and not caller.is_admin
    elif e == "network.connect":
        n.targets.append(("network", ref))
        body = req.body if isinstance(req.body, dict) else {}
        if isinstance(body.get("Container"), str):
            n.targets.append(("container", body["Container"]))
    elif e.startswith("volume."):
        n.targets.append(("volume", ref))
    elif e == "images.save":
        n.targets += [("image", name) for name in req.many("names")]
    elif e == "build":
        n.targets += [
            ("image", t if ":" in t.rsplit("/", 1)[-1] else f"{t}:latest")
            for t in req.many("t")
            if t
        ]
    elif e == "images.create":
        if req.q("fromImage"):
            n.targets.append(("image", image_ref(req.q("fromImage"), req.q("tag") or "latest")))
        elif req.q("repo"):
            n.targets.append(("image", image_ref(req.q("repo"), req.q("tag") or "latest")))
    elif e == "commit":
        n.targets.append(("container", req.q("container")))
        if req.q("repo"):
            n.targets.append(("image", image_ref(req.q("repo"), req.q("tag") or "latest")))
    elif e == "containers.create" and isinstance(req.body, dict):
        body = req.body
        try:
            image = as_str(body.get("Image"), "Image")
            if image:
                n.targets.append(("image", image))
            n.targets += [("volume", v) for v in named_volumes(body)]
            n.targets += [("container", c) for c in joined_containers(body)]
            n.targets += [("network", x) for x in networks_of(body)]
            n.paths += bind_sources(body)
        except Refused:
            pass  # decide() reports the malformed part
        n.count_containers = True
    return n


# --------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------


def decide(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    """Allow (possibly rewritten) or deny one request. Never raises."""
    try:
        rt = route(req.method, req.path)
        if rt is None:
            return Deny(
                403,
                f"{req.method} {req.path} is not available through the DS01 docker "
                "service (if you need it, ask the admins)",
            )
        if rt.body == "json" and not isinstance(req.body, dict) and req.body is not None:
            return Deny(400, "malformed request: the body must be a JSON object")
        return _decide(req, rt, caller, policy, facts)
    except Refused as r:
        return Deny(r.status, r.message)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # fail closed
        return Deny(400, f"request refused: it could not be interpreted ({type(e).__name__})")


@dataclass(frozen=True)
class Ask:
    """One request in context: what every rule family reads."""

    req: Request
    rt: Route
    caller: Caller
    policy: Policy
    facts: Facts

    @property
    def admin(self) -> bool:
        return self.caller.is_admin

    @property
    def ref(self) -> str:
        return self.rt.ref

    @property
    def endpoint(self) -> str:
        return self.rt.endpoint

    def limits(self) -> Role:
        return self.policy.limits_for(self.caller.role or ADMIN_ROLE, self.caller.name)


def _decide(req: Request, rt: Route, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    ask = Ask(req, rt, caller, policy, facts)
    if rt.endpoint not in ("ping", "version") and not caller.role and not caller.is_admin:
        raise Refused(
            f"user {caller.name} has no DS01 role, so docker is not available to them; "
            "ask the admins to add the account to a ds01-<role> group"
        )
    family = FAMILIES.get(rt.endpoint)
    if family is None:
        raise Refused(f"{req.method} {rt.path} is not available through the DS01 docker service")
    return family(ask)


# ----- families: one function per endpoint family of the route table


def _open(a: Ask) -> Decision:
    """Reads nobody's objects: ping, version, info, registry lookups."""
    return Allow(endpoint=a.endpoint)


def _admins_only(a: Ask) -> Decision:
    if a.admin:
        return Allow(endpoint=a.endpoint)
    what = "pruning" if a.endpoint == "prune" else f"{a.req.method} {a.rt.path}"
    raise Refused(
        f"{what} is for admins only on DS01; remove your own objects by name "
        "(docker rm, docker image rm, docker volume rm)"
    )


def _own_list(a: Ask) -> Decision:
    """Lists and events the daemon filters by the owner label."""
    return Allow(endpoint=a.endpoint, query=None if a.admin else with_owner_filter(a.req, a.caller))


def _filtered_list(a: Ask) -> Decision:
    """Lists the daemon cannot filter by owner: the service filters the answer."""
    kind = {"images.list": "images", "networks.list": "networks"}[a.endpoint]
    return Allow(endpoint=a.endpoint, filter=None if a.admin else kind)


def _container(a: Ask) -> Decision:
    t = own(a.caller, a.facts, "container", a.ref)
    e, name = a.endpoint, t.name or a.ref
    gpu_held = bool(t.labels.get(GPU))
    if e == "container.archive" and t.labels.get(RUN_AS) and not a.admin:
        raise Refused(
            f"docker cp is not available for {name}: it has bind mounts, and the daemon "
            "would copy as root through them; copy through the bind-mounted folder instead"
        )
    if e == "container.rename" and gpu_held:
        raise Refused(
            f"{name} holds a GPU and is known to the GPU allocator by its name; it cannot "
            "be renamed (create a new container instead)"
        )
    if e == "container.restart" and gpu_held:
        raise Refused(
            f"{name} holds a GPU: restart it with docker stop and docker start, so that "
            "the GPU allocator sees both",
            409,
        )
    if e == "container.update":
        _check_update(as_dict(a.req.body, "body"), a.limits(), t, a.admin)
    if e == "container.exec":
        _check_exec(as_dict(a.req.body, "body"), a.caller, t)
    hook = {"container.start": "allocate", "container.remove": "forget"}.get(e)
    return Allow(endpoint=e, target=t, gpu_hook=hook if gpu_held else None)


def _exec_instance(a: Ask) -> Decision:
    x = need(a.facts, "exec", a.ref)
    if x is None:
        raise no_such("exec instance", a.ref)
    if not a.admin and x.owner != a.caller.name:
        raise Refused(f"exec instance {a.ref} runs in a container that is not yours")
    return Allow(endpoint=a.endpoint, target=x)


def _image_read(a: Ask) -> Decision:
    if readable_image(a.caller, a.policy, a.facts, a.ref) is None:
        raise no_such("image", a.ref)
    return Allow(endpoint=a.endpoint)


def _image_remove(a: Ask) -> Decision:
    t = need(a.facts, "image", a.ref)
    if t is None:
        raise no_such("image", a.ref)
    if not a.admin and t.owner != a.caller.name:
        whose = (
            f"{t.owner}'s image"
            if t.owner
            else "a shared base image"
            if shared_image(t, a.policy, a.ref)
            else "an image of the admins"
        )
        raise Refused(
            f"{a.ref} is {whose}; you may only remove images you built "
            "(unused images are pruned on schedule)"
        )
    return Allow(endpoint=a.endpoint)


def _image_tag(a: Ask) -> Decision:
    src = need(a.facts, "image", a.ref)
    if src is None:
        raise no_such("image", a.ref)
    if not a.admin and src.owner != a.caller.name:
        raise Refused(f"you may only tag images you built; {a.ref} is not yours")
    name = image_ref(a.req.q("repo"), a.req.q("tag") or "latest")
    free_image_name(a.caller, a.policy, a.facts, name)
    return Allow(endpoint=a.endpoint)


def _images_save(a: Ask) -> Decision:
    for name in a.req.many("names"):
        if readable_image(a.caller, a.policy, a.facts, name) is None:
            raise no_such("image", name)
    return Allow(endpoint=a.endpoint)


def _commit(a: Ask) -> Decision:
    req, caller = a.req, a.caller
    own(caller, a.facts, "container", req.q("container"))
    if req.q("repo"):
        free_image_name(
            caller, a.policy, a.facts, image_ref(req.q("repo"), req.q("tag") or "latest")
        )
    body = dict(as_dict(req.body, "body"))
    body["Labels"] = relabel(body.get("Labels"), caller, "Labels")
    query = dict(req.query)
    query["changes"] = [c for c in req.many("changes") if LABEL_PREFIX not in c]
    query["changes"].append(f'LABEL {OWNER}="{caller.name}"')
    return Allow(endpoint=a.endpoint, body=body, query=query)


def _volume_new(a: Ask) -> Decision:
    return Allow(endpoint=a.endpoint, body=_volume_create(as_dict(a.req.body, "body"), a.caller))


def _network_new(a: Ask) -> Decision:
    return Allow(endpoint=a.endpoint, body=_network_create(as_dict(a.req.body, "body"), a.caller))


def _own_object(a: Ask) -> Decision:
    """Inspect or remove a volume, remove a network: the owner's."""
    own(a.caller, a.facts, a.endpoint.split(".")[0], a.ref)
    return Allow(endpoint=a.endpoint)


def _network_read(a: Ask) -> Decision:
    t = need(a.facts, "network", a.ref)
    if t is None:
        raise no_such("network", a.ref)
    if a.admin:
        return Allow(endpoint=a.endpoint)
    if t.name not in BUILTIN_NETWORKS and t.owner != a.caller.name:
        raise Refused(f"network {a.ref} is not yours")
    if a.facts.own_containers is None:
        raise Refused("internal error: your containers were not listed; request refused", 500)
    return Allow(endpoint=a.endpoint, filter="network", visible=frozenset(a.facts.own_containers))


def _network_connect(a: Ask) -> Decision:
    t = need(a.facts, "network", a.ref)
    if t is None:
        raise no_such("network", a.ref)
    if not a.admin and t.owner != a.caller.name and t.name not in ("bridge", "default"):
        raise Refused(f"network {a.ref} is not yours; connect your containers to your own networks")
    body = as_dict(a.req.body, "body")
    own(a.caller, a.facts, "container", as_str(body.get("Container"), "Container"))
    return Allow(endpoint=a.endpoint)


def _with_args(fn):
    return lambda a: fn(a.req, a.caller, a.policy, a.facts)


FAMILIES = {
    **dict.fromkeys(
        ("ping", "version", "info", "distribution", "images.search", "build.cancel"), _open
    ),
    "admin": _admins_only,
    "prune": _admins_only,
    **dict.fromkeys(("containers.list", "events", "volumes.list"), _own_list),
    **dict.fromkeys(("images.list", "networks.list"), _filtered_list),
    **dict.fromkeys(
        (
            "container.read",
            "container.act",
            "container.restart",
            "container.start",
            "container.update",
            "container.rename",
            "container.exec",
            "container.archive",
            "container.remove",
        ),
        _container,
    ),
    "exec": _exec_instance,
    "image.read": _image_read,
    "image.remove": _image_remove,
    "image.tag": _image_tag,
    "images.save": _images_save,
    "images.create": _with_args(decide_images_create),
    "build": _with_args(decide_build),
    "commit": _commit,
    "volumes.create": _volume_new,
    "volume.read": _own_object,
    "volume.remove": _own_object,
    "networks.create": _network_new,
    "network.read": _network_read,
    "network.remove": _own_object,
    "network.connect": _network_connect,
    "containers.create": _with_args(decide_create),
}


# --------------------------------------------------------------------------
# Volumes and networks
# --------------------------------------------------------------------------


def _volume_create(body: dict, caller: Caller) -> dict:
    driver = as_str(body.get("Driver"), "Driver") or "local"
    if not caller.is_admin:
        if driver != "local":
            raise Refused(f"volume driver {driver!r} is not allowed; use the default (local)")
        if as_dict(body.get("DriverOpts"), "DriverOpts"):
            raise Refused(
                "volume driver options are not allowed: a local volume with options can "
                "bind any host path; use a plain volume or a bind mount of your home"
            )
        if body.get("ClusterVolumeSpec"):
            raise Refused("cluster volumes are not available on DS01")
    out = dict(body)
    out["Labels"] = relabel(body.get("Labels"), caller, "Labels")
    return out


def _network_create(body: dict, caller: Caller) -> dict:
    driver = as_str(body.get("Driver"), "Driver") or "bridge"
    if not caller.is_admin:
        if driver != "bridge":
            raise Refused(f"network driver {driver!r} is not allowed; use the default (bridge)")
        if as_dict(body.get("Options"), "Options"):
            raise Refused("network driver options are not allowed on DS01")
        if body.get("ConfigFrom") or body.get("ConfigOnly") or body.get("Ingress"):
            raise Refused("config-only and ingress networks are not available on DS01")
    out = dict(body)
    out["Labels"] = relabel(body.get("Labels"), caller, "Labels")
    return out


_UPDATE_LIMITED = {"NanoCpus", "CpuQuota", "CpuPeriod", "Memory", "MemorySwap", "PidsLimit"}
_UPDATE_FREE = {
    "CpuShares",
    "MemoryReservation",
    "CpusetCpus",
    "CpusetMems",
    "BlkioWeight",
    "RestartPolicy",
    "CpuRealtimePeriod",
}


def _check_update(body: dict, limits: Role, t: Target, admin: bool) -> None:
    if admin:
        return
    c = limits.container
    for key, val in body.items():
        # The CLI sends every field of Resources, unset ones as zero values.
        if key in _UPDATE_FREE or key in _UPDATE_LIMITED or val in (None, 0, "", [], {}, False):
            continue
        raise Refused(f"docker update of {key} is not allowed")
    if (
        body.get("PidsLimit") is not None
        and not 0 < as_int(body["PidsLimit"], "PidsLimit") <= c.pids
    ):
        raise Refused(
            f"--pids-limit must stay between 1 and your role's limit ({c.pids}); "
            "0 and -1 would remove it"
        )
    nano = as_int(body.get("NanoCpus"), "NanoCpus")
    quota, period = (
        as_int(body.get("CpuQuota"), "CpuQuota"),
        as_int(body.get("CpuPeriod"), "CpuPeriod"),
    )
    if quota > 0:
        nano = max(nano, quota * 1_000_000_000 // (period or _CPU_PERIOD))
    if nano > c.cpus * 1_000_000_000 or quota < 0:
        raise Refused(f"--cpus above your role's limit ({c.cpus:g} CPUs)")
    mem = as_int(body.get("Memory"), "Memory")
    if mem > c.memory or mem < 0:
        raise Refused(f"--memory above your role's limit ({c.memory // 2**20} MiB)")
    swap = as_int(body.get("MemorySwap"), "MemorySwap")
    if swap < 0 or (swap and swap > (mem or c.memory) + c.swap):
        raise Refused("--memory-swap above your role's limit")
    pids = as_int(body.get("PidsLimit"), "PidsLimit")
    if pids < 0 or pids > c.pids:
        raise Refused(f"--pids-limit above your role's limit ({c.pids})")
    restart = as_str(
        as_dict(body.get("RestartPolicy"), "RestartPolicy").get("Name"), "RestartPolicy"
    )
    if t.labels.get(GPU) and restart not in ("", "no"):
        raise Refused("GPU containers cannot use a restart policy")


def _check_exec(body: dict, caller: Caller, t: Target) -> None:
    if caller.is_admin:
        return
    if body.get("Privileged") not in (None, False):
        raise Refused("privileged exec is not allowed on DS01")
    if t.labels.get(RUN_AS):
        user = as_str(body.get("User"), "User")
        name, _, group = user.partition(":")
        if user and (
            name not in (str(caller.uid), caller.name)
            or group
            and group not in (str(caller.gid), *caller.groups)
        ):
            raise Refused(
                f"{t.name or t.ref} has bind mounts and runs as you (uid {caller.uid}); "
                f"exec as another user ({user}) is not allowed"
            )


# --------------------------------------------------------------------------
# Response filters (lists whose daemon-side filters cannot express the rule)
# --------------------------------------------------------------------------


def filter_response(d: Allow, data: Any, caller: Caller, policy: Policy) -> Any:
    """What ``caller`` may see of a response the daemon cannot filter itself:
    images that are theirs or shared, networks that are theirs or built in,
    and in a network's inspect only their own containers."""
    if d.filter == "network":
        if not isinstance(data, dict):
            raise ValueError("the daemon's network inspect is not a JSON object")
        mine = d.visible or frozenset()
        out = dict(data)
        out["Containers"] = {
            cid: info for cid, info in (data.get("Containers") or {}).items() if cid in mine
        }
        return out
    if not isinstance(data, list):
        raise ValueError("the daemon's list response is not a JSON list")
    out_list = []
    for item in data:
        if not isinstance(item, dict):
            continue
        labels = item.get("Labels") or {}
        owner = labels.get(OWNER)
        if d.filter == "images":
            t = Target(
                "image", item.get("Id", ""), "", labels, tags=tuple(item.get("RepoTags") or ())
            )
            if owner == caller.name or shared_image(t, policy):
                out_list.append(item)
        elif d.filter == "networks" and (
            owner == caller.name or item.get("Name") in BUILTIN_NETWORKS
        ):
            out_list.append(item)
    return out_list
