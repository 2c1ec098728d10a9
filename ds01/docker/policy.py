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

import fnmatch
import json
import os.path
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from ds01.config import Policy, Role
from ds01.names import user_slice

# Labels the service owns; a client's ds01.* labels are dropped.
LABEL_PREFIX = "ds01."
OWNER = "ds01.user"
MANAGED = "ds01.managed"
ROLE = "ds01.role"
CTYPE = "ds01.container_type"
GPU = "ds01.gpu"
RUN_AS = "ds01.run_as"
SHARED = "ds01.shared"  # on an admin's image: a shared base image

BUILTIN_NETWORKS = frozenset({"bridge", "host", "none", "default"})
USER_NETWORK_MODES = frozenset({"", "default", "bridge", "none"})
MAX_JSON_BODY = 1 << 20  # a create body is a few KiB; anything near this is not a docker client
ADMIN_ROLE = "admin"
# Paths that must never reach a container, whatever the policy file says.
DOCKER_SOCKETS = ("/run/docker.sock", "/var/run/docker.sock", "/run/containerd/containerd.sock")

_MIG_PROFILE = re.compile(r"^[1-9]g\.\d+gb$")
_NO_GPU = frozenset({"", "void", "none"})


# --------------------------------------------------------------------------
# Inputs and outputs
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who is on the other end of the socket, as the kernel and NSS say."""

    uid: int
    gid: int
    name: str
    home: str
    role: str | None  # None: not a DS01 user (no ds01-<role> group)
    groups: frozenset[str] = frozenset()  # supplementary groups: names and gids as text

    @property
    def is_admin(self) -> bool:
        return self.uid == 0 or self.role == ADMIN_ROLE


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the /vX.Y prefix and the query
    query: dict[str, list[str]]
    body: Any = None  # parsed JSON for endpoints that carry JSON, else None

    def q(self, key: str, default: str = "") -> str:
        """A single-valued parameter (the request parser refused repeats)."""
        vals = self.query.get(key)
        return vals[0] if vals else default


@dataclass(frozen=True)
class Target:
    """A daemon object the request names, as the daemon described it."""

    kind: str  # container | image | volume | network | exec
    ref: str
    name: str = ""  # container name without '/', network or volume name
    labels: Mapping[str, str] = field(default_factory=dict)
    container: str = ""  # exec: the container it runs in (id)
    image_id: str = ""  # image: its id
    tags: tuple[str, ...] = ()  # image: its RepoTags

    @property
    def owner(self) -> str | None:
        return self.labels.get(OWNER)


@dataclass
class Facts:
    """What the service looked up for :func:`decide` (see :class:`Needs`)."""

    targets: dict[tuple[str, str], Target | None] = field(default_factory=dict)
    realpaths: dict[str, str | None] = field(default_factory=dict)  # None: does not exist
    owned_containers: int | None = None
    own_containers: list[str] | None = None  # ids of the caller's containers
    home_realpath: str | None = None
    host_cpus: int | None = None  # a container cannot get more CPUs than the host has


@dataclass
class Needs:
    targets: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    count_containers: bool = False
    own_containers: bool = False  # the ids of the caller's containers (response filters)


@dataclass(frozen=True)
class GpuRequest:
    count: int
    kind: str | None  # None: any unit, "gpu": a full GPU, or a MIG profile


@dataclass(frozen=True)
class Allow:
    query: dict[str, list[str]] | None = None  # rewritten query (None: as sent)
    body: Any = None  # rewritten JSON body (None: as sent)
    filter: str | None = None  # response filter: "images" | "networks" | "network"
    gpu: GpuRequest | None = None  # create: the service asks the allocator, then applies it
    endpoint: str = ""
    target: Target | None = None  # the container the request acts on, when there is one
    # The allocator call around the request: "assign" (create with a GPU),
    # "allocate" (start of a GPU container), "forget" (its removal).
    gpu_hook: str | None = None
    gpu_created: bool = False  # assign: this request made the assignment
    visible: frozenset[str] | None = None  # network inspect: the caller's container ids


@dataclass(frozen=True)
class Deny:
    status: int
    message: str


Decision = Allow | Deny


class Refused(Exception):
    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------

_C = r"(?P<ref>[^/]+)"
_I = r"(?P<ref>.+?)"


@dataclass(frozen=True)
class RouteSpec:
    """One row of the route table.

    + methods, pattern: what it matches (on the decoded path, version removed)
    + endpoint: the rule family :func:`decide` applies
    + op: Docker's name for the operation (its API reference, swagger operationId)
    + body: "none" (a body is refused), "json" (read whole, parsed, rebuilt by the
      service) or "stream" (a payload the rules decided on: build context, tar)
    + hijack: the connection may switch to raw streams (attach, exec start)
    + headers: client headers the route needs upstream (nothing else is copied)
    """

    methods: frozenset[str]
    pattern: re.Pattern[str]
    endpoint: str
    op: str
    body: str = "none"
    hijack: bool = False
    headers: tuple[str, ...] = ()


ROUTES: list[RouteSpec] = []


def _r(methods: str, pattern: str, endpoint: str, op: str, body: str = "none", **kw) -> None:
    ROUTES.append(
        RouteSpec(frozenset(methods.split()), re.compile(f"^{pattern}$"), endpoint, op, body, **kw)
    )


_r("GET HEAD", "/_ping", "ping", "SystemPing")
_r("GET", "/version", "version", "SystemVersion")
_r("GET", "/info", "info", "SystemInfo")
_r("GET", "/events", "events", "SystemEvents")
_r("GET", "/system/df", "admin", "SystemDataUsage")
_r("POST", "/auth", "admin", "SystemAuth")
_r("GET", f"/distribution/{_I}/json", "distribution", "DistributionInspect")
_r("POST", "/session", "admin", "Session")
_r("GET", "/containers/json", "containers.list", "ContainerList")
_r("POST", "/containers/create", "containers.create", "ContainerCreate", "json")
_r("POST", "/containers/prune", "prune", "ContainerPrune")
_r("GET", f"/containers/{_C}/json", "container.read", "ContainerInspect")
_r("GET", f"/containers/{_C}/top", "container.read", "ContainerTop")
_r("GET", f"/containers/{_C}/logs", "container.read", "ContainerLogs")
_r("GET", f"/containers/{_C}/changes", "container.read", "ContainerChanges")
_r("GET", f"/containers/{_C}/export", "container.read", "ContainerExport")
_r("GET", f"/containers/{_C}/stats", "container.read", "ContainerStats")
_r("POST", f"/containers/{_C}/resize", "container.act", "ContainerResize")
_r("POST", f"/containers/{_C}/stop", "container.act", "ContainerStop")
_r("POST", f"/containers/{_C}/restart", "container.restart", "ContainerRestart")
_r("POST", f"/containers/{_C}/kill", "container.act", "ContainerKill")
_r("POST", f"/containers/{_C}/pause", "container.act", "ContainerPause")
_r("POST", f"/containers/{_C}/unpause", "container.act", "ContainerUnpause")
_r("POST", f"/containers/{_C}/attach", "container.act", "ContainerAttach", hijack=True)
_r("POST", f"/containers/{_C}/wait", "container.act", "ContainerWait")
_r("POST", f"/containers/{_C}/start", "container.start", "ContainerStart")
_r("POST", f"/containers/{_C}/update", "container.update", "ContainerUpdate", "json")
_r("POST", f"/containers/{_C}/rename", "container.rename", "ContainerRename")
_r("POST", f"/containers/{_C}/exec", "container.exec", "ContainerExec", "json")
_r("GET HEAD", f"/containers/{_C}/archive", "container.archive", "ContainerArchive")
_r("PUT", f"/containers/{_C}/archive", "container.archive", "PutContainerArchive", "stream")
_r("DELETE", f"/containers/{_C}", "container.remove", "ContainerDelete")
_r("POST", f"/exec/{_C}/start", "exec", "ExecStart", "json", hijack=True)
_r("POST", f"/exec/{_C}/resize", "exec", "ExecResize")
_r("GET", f"/exec/{_C}/json", "exec", "ExecInspect")
_r("GET", "/images/json", "images.list", "ImageList")
_r("POST", "/build", "build", "ImageBuild", "stream", headers=("X-Registry-Config",))
_r("POST", "/build/prune", "prune", "BuildPrune")
_r("POST", "/build/cancel", "build.cancel", "BuildCancel")
_r("POST", "/images/create", "images.create", "ImageCreate", "stream")
_r("POST", "/images/load", "admin", "ImageLoad", "stream")
_r("GET", "/images/get", "images.save", "ImageGetAll")
_r("GET", "/images/search", "images.search", "ImageSearch")
_r("POST", "/images/prune", "prune", "ImagePrune")
_r("POST", "/commit", "commit", "ImageCommit", "json")
_r("GET", f"/images/{_I}/json", "image.read", "ImageInspect")
_r("GET", f"/images/{_I}/history", "image.read", "ImageHistory")
_r("GET", f"/images/{_I}/get", "image.read", "ImageGet")
_r("POST", f"/images/{_I}/push", "image.read", "ImagePush", headers=("X-Registry-Auth",))
_r("POST", f"/images/{_I}/tag", "image.tag", "ImageTag")
_r("DELETE", f"/images/{_I}", "image.remove", "ImageDelete")
_r("GET", "/networks", "networks.list", "NetworkList")
_r("POST", "/networks/create", "networks.create", "NetworkCreate", "json")
_r("POST", "/networks/prune", "prune", "NetworkPrune")
_r("GET", f"/networks/{_C}", "network.read", "NetworkInspect")
_r("POST", f"/networks/{_C}/connect", "network.connect", "NetworkConnect", "json")
_r("POST", f"/networks/{_C}/disconnect", "network.connect", "NetworkDisconnect", "json")
_r("DELETE", f"/networks/{_C}", "network.remove", "NetworkDelete")
_r("GET", "/volumes", "volumes.list", "VolumeList")
_r("POST", "/volumes/create", "volumes.create", "VolumeCreate", "json")
_r("POST", "/volumes/prune", "prune", "VolumePrune")
_r("GET", f"/volumes/{_C}", "volume.read", "VolumeInspect")
_r("DELETE", f"/volumes/{_C}", "volume.remove", "VolumeDelete")
_r("PUT", f"/volumes/{_C}", "admin", "VolumeUpdate", "stream")
_r(
    "GET HEAD POST PUT DELETE",
    "/(grpc|swarm|nodes|services|tasks|secrets|configs|plugins)(/.*)?",
    "admin",
    "Admin",
    "stream",
)

# API versions: clients may speak any version from the minimum on (the lowest
# that current docker CLIs, the SDK and VS Code Dev Containers send); the
# daemon is always spoken to in the pinned one (Debian 12's dockerd 20.10).
# Older versions change what the daemon reads (v1.23 applies a HostConfig sent
# to start), so they are refused rather than translated.
MIN_API_VERSION = (1, 40)
PINNED_API_VERSION = "1.41"

_VERSION = re.compile(r"^/v(\d{1,3})\.(\d{1,3})(?=/)")
_PATH_CHARS = re.compile(r"[A-Za-z0-9/._:@+=,~-]*")


@dataclass(frozen=True)
class Route:
    spec: RouteSpec
    ref: str  # the object named in the path ('' when none), decoded
    path: str  # the decoded path without the version prefix

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint

    @property
    def body(self) -> str:
        return self.spec.body

    @property
    def hijack(self) -> bool:
        return self.spec.hijack


def split_version(raw_path: str) -> tuple[tuple[int, int] | None, str]:
    """(API version or None when unversioned, the path without it)."""
    m = _VERSION.match(raw_path)
    if not m:
        return None, raw_path
    return (int(m.group(1)), int(m.group(2))), raw_path[m.end() :]


def check_version(version: tuple[int, int] | None) -> None:
    if version is not None and version < MIN_API_VERSION:
        low = ".".join(map(str, MIN_API_VERSION))
        raise Refused(
            f"Docker API version {version[0]}.{version[1]} is too old for DS01 (the oldest "
            f"accepted is {low}); use a current docker client",
            400,
        )


def decode_path(path: str) -> str:
    """The path as dockerd's router sees it, refusing what could be read two ways."""
    if "%" in path:
        if re.search(r"%(?![0-9A-Fa-f]{2})", path):
            raise Refused("malformed request path: a bad percent-escape", 400)
        if re.search(r"%00", path):
            raise Refused("malformed request path: an encoded NUL", 400)
        path = unquote(path, errors="strict")
    if not _PATH_CHARS.fullmatch(path) or "//" in path or "/./" in path or "/../" in path:
        raise Refused("malformed request path", 400)
    if path.endswith(("/.", "/..")):
        raise Refused("malformed request path", 400)
    return path


def route(method: str, raw_path: str) -> Route | None:
    """The route of ``raw_path`` (query already split off), or None (refused).
    Raises :class:`Refused` for versions below the minimum and malformed paths."""
    version, path = split_version(raw_path)
    check_version(version)
    path = decode_path(path)
    for spec in ROUTES:
        if method in spec.methods and (m := spec.pattern.match(path)):
            return Route(spec, m.groupdict().get("ref") or "", path)
    return None


def upstream_path(rt: Route) -> str:
    """The path the service sends to dockerd: pinned version, re-encoded."""
    return f"/v{PINNED_API_VERSION}{quote(rt.path, safe='/:@+=,~')}"


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _d(x: Any, what: str) -> dict:
    if x is None:
        return {}
    if not isinstance(x, dict):
        raise Refused(f"malformed request: {what} must be a JSON object", 400)
    return x


def _lst(x: Any, what: str) -> list:
    if x is None:
        return []
    if not isinstance(x, list):
        raise Refused(f"malformed request: {what} must be a JSON list", 400)
    return x


def _str(x: Any, what: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise Refused(f"malformed request: {what} must be a string", 400)
    return x


def _int(x: Any, what: str) -> int:
    if x is None:
        return 0
    if isinstance(x, bool) or not isinstance(x, int):
        raise Refused(f"malformed request: {what} must be an integer", 400)
    return x


def parse_filters(raw: str) -> dict[str, list[str]]:
    """Docker's ``filters`` query value, in either of its two JSON shapes."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise Refused("malformed request: the filters parameter is not JSON", 400) from None
    out: dict[str, list[str]] = {}
    for key, val in _d(data, "filters").items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list) and all(isinstance(v, str) for v in val):
            out[key] = list(val)
        else:
            raise Refused(f"malformed request: filter {key!r} has an unexpected shape", 400)
    return out


def _with_owner_filter(req: Request, caller: Caller) -> dict[str, list[str]]:
    filters = parse_filters(req.q("filters"))
    filters.setdefault("label", [])
    filters["label"].append(f"{OWNER}={caller.name}")
    query = dict(req.query)
    query["filters"] = [json.dumps(filters, separators=(",", ":"))]
    return query


def ownership_labels(caller: Caller) -> dict[str, str]:
    return {OWNER: caller.name, MANAGED: "true", ROLE: caller.role or ""}


def _relabel(labels: Any, caller: Caller, what: str) -> dict[str, str]:
    """The client's labels without any ds01.* key, plus ours."""
    given = _d(labels, what)
    out = {}
    for k, v in given.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Refused(f"malformed request: {what} must map strings to strings", 400)
        if not k.startswith(LABEL_PREFIX) or caller.is_admin and k == SHARED:
            out[k] = v
    out.update(ownership_labels(caller))
    return out


def container_type(labels: Mapping[str, str]) -> str:
    """devcontainer / compose / docker, from the labels those tools set."""
    if any(k.startswith("devcontainer.") for k in labels):
        return "devcontainer"
    if "com.docker.compose.project" in labels:
        return "compose"
    return "docker"


def _need(facts: Facts, kind: str, ref: str) -> Target | None:
    if (kind, ref) not in facts.targets:
        raise Refused(f"internal error: {kind} {ref!r} was not looked up; request refused", 500)
    return facts.targets[(kind, ref)]


def _no_such(kind: str, ref: str) -> Refused:
    return Refused(f"No such {kind}: {ref}", 404)


def _own(caller: Caller, facts: Facts, kind: str, ref: str) -> Target:
    """The target, which must exist and belong to the caller (admins: anyone's)."""
    t = _need(facts, kind, ref)
    if t is None:
        raise _no_such(kind, ref)
    if caller.is_admin or t.owner == caller.name:
        return t
    whose = f"belongs to {t.owner}" if t.owner else "is not a DS01 user's (an admin manages it)"
    raise Refused(f"{kind} {ref} {whose}; you may only use your own {kind}s")


def shared_image(t: Target, policy: Policy, ref: str = "") -> bool:
    """A shared base image: one an admin built (or pulled) labelled
    ``ds01.shared=true``, or one whose name is in ``docker.shared_images``.
    (A user's build inherits its base's labels, so the role label must be
    an admin's or absent.)"""
    if t.labels.get(SHARED) == "true" and t.labels.get(ROLE, ADMIN_ROLE) == ADMIN_ROLE:
        return True
    names = set(t.tags) | ({_tagged(ref)} if ref and not _is_id(ref) else set())
    return any(shared_name(n, policy) for n in names)


def shared_name(name: str, policy: Policy) -> bool:
    return any(fnmatch.fnmatchcase(_tagged(name), p) for p in policy.docker.shared_images)


def _tagged(name: str) -> str:
    return name if "@" in name or ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _is_id(ref: str) -> bool:
    return bool(re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", ref))


def _readable_image(caller: Caller, policy: Policy, facts: Facts, ref: str) -> Target | None:
    """The image, which the caller may use: theirs or a shared base image.
    Images without an owner (pulled or loaded by an admin, a build's
    intermediate layers) are the admins' until an admin shares them."""
    t = _need(facts, "image", ref)
    if t is None or caller.is_admin or t.owner == caller.name or shared_image(t, policy, ref):
        return t
    if t.owner:
        raise Refused(
            f"image {ref} was built by {t.owner}; you may only use your own images "
            "and the shared base images"
        )
    raise Refused(
        f"image {ref} has no owner on DS01 (pulled or loaded by an admin, or an "
        "intermediate layer of a build); you may use your own images and the shared base "
        "images (docker.shared_images); build FROM one of those, or ask the admins to share it"
    )


def _not_others_image_name(caller: Caller, policy: Policy, facts: Facts, ref: str) -> None:
    """A name the request (re)points must be free or name the caller's own
    image; shared base names are the admins' alone."""
    if caller.is_admin:
        return
    if shared_name(ref, policy):
        raise Refused(f"{ref} is a shared base image name; only admins may change what it names")
    t = _need(facts, "image", ref)
    if t is None or t.owner == caller.name:
        return
    if t.owner:
        raise Refused(f"the name {ref} is taken by {t.owner}'s image; choose another name")
    raise Refused(f"the name {ref} names an image of the admins; choose another name")


def _image_ref(repo: str, tag: str) -> str:
    if not repo:
        return ""
    return f"{repo}:{tag}" if tag and "@" not in repo else repo


# --------------------------------------------------------------------------
# What to look up
# --------------------------------------------------------------------------


def _bind_sources(body: dict) -> list[str]:
    host = _d(body.get("HostConfig"), "HostConfig")
    out = []
    for b in _lst(host.get("Binds"), "HostConfig.Binds"):
        src = _str(b, "a bind").split(":", 1)[0]
        if src.startswith("/"):
            out.append(src)
    for m in _lst(host.get("Mounts"), "HostConfig.Mounts"):
        m = _d(m, "a mount")
        if m.get("Type") == "bind":
            out.append(_str(m.get("Source"), "Mount.Source"))
    return out


def _named_volumes(body: dict) -> list[str]:
    host = _d(body.get("HostConfig"), "HostConfig")
    out = []
    for b in _lst(host.get("Binds"), "HostConfig.Binds"):
        src = _str(b, "a bind").split(":", 1)[0]
        if src and not src.startswith("/"):
            out.append(src)
    for m in _lst(host.get("Mounts"), "HostConfig.Mounts"):
        m = _d(m, "a mount")
        if m.get("Type") == "volume" and m.get("Source"):
            out.append(_str(m.get("Source"), "Mount.Source"))
    return out


def _joined_containers(body: dict) -> list[str]:
    """Containers whose namespaces, volumes or links a create would share."""
    host = _d(body.get("HostConfig"), "HostConfig")
    out = []
    for key in ("NetworkMode", "PidMode", "IpcMode", "UTSMode"):
        mode = _str(host.get(key), f"HostConfig.{key}")
        if mode.startswith("container:"):
            out.append(mode.split(":", 1)[1])
    for v in _lst(host.get("VolumesFrom"), "HostConfig.VolumesFrom"):
        out.append(_str(v, "VolumesFrom").split(":", 1)[0])
    for link in _lst(host.get("Links"), "HostConfig.Links"):
        out.append(_str(link, "Links").split(":", 1)[0].lstrip("/"))
    return out


def _networks_of(body: dict) -> list[str]:
    host = _d(body.get("HostConfig"), "HostConfig")
    mode = _str(host.get("NetworkMode"), "HostConfig.NetworkMode")
    nets = (
        []
        if mode in USER_NETWORK_MODES or mode == "host" or mode.startswith("container:")
        else [mode]
    )
    endpoints = _d(
        _d(body.get("NetworkingConfig"), "NetworkingConfig").get("EndpointsConfig"),
        "EndpointsConfig",
    )
    nets += [n for n in endpoints if n not in BUILTIN_NETWORKS]
    return nets


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
            ("image", _image_ref(req.q("repo"), req.q("tag") or "latest")),
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
        n.targets += [("image", name) for name in req.query.get("names", [])]
    elif e == "build":
        n.targets += [
            ("image", t if ":" in t.rsplit("/", 1)[-1] else f"{t}:latest")
            for t in req.query.get("t", [])
            if t
        ]
    elif e == "images.create":
        if req.q("fromImage"):
            n.targets.append(("image", _image_ref(req.q("fromImage"), req.q("tag") or "latest")))
        elif req.q("repo"):
            n.targets.append(("image", _image_ref(req.q("repo"), req.q("tag") or "latest")))
    elif e == "commit":
        n.targets.append(("container", req.q("container")))
        if req.q("repo"):
            n.targets.append(("image", _image_ref(req.q("repo"), req.q("tag") or "latest")))
    elif e == "containers.create" and isinstance(req.body, dict):
        body = req.body
        try:
            image = _str(body.get("Image"), "Image")
            if image:
                n.targets.append(("image", image))
            n.targets += [("volume", v) for v in _named_volumes(body)]
            n.targets += [("container", c) for c in _joined_containers(body)]
            n.targets += [("network", x) for x in _networks_of(body)]
            n.paths += _bind_sources(body)
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


def _decide(req: Request, rt: Route, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    e, ref = rt.endpoint, rt.ref
    if e in ("ping", "version"):
        return Allow(endpoint=e)
    if not caller.role and not caller.is_admin:
        raise Refused(
            f"user {caller.name} has no DS01 role, so docker is not available to them; "
            "ask the admins to add the account to a ds01-<role> group"
        )
    admin = caller.is_admin

    if e in ("admin", "prune"):
        if admin:
            return Allow(endpoint=e)
        what = "pruning" if e == "prune" else f"{req.method} {rt.path}"
        raise Refused(
            f"{what} is for admins only on DS01; remove your own objects by name "
            "(docker rm, docker image rm, docker volume rm)"
        )
    if e in (
        "info",
        "auth",
        "distribution",
        "session",
        "images.search",
        "build.cancel",
        "images.load",
    ):
        return Allow(endpoint=e)

    # ----- lists and events: users see their own objects only
    if e in ("containers.list", "events", "volumes.list"):
        return Allow(endpoint=e, query=None if admin else _with_owner_filter(req, caller))
    if e == "images.list":
        return Allow(endpoint=e, filter=None if admin else "images")
    if e == "networks.list":
        return Allow(endpoint=e, filter=None if admin else "networks")

    # ----- one container
    if e.startswith("container."):
        t = _own(caller, facts, "container", ref)
        if e == "container.archive" and t.labels.get(RUN_AS) and not admin:
            raise Refused(
                f"docker cp is not available for {t.name or ref}: it has bind mounts, and "
                "the daemon would copy as root through them; copy through the "
                "bind-mounted folder instead"
            )
        if e == "container.rename" and t.labels.get(GPU):
            raise Refused(
                f"{t.name or ref} holds a GPU and is known to the GPU allocator by its "
                "name; it cannot be renamed (create a new container instead)"
            )
        if e == "container.update":
            _check_update(
                _d(req.body, "body"),
                policy.limits_for(caller.role or ADMIN_ROLE, caller.name),
                t,
                admin,
            )
        if e == "container.exec":
            _check_exec(_d(req.body, "body"), caller, t)
        gpu_held = bool(t.labels.get(GPU))
        if e == "container.restart" and gpu_held:
            raise Refused(
                f"{t.name or ref} holds a GPU: restart it with docker stop and "
                "docker start, so that the GPU allocator sees both",
                409,
            )
        hook = {"container.start": "allocate", "container.remove": "forget"}.get(e)
        return Allow(endpoint=e, target=t, gpu_hook=hook if gpu_held else None)
    if e == "exec":
        x = _need(facts, "exec", ref)
        if x is None:
            raise _no_such("exec instance", ref)
        if not admin and x.owner != caller.name:
            raise Refused(f"exec instance {ref} runs in a container that is not yours")
        return Allow(endpoint=e, target=x)

    # ----- images
    if e == "image.read":
        if _readable_image(caller, policy, facts, ref) is None:
            raise _no_such("image", ref)
        return Allow(endpoint=e)
    if e == "image.remove":
        t = _need(facts, "image", ref)
        if t is None:
            raise _no_such("image", ref)
        if not admin and t.owner != caller.name:
            whose = f"{t.owner}'s image" if t.owner else "a shared base image"
            raise Refused(
                f"{ref} is {whose}; you may only remove images you built "
                "(unused images are pruned on schedule)"
            )
        return Allow(endpoint=e)
    if e == "image.tag":
        src = _need(facts, "image", ref)
        if src is None:
            raise _no_such("image", ref)
        if not admin and src.owner != caller.name:
            raise Refused(f"you may only tag images you built; {ref} is not yours")
        _not_others_image_name(
            caller, policy, facts, _image_ref(req.q("repo"), req.q("tag") or "latest")
        )
        return Allow(endpoint=e)
    if e == "images.save":
        for name in req.query.get("names", []):
            if _readable_image(caller, policy, facts, name) is None:
                raise _no_such("image", name)
        return Allow(endpoint=e)
    if e == "images.create":
        return _images_create(req, caller, policy, facts)
    if e == "build":
        return _build(req, caller, policy, facts)
    if e == "commit":
        _own(caller, facts, "container", req.q("container"))
        if req.q("repo"):
            _not_others_image_name(
                caller, policy, facts, _image_ref(req.q("repo"), req.q("tag") or "latest")
            )
        body = dict(_d(req.body, "body"))
        body["Labels"] = _relabel(body.get("Labels"), caller, "Labels")
        query = dict(req.query)
        query["changes"] = [c for c in query.get("changes", []) if LABEL_PREFIX not in c]
        query["changes"].append(f'LABEL {OWNER}="{caller.name}"')
        return Allow(endpoint=e, body=body, query=query)

    # ----- volumes and networks
    if e == "volumes.create":
        return Allow(endpoint=e, body=_volume_create(_d(req.body, "body"), caller))
    if e in ("volume.read", "volume.remove"):
        _own(caller, facts, "volume", ref)
        return Allow(endpoint=e)
    if e == "networks.create":
        return Allow(endpoint=e, body=_network_create(_d(req.body, "body"), caller))
    if e == "network.read":
        t = _need(facts, "network", ref)
        if t is None:
            raise _no_such("network", ref)
        if admin:
            return Allow(endpoint=e)
        if t.name not in BUILTIN_NETWORKS and t.owner != caller.name:
            raise Refused(f"network {ref} is not yours")
        if facts.own_containers is None:
            raise Refused("internal error: your containers were not listed; request refused", 500)
        return Allow(endpoint=e, filter="network", visible=frozenset(facts.own_containers))
    if e == "network.remove":
        _own(caller, facts, "network", ref)
        return Allow(endpoint=e)
    if e == "network.connect":
        t = _need(facts, "network", ref)
        if t is None:
            raise _no_such("network", ref)
        if not admin and t.owner != caller.name and t.name not in ("bridge", "default"):
            raise Refused(
                f"network {ref} is not yours; connect your containers to your own networks"
            )
        body = _d(req.body, "body")
        _own(caller, facts, "container", _str(body.get("Container"), "Container"))
        return Allow(endpoint=e)

    if e == "containers.create":
        return _create(req, caller, policy, facts)
    raise Refused(f"{req.method} {rt.path} is not available through the DS01 docker service")


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def _images_create(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    if req.q("fromImage"):
        # A pulled image carries no owner label (the daemon cannot add one), so
        # it would belong to nobody: pulls are the admins', who share base images.
        if not caller.is_admin:
            raise Refused(
                "docker pull is for admins on DS01: build FROM a shared base image "
                "(docker images lists those you can use), or ask the admins to pull and "
                "share the image you need"
            )
        return Allow(endpoint="images.create")
    # docker import: the new image is the caller's
    if req.q("fromSrc") not in ("-",) and not caller.is_admin:
        raise Refused(
            "docker import from a URL is not available on DS01; download the file and "
            "import it from standard input (docker import FILE)"
        )
    if req.q("repo"):
        _not_others_image_name(
            caller, policy, facts, _image_ref(req.q("repo"), req.q("tag") or "latest")
        )
    query = dict(req.query)
    query["changes"] = [c for c in query.get("changes", []) if LABEL_PREFIX not in c]
    query["changes"].append(
        f'LABEL {OWNER}="{caller.name}" {MANAGED}="true" {ROLE}="{caller.role or ADMIN_ROLE}"'
    )
    return Allow(endpoint="images.create", query=query)


def _build(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    admin = caller.is_admin
    if req.q("remote") and not admin:
        raise Refused(
            "building from a remote URL is not available on DS01 (the daemon would "
            "fetch it from the server); clone or download it and build the folder"
        )
    mode = req.q("networkmode")
    if mode not in USER_NETWORK_MODES and not admin:
        raise Refused(f"build network mode {mode!r} is not allowed; use the default network")
    for t in req.query.get("t", []):
        if t:
            _not_others_image_name(
                caller, policy, facts, t if ":" in t.rsplit("/", 1)[-1] else f"{t}:latest"
            )
    query = dict(req.query)
    try:
        given = json.loads(req.q("labels") or "{}")
    except ValueError:
        raise Refused("malformed request: the build labels parameter is not JSON", 400) from None
    query["labels"] = [json.dumps(_relabel(given, caller, "labels"), separators=(",", ":"))]
    if caller.role:
        query["cgroupparent"] = [user_slice(caller.role, caller.name)]
    return Allow(endpoint="build", query=query)


# --------------------------------------------------------------------------
# Volumes and networks
# --------------------------------------------------------------------------


def _volume_create(body: dict, caller: Caller) -> dict:
    driver = _str(body.get("Driver"), "Driver") or "local"
    if not caller.is_admin:
        if driver != "local":
            raise Refused(f"volume driver {driver!r} is not allowed; use the default (local)")
        if _d(body.get("DriverOpts"), "DriverOpts"):
            raise Refused(
                "volume driver options are not allowed: a local volume with options can "
                "bind any host path; use a plain volume or a bind mount of your home"
            )
        if body.get("ClusterVolumeSpec"):
            raise Refused("cluster volumes are not available on DS01")
    out = dict(body)
    out["Labels"] = _relabel(body.get("Labels"), caller, "Labels")
    return out


def _network_create(body: dict, caller: Caller) -> dict:
    driver = _str(body.get("Driver"), "Driver") or "bridge"
    if not caller.is_admin:
        if driver != "bridge":
            raise Refused(f"network driver {driver!r} is not allowed; use the default (bridge)")
        if _d(body.get("Options"), "Options"):
            raise Refused("network driver options are not allowed on DS01")
        if body.get("ConfigFrom") or body.get("ConfigOnly") or body.get("Ingress"):
            raise Refused("config-only and ingress networks are not available on DS01")
    out = dict(body)
    out["Labels"] = _relabel(body.get("Labels"), caller, "Labels")
    return out


# --------------------------------------------------------------------------
# Containers: create, update, exec
# --------------------------------------------------------------------------

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
_BIND_OPTIONS = {
    "ro",
    "rw",
    "z",
    "Z",
    "private",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
}


def _check_ulimits(host: dict) -> None:
    for u in _lst(host.get("Ulimits"), "HostConfig.Ulimits"):
        u = _d(u, "a ulimit")
        name = _str(u.get("Name"), "Ulimit.Name")
        if name not in _ULIMIT_MAX:
            raise Refused(
                f"--ulimit {name} is not allowed (allowed: {', '.join(sorted(_ULIMIT_MAX))})"
            )
        for key in ("Soft", "Hard"):
            v = _int(u.get(key), f"Ulimit.{key}")
            if v < 0 or v > _ULIMIT_MAX[name]:
                raise Refused(
                    f"--ulimit {name}: {v} is above what DS01 allows ({_ULIMIT_MAX[name]})"
                )


def _check_ports(host: dict) -> None:
    """Host ports below 1024 are the server's own services."""
    for port, bindings in _d(host.get("PortBindings"), "HostConfig.PortBindings").items():
        for b in _lst(bindings, f"PortBindings.{port}"):
            raw = _str(_d(b, "a port binding").get("HostPort"), "HostPort")
            for part in raw.split("-") if raw else []:
                if not part.isdigit():
                    raise Refused(f"malformed host port {raw!r}", 400)
                if 0 < int(part) < 1024:
                    raise Refused(
                        f"host port {part} is below 1024 (the server's own services); "
                        "publish on a port from 1024 up, e.g. -p 8888:{port.split('/')[0]}"
                    )


def _normcap(cap: str) -> str:
    cap = cap.upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bind_roots(caller: Caller, policy: Policy, home_real: str | None) -> list[tuple[str, bool]]:
    """(directory, writable) pairs a caller may bind-mount: their home and the
    storage areas their role may read (read-only unless it may write)."""
    roots: list[tuple[str, bool]] = []
    for home in {caller.home, home_real or caller.home}:
        if home and home != "/":
            roots.append((home, True))
    for area in policy.storage.areas.values():
        can_write = caller.role in area.write or caller.name in area.maintainers
        if caller.role in area.read or can_write:
            roots.append((area.path, can_write))
            if area.link:
                roots.append((area.link, can_write))
    return roots


def _check_bind(src: str, caller: Caller, policy: Policy, facts: Facts) -> bool:
    """Refuse a bind source the caller may not mount; return whether it is writable."""
    norm = os.path.normpath(src)
    if not src.startswith("/") or norm != (src.rstrip("/") or "/"):
        raise Refused(f"bind mount source {src!r} must be a plain absolute path (no '..' or '//')")
    if src not in facts.realpaths:
        raise Refused(f"internal error: bind source {src} was not resolved; request refused", 500)
    real = facts.realpaths[src]
    sockets = {policy.docker.real_socket, policy.docker.user_socket, *DOCKER_SOCKETS}
    for s in sockets:
        if _within(s, norm) or real is not None and _within(s, real):
            raise Refused(
                f"{src} would expose the docker socket ({s}) inside the container; "
                "that is root on the server and never allowed"
            )
    if real is None:
        raise Refused(
            f"bind mount source {src} does not exist; create it first "
            "(the daemon would create it owned by root)"
        )
    if caller.is_admin:
        return True
    roots = bind_roots(caller, policy, facts.home_realpath)
    writable = [w for root, w in roots if _within(real, root)]
    if not writable:
        allowed = ", ".join(sorted({r for r, _ in roots}))
        raise Refused(f"bind mount of {src} is not allowed: you may mount folders under {allowed}")
    return any(writable)


def _make_readonly_bind(bind: str) -> str:
    parts = bind.split(":")
    if len(parts) == 2:
        return f"{bind}:ro"
    opts = [o for o in parts[2].split(",") if o not in ("rw", "ro")] + ["ro"]
    return ":".join(parts[:2] + [",".join(opts)])


def _gpu_request(host: dict, env: list[str], limits: Role) -> GpuRequest | None:
    count, kind = 0, None
    for dr in _lst(host.get("DeviceRequests"), "HostConfig.DeviceRequests"):
        dr = _d(dr, "a device request")
        caps = [
            c
            for group in _lst(dr.get("Capabilities"), "Capabilities")
            for c in _lst(group, "Capabilities")
        ]
        driver = _str(dr.get("Driver"), "Driver")
        if driver not in ("", "nvidia") or (driver == "" and "gpu" not in caps):
            raise Refused(
                f"device request for driver {driver!r} is not available; only GPUs "
                "(--gpus N) may be requested"
            )
        ids = [_str(i, "DeviceIDs") for i in _lst(dr.get("DeviceIDs"), "DeviceIDs")]
        n = _int(dr.get("Count"), "Count")
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
    nano = _int(host.get("NanoCpus"), "NanoCpus")
    quota, period = _int(host.get("CpuQuota"), "CpuQuota"), _int(host.get("CpuPeriod"), "CpuPeriod")
    if not nano and quota > 0:
        nano = quota * 1_000_000_000 // (period or _CPU_PERIOD)
    limit_nano = int(min(c.cpus, host_cpus or c.cpus) * 1_000_000_000)
    host["NanoCpus"] = min(nano, limit_nano) if nano > 0 else limit_nano
    host["CpuQuota"] = 0
    host["CpuPeriod"] = 0
    mem = _int(host.get("Memory"), "Memory")
    host["Memory"] = min(mem, c.memory) if mem > 0 else c.memory
    host["MemorySwap"] = host["Memory"] + c.swap
    shm = _int(host.get("ShmSize"), "ShmSize")
    host["ShmSize"] = min(shm, c.shm_size) if shm > 0 else c.shm_size
    pids = _int(host.get("PidsLimit"), "PidsLimit")
    host["PidsLimit"] = min(pids, c.pids) if pids > 0 else c.pids
    if _int(host.get("CpuRealtimeRuntime"), "CpuRealtimeRuntime") > 0:
        raise Refused("real-time CPU scheduling is not available")
    if host.get("OomKillDisable"):
        raise Refused("disabling the OOM killer is not allowed (--oom-kill-disable)")
    if _int(host.get("OomScoreAdj"), "OomScoreAdj") < 0:
        raise Refused("a negative OOM score adjustment is not allowed")


def _run_as_caller(config: dict, host: dict, caller: Caller) -> None:
    user = _str(config.get("User"), "User")
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
    for g in _lst(host.get("GroupAdd"), "GroupAdd"):
        if _str(g, "GroupAdd") not in caller.groups:
            raise Refused(f"--group-add {g}: you are not in that group")
    if _lst(host.get("CapAdd"), "CapAdd"):
        raise Refused(
            "containers with bind mounts get no added capabilities (--cap-add): they "
            "could bypass file permissions on the mounted folders"
        )
    opts = [o for o in _lst(host.get("SecurityOpt"), "SecurityOpt")]
    if not any(o.startswith("no-new-privileges") for o in opts):
        opts.append("no-new-privileges")
    host["SecurityOpt"] = opts


def _create(req: Request, caller: Caller, policy: Policy, facts: Facts) -> Decision:
    admin = caller.is_admin
    role = caller.role or ADMIN_ROLE
    limits = policy.limits_for(role, caller.name)
    body = json.loads(json.dumps(_d(req.body, "body")))  # deep copy: the rewrite is ours
    host = _d(body.get("HostConfig"), "HostConfig")
    body["HostConfig"] = host
    query = {k: list(v) for k, v in req.query.items()}

    image = _str(body.get("Image"), "Image")
    if not image:
        raise Refused("malformed request: no image given", 400)
    _readable_image(caller, policy, facts, image)

    cap = limits.lifecycle.max_containers
    if cap is not None:
        if facts.owned_containers is None:
            raise Refused("internal error: your containers were not counted; request refused", 500)
        if facts.owned_containers >= cap:
            raise Refused(
                f"you have {facts.owned_containers} containers, the most your role "
                f"({role}) may have is {cap}; remove one first (docker rm NAME)"
            )

    if not admin:
        if host.get("Privileged") not in (None, False):
            raise Refused(
                "privileged containers are not allowed on DS01 (--privileged gives "
                "the container root on the server)"
            )
        allowed = {_normcap(c) for c in policy.docker.allowed_capabilities}
        for c in _lst(host.get("CapAdd"), "CapAdd"):
            if _normcap(_str(c, "CapAdd")) not in allowed:
                raise Refused(
                    f"capability {c} is not allowed; allowed: {', '.join(sorted(allowed))}"
                )
        for key, why in _HOST_MODES.items():
            if _str(host.get(key), f"HostConfig.{key}") == "host":
                raise Refused(f"{why} is not allowed on DS01")
        # Present at all, not "truthy": an empty MaskedPaths unmasks /proc.
        for key, why in _FORBIDDEN_HOST.items():
            if host.get(key) is not None and host.get(key) != _FORBIDDEN_DEFAULT.get(key):
                raise Refused(why)
        for opt in _lst(host.get("SecurityOpt"), "SecurityOpt"):
            if not re.fullmatch(r"no-new-privileges(?:[:=]true)?", _str(opt, "SecurityOpt")):
                raise Refused(f"security option {opt!r} is not allowed (only no-new-privileges)")
        for key in _d(host.get("Sysctls"), "Sysctls"):
            if not key.startswith("net."):
                raise Refused(f"sysctl {key} is not allowed (only net.* inside the container)")
        runtime = _str(host.get("Runtime"), "Runtime")
        if runtime not in ("", "runc", "nvidia"):
            raise Refused(f"runtime {runtime!r} is not allowed")
        log = _d(host.get("LogConfig"), "LogConfig")
        if _str(log.get("Type"), "LogConfig.Type") not in ("", "json-file", "local"):
            raise Refused("log drivers other than the default are not available on DS01")
        host["LogConfig"] = {"Type": "", "Config": {}}
        _check_ulimits(host)
        _check_ports(host)
        mode = _str(host.get("NetworkMode"), "HostConfig.NetworkMode")
        if mode.startswith("container:"):
            _own(caller, facts, "container", mode.split(":", 1)[1])
        elif mode not in USER_NETWORK_MODES:
            _own(caller, facts, "network", mode)
    for key in ("PidMode", "IpcMode", "UTSMode"):
        mode = _str(host.get(key), f"HostConfig.{key}")
        if mode.startswith("container:"):
            _own(caller, facts, "container", mode.split(":", 1)[1])
    for name in _networks_of(body):
        _own(caller, facts, "network", name)
    for link in _lst(host.get("Links"), "HostConfig.Links"):
        _own(caller, facts, "container", link.split(":", 1)[0].lstrip("/"))

    # ----- mounts
    has_binds = False
    binds = []
    mounts = [dict(_d(m, "a mount")) for m in _lst(host.get("Mounts"), "HostConfig.Mounts")]
    for b in _lst(host.get("Binds"), "HostConfig.Binds"):
        src, _, rest = _str(b, "a bind").partition(":")
        if not rest:
            raise Refused(f"malformed bind {b!r}: write SOURCE:TARGET[:OPTIONS]", 400)
        if src.startswith("/"):
            has_binds = True
            opts = set(rest.partition(":")[2].split(",")) - {""}
            if opts - _BIND_OPTIONS and not admin:
                raise Refused(
                    f"bind options {','.join(sorted(opts - _BIND_OPTIONS))} are not allowed "
                    "(propagation other than private, or unknown); use ro or rw"
                )
            writable = _check_bind(src, caller, policy, facts)
            binds.append(b if writable else _make_readonly_bind(b))
        else:
            if _need(facts, "volume", src) is not None:
                _own(caller, facts, "volume", src)
            target, _, opts = rest.partition(":")
            mount = {
                "Type": "volume",
                "Source": src,
                "Target": target,
                "VolumeOptions": {"Labels": ownership_labels(caller)},
            }
            flags = opts.split(",") if opts else []
            if "ro" in flags:
                mount["ReadOnly"] = True
            if "nocopy" in flags:
                mount["VolumeOptions"]["NoCopy"] = True
            if set(flags) - {"ro", "rw", "nocopy", "z", "Z"}:
                raise Refused(f"volume options {opts!r} are not supported; use ro, rw or nocopy")
            mounts.append(mount)
    host["Binds"] = binds
    for m in mounts:
        mtype = m.get("Type")
        if mtype == "bind":
            has_binds = True
            bo = _d(m.get("BindOptions"), "BindOptions")
            if bo.get("Propagation") not in (None, "", "rprivate", "private") and not admin:
                raise Refused("bind propagation other than private is not allowed")
            if not _check_bind(_str(m.get("Source"), "Mount.Source"), caller, policy, facts):
                m["ReadOnly"] = True
        elif mtype == "volume":
            vo = dict(_d(m.get("VolumeOptions"), "VolumeOptions"))
            if _d(vo.get("DriverConfig"), "DriverConfig") and not admin:
                raise Refused(
                    "volume driver options in a mount are not allowed: they can bind any "
                    "host path; use a plain volume"
                )
            if m.get("Source"):
                t = _need(facts, "volume", m["Source"])
                if t is not None:
                    _own(caller, facts, "volume", m["Source"])
            vo["Labels"] = _relabel(vo.get("Labels"), caller, "VolumeOptions.Labels")
            m["VolumeOptions"] = vo
        elif mtype == "tmpfs":
            pass  # memory-backed, counted against the container's memory limit
        else:
            raise Refused(f"mount type {mtype!r} is not allowed (use bind, volume or tmpfs)")
    host["Mounts"] = mounts
    for v in _lst(host.get("VolumesFrom"), "HostConfig.VolumesFrom"):
        src = _own(caller, facts, "container", _str(v, "VolumesFrom").split(":", 1)[0])
        if src.labels.get(RUN_AS):
            has_binds = True  # the source's binds come along: same rule as binds

    labels = _relabel(body.get("Labels"), caller, "Labels")
    labels[CTYPE] = container_type(_d(body.get("Labels"), "Labels"))
    if has_binds and not admin:
        _run_as_caller(body, host, caller)
        labels[RUN_AS] = str(caller.uid)

    # ----- resources, cgroup, GPU
    _clamp_resources(host, limits, facts.host_cpus)
    host["CgroupParent"] = user_slice(role, caller.name)
    env = [_str(x, "Env") for x in _lst(body.get("Env"), "Env")]
    gpu = _gpu_request(host, env, limits)
    host.pop("DeviceRequests", None)
    body["Env"] = [x for x in env if not x.startswith("NVIDIA_VISIBLE_DEVICES=")]
    body["Env"].append("NVIDIA_VISIBLE_DEVICES=void")  # overrides images' =all (nvidia/cuda)
    if gpu:
        restart = _str(_d(host.get("RestartPolicy"), "RestartPolicy").get("Name"), "RestartPolicy")
        if restart not in ("", "no"):
            raise Refused(
                f"GPU containers cannot use --restart {restart}: the daemon would start "
                "them without asking the GPU allocator; start them with docker start"
            )
        if not req.q("name"):
            query["name"] = [gpu_container_name(caller.name)]
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
    if body.get("PidsLimit") is not None and not 0 < _int(body["PidsLimit"], "PidsLimit") <= c.pids:
        raise Refused(
            f"--pids-limit must stay between 1 and your role's limit ({c.pids}); "
            "0 and -1 would remove it"
        )
    nano = _int(body.get("NanoCpus"), "NanoCpus")
    quota, period = _int(body.get("CpuQuota"), "CpuQuota"), _int(body.get("CpuPeriod"), "CpuPeriod")
    if quota > 0:
        nano = max(nano, quota * 1_000_000_000 // (period or _CPU_PERIOD))
    if nano > c.cpus * 1_000_000_000 or quota < 0:
        raise Refused(f"--cpus above your role's limit ({c.cpus:g} CPUs)")
    mem = _int(body.get("Memory"), "Memory")
    if mem > c.memory or mem < 0:
        raise Refused(f"--memory above your role's limit ({c.memory // 2**20} MiB)")
    swap = _int(body.get("MemorySwap"), "MemorySwap")
    if swap < 0 or (swap and swap > (mem or c.memory) + c.swap):
        raise Refused("--memory-swap above your role's limit")
    pids = _int(body.get("PidsLimit"), "PidsLimit")
    if pids < 0 or pids > c.pids:
        raise Refused(f"--pids-limit above your role's limit ({c.pids})")
    restart = _str(_d(body.get("RestartPolicy"), "RestartPolicy").get("Name"), "RestartPolicy")
    if t.labels.get(GPU) and restart not in ("", "no"):
        raise Refused("GPU containers cannot use a restart policy")


def _check_exec(body: dict, caller: Caller, t: Target) -> None:
    if caller.is_admin:
        return
    if body.get("Privileged") not in (None, False):
        raise Refused("privileged exec is not allowed on DS01")
    if t.labels.get(RUN_AS):
        user = _str(body.get("User"), "User")
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
