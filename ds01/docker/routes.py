"""The route table: every Docker API request the service understands, with
what it reads of the request and where the rules for it live. Anything not
here is refused. Paths are matched as dockerd's router reads them (decoded,
without the version prefix); API versions below the minimum are refused and
the daemon is always spoken to in the pinned one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ds01.docker.model import Refused

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


_r("GET", "/_ping", "ping", "SystemPing")
_r("HEAD", "/_ping", "ping", "SystemPingHead")
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
_r("GET", f"/containers/{_C}/archive", "container.archive", "ContainerArchive")
_r("HEAD", f"/containers/{_C}/archive", "container.archive", "ContainerArchiveInfo")
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
