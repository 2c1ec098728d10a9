"""A small invented docker world for the policy tests: who owns what, and how
host paths resolve. ``decide_as`` runs the same two steps the service runs:
needs() -> look the facts up here -> decide()."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from ds01.config import load_policy
from ds01.docker.policy import (
    GPU,
    OWNER,
    RUN_AS,
    Caller,
    Deny,
    Facts,
    Refused,
    Request,
    Target,
    decide,
    needs,
    route,
)
from ds01.docker.request import parse_query
from ds01.docker.schema import Malformed

REPO = Path(__file__).resolve().parents[3]
POLICY = load_policy(REPO / "config/resource-allocation.yaml")

ALICE = Caller(
    2001,
    2001,
    "123456@example.lan",
    "/home/123456@example.lan",
    "student",
    frozenset({"2001", "ds01-student", "docker-users"}),
)
BOB = Caller(
    2002, 2002, "654321@example.lan", "/home/654321@example.lan", "student", frozenset({"2002"})
)
CAROL = Caller(2003, 2003, "j.doe@example.lan", "/home/j.doe@example.lan", "researcher")
ADMIN = Caller(2009, 2009, "h.admin", "/home/h.admin", "admin")
NOBODY = Caller(2010, 2010, "x.guest", "/home/x.guest", None)
AH = ALICE.home


def _c(name, owner=None, **extra):
    labels = {OWNER: owner} if owner else {}
    labels.update(extra)
    return Target("container", name, name=name, labels=labels)


CONTAINERS = {
    "a1": _c("a1", ALICE.name),
    "a-bind": _c("a-bind", ALICE.name, **{RUN_AS: "2001"}),
    "a-gpu": _c("a-gpu", ALICE.name, **{GPU: "MIG-1"}),
    "b1": _c("b1", BOB.name),
    "b-bind": _c("b-bind", BOB.name, **{RUN_AS: "2002"}),
    "orphan": _c("orphan"),
}
IMAGES = {
    "alice/img:latest": Target("image", "alice/img:latest", labels={OWNER: ALICE.name}),
    "bob/img:latest": Target("image", "bob/img:latest", labels={OWNER: BOB.name}),
    "debian:bookworm": Target("image", "debian:bookworm"),  # shared by name (policy)
    "left/over:1": Target("image", "left/over:1"),  # pulled by an admin, not shared
    "admin/base:1": Target(
        "image", "admin/base:1", labels={OWNER: "h.admin", "ds01.role": "admin", "ds01.shared": "true"}
    ),
    "alice/inherits:1": Target(  # built FROM admin/base: the shared label came along
        "image",
        "alice/inherits:1",
        labels={OWNER: ALICE.name, "ds01.role": "student", "ds01.shared": "true"},
    ),
}
VOLUMES = {
    "avol": Target("volume", "avol", name="avol", labels={OWNER: ALICE.name}),
    "bvol": Target("volume", "bvol", name="bvol", labels={OWNER: BOB.name}),
}
NETWORKS = {
    "anet": Target("network", "anet", name="anet", labels={OWNER: ALICE.name}),
    "bnet": Target("network", "bnet", name="bnet", labels={OWNER: BOB.name}),
    "bridge": Target("network", "bridge", name="bridge"),
    "host": Target("network", "host", name="host"),
}
EXECS = {
    "ex-a": Target("exec", "ex-a", labels=CONTAINERS["a1"].labels, container="a1"),
    "ex-a-bind": Target(
        "exec", "ex-a-bind", labels=CONTAINERS["a-bind"].labels, container="a-bind"
    ),
    "ex-b": Target("exec", "ex-b", labels=CONTAINERS["b1"].labels, container="b1"),
}
KINDS = {
    "container": CONTAINERS,
    "image": IMAGES,
    "volume": VOLUMES,
    "network": NETWORKS,
    "exec": EXECS,
}
# Host paths as os.path.realpath sees them (None: does not exist).
REALPATHS = {
    f"{AH}": AH,
    f"{AH}/proj": f"{AH}/proj",
    f"{AH}/link-to-etc": "/etc",
    f"{AH}/link-to-scratch": "/srv/ds01/scratch/123456",
    f"{AH}/missing": None,
    f"{AH}/docker.sock": "/run/docker.sock",
    BOB.home: BOB.home,
    f"{BOB.home}/secret": f"{BOB.home}/secret",
    "/home": "/home",
    "/data/imagenet": "/srv/ds01/data/imagenet",
    "/srv/ds01/data/imagenet": "/srv/ds01/data/imagenet",
    "/scratch/123456": "/srv/ds01/scratch/123456",
    "/collab/team": "/srv/ds01/collab/team",
    "/projects/p1": "/srv/ds01/projects/p1",
    "/etc": "/etc",
    "/": "/",
    "/var/run": "/run",
    "/run/docker.sock": "/run/docker.sock",
    "/var/run/docker.sock": "/run/docker.sock",
    "/run/ds01": "/run/ds01",
}


def owned_count(caller: Caller) -> int:
    return sum(1 for c in CONTAINERS.values() if c.owner == caller.name)


def req(method: str, path: str, query: dict | None = None, body=None) -> Request:
    """The request as the service hands it to the rules: the query through the
    real parser of its route (typed, allow-listed)."""
    raw = urlencode([(k, v) for k, vs in (query or {}).items() for v in _values(vs)])
    try:
        rt = route(method, path)
    except Refused:
        rt = None
    q = parse_query(rt.spec.op, raw) if rt is not None else {}
    return Request(method, path, q, body)


def _values(v) -> list[str]:
    return v if isinstance(v, list) else [v]


def decide_as(
    caller: Caller,
    method: str,
    path: str,
    query: dict | None = None,
    body=None,
    owned: int | None = None,
    policy=POLICY,
):
    try:
        r = req(method, path, query, body)
    except Malformed as e:
        return Deny(400, f"malformed request: {e.message}")
    try:
        rt = route(method, path)
    except Refused:
        rt = None  # decide() answers it
    facts = Facts(home_realpath=caller.home)
    if rt is not None:
        n = needs(r, caller, rt)
        for kind, ref in n.targets:
            facts.targets[(kind, ref)] = KINDS[kind].get(ref)
        for p in n.paths:
            facts.realpaths[p] = REALPATHS.get(p)
        if n.count_containers:
            facts.owned_containers = owned_count(caller) if owned is None else owned
        if n.own_containers:
            facts.own_containers = [c.ref for c in CONTAINERS.values() if c.owner == caller.name]
    return decide(r, caller, policy, facts)


def filters_of(decision) -> dict:
    return decision.query["filters"]
