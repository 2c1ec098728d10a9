"""Mounts in a create: bind mounts only from the caller's home and the storage
areas their role may use (real paths, symlinks resolved; read-only where the
role may not write), never the docker socket, private propagation only;
named volumes the caller's own (created as theirs); no volume driver options
(a ``local`` volume with options binds any host path)."""

from __future__ import annotations

import os.path

from ds01.config import Policy
from ds01.docker.model import (
    DOCKER_SOCKETS,
    RUN_AS,
    Caller,
    Facts,
    Refused,
    as_dict,
    as_list,
    as_str,
    need,
    own,
    ownership_labels,
    relabel,
)

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


def check_bind(src: str, caller: Caller, policy: Policy, facts: Facts) -> bool:
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


def rewrite_mounts(spec) -> bool:
    """Check and rewrite the create's Binds, Mounts and VolumesFrom in place;
    True when the container gets any bind mount (it then runs as the caller)."""
    host, caller, policy, facts = spec.host, spec.caller, spec.policy, spec.facts
    admin = caller.is_admin
    has_binds = False
    binds = []
    mounts = [dict(as_dict(m, "a mount")) for m in as_list(host.get("Mounts"), "HostConfig.Mounts")]
    for b in as_list(host.get("Binds"), "HostConfig.Binds"):
        src, _, rest = as_str(b, "a bind").partition(":")
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
            writable = check_bind(src, caller, policy, facts)
            binds.append(b if writable else _make_readonly_bind(b))
        else:
            if need(facts, "volume", src) is not None:
                own(caller, facts, "volume", src)
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
            bo = as_dict(m.get("BindOptions"), "BindOptions")
            if bo.get("Propagation") not in (None, "", "rprivate", "private") and not admin:
                raise Refused("bind propagation other than private is not allowed")
            if not check_bind(as_str(m.get("Source"), "Mount.Source"), caller, policy, facts):
                m["ReadOnly"] = True
        elif mtype == "volume":
            vo = dict(as_dict(m.get("VolumeOptions"), "VolumeOptions"))
            if as_dict(vo.get("DriverConfig"), "DriverConfig") and not admin:
                raise Refused(
                    "volume driver options in a mount are not allowed: they can bind any "
                    "host path; use a plain volume"
                )
            if m.get("Source"):
                t = need(facts, "volume", m["Source"])
                if t is not None:
                    own(caller, facts, "volume", m["Source"])
            vo["Labels"] = relabel(vo.get("Labels"), caller, "VolumeOptions.Labels")
            m["VolumeOptions"] = vo
        elif mtype == "tmpfs":
            pass  # memory-backed, counted against the container's memory limit
        else:
            raise Refused(f"mount type {mtype!r} is not allowed (use bind, volume or tmpfs)")
    host["Mounts"] = mounts
    for v in as_list(host.get("VolumesFrom"), "HostConfig.VolumesFrom"):
        src = own(caller, facts, "container", as_str(v, "VolumesFrom").split(":", 1)[0])
        if src.labels.get(RUN_AS):
            has_binds = True  # the source's binds come along: same rule as binds
    return has_binds
