"""The vocabulary of the docker rules: who calls, what they ask, what the
daemon holds, what the rules decide, and the small coercions every rule
uses (a malformed value is refused with 400, never guessed)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    query: dict[str, Any]  # typed, as ds01.docker.schema.parse_query reads it
    body: Any = None  # parsed JSON for endpoints that carry JSON, else None

    def q(self, key: str, default: str = "") -> str:
        """A single-valued string parameter (the request parser refused repeats)."""
        value = self.query.get(key)
        return value if isinstance(value, str) else default

    def many(self, key: str) -> list[str]:
        """A parameter dockerd reads as a list (build ``t``, ``changes``, ``names``)."""
        value = self.query.get(key)
        return list(value) if isinstance(value, list) else []


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


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def as_dict(x: Any, what: str) -> dict:
    if x is None:
        return {}
    if not isinstance(x, dict):
        raise Refused(f"malformed request: {what} must be a JSON object", 400)
    return x


def as_list(x: Any, what: str) -> list:
    if x is None:
        return []
    if not isinstance(x, list):
        raise Refused(f"malformed request: {what} must be a JSON list", 400)
    return x


def as_str(x: Any, what: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise Refused(f"malformed request: {what} must be a string", 400)
    return x


def as_int(x: Any, what: str) -> int:
    if x is None:
        return 0
    if isinstance(x, bool) or not isinstance(x, int):
        raise Refused(f"malformed request: {what} must be an integer", 400)
    return x


def parse_filters(data: Any) -> dict[str, list[str]]:
    """Docker's ``filters`` query value (parsed JSON), in either of its two shapes."""
    if data is None:
        return {}
    out: dict[str, list[str]] = {}
    for key, val in as_dict(data, "filters").items():
        if isinstance(val, dict):
            out[key] = [k for k, on in val.items() if on]
        elif isinstance(val, list) and all(isinstance(v, str) for v in val):
            out[key] = list(val)
        else:
            raise Refused(f"malformed request: filter {key!r} has an unexpected shape", 400)
    return out


def with_owner_filter(req: Request, caller: Caller) -> dict[str, Any]:
    filters = parse_filters(req.query.get("filters"))
    filters.setdefault("label", [])
    filters["label"].append(f"{OWNER}={caller.name}")
    return {**req.query, "filters": filters}


def ownership_labels(caller: Caller) -> dict[str, str]:
    return {OWNER: caller.name, MANAGED: "true", ROLE: caller.role or ""}


def relabel(labels: Any, caller: Caller, what: str) -> dict[str, str]:
    """The client's labels without any ds01.* key, plus ours."""
    given = as_dict(labels, what)
    out = {}
    for k, v in given.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise Refused(f"malformed request: {what} must map strings to strings", 400)
        if not k.startswith(LABEL_PREFIX) or caller.is_admin and k == SHARED:
            out[k] = v
    out.update(ownership_labels(caller))
    return out


def admins_image(labels: Mapping[str, str]) -> bool:
    """An image an admin made (or pulled: the daemon labels nothing pulled). A
    user's build carries the service's ownership labels, which override what its
    base or its Dockerfile's LABEL lines say; so only an admin's image may speak
    for itself with ds01.* labels (shared, keep)."""
    return labels.get(ROLE, ADMIN_ROLE) == ADMIN_ROLE


def container_type(labels: Mapping[str, str]) -> str:
    """devcontainer / compose / docker, from the labels those tools set."""
    if any(k.startswith("devcontainer.") for k in labels):
        return "devcontainer"
    if "com.docker.compose.project" in labels:
        return "compose"
    return "docker"


def need(facts: Facts, kind: str, ref: str) -> Target | None:
    if (kind, ref) not in facts.targets:
        raise Refused(f"internal error: {kind} {ref!r} was not looked up; request refused", 500)
    return facts.targets[(kind, ref)]


def no_such(kind: str, ref: str) -> Refused:
    return Refused(f"No such {kind}: {ref}", 404)


def own(caller: Caller, facts: Facts, kind: str, ref: str) -> Target:
    """The target, which must exist and belong to the caller (admins: anyone's)."""
    t = need(facts, kind, ref)
    if t is None:
        raise no_such(kind, ref)
    if caller.is_admin or t.owner == caller.name:
        return t
    whose = f"belongs to {t.owner}" if t.owner else "is not a DS01 user's (an admin manages it)"
    raise Refused(f"{kind} {ref} {whose}; you may only use your own {kind}s")
