"""``ds01 status``: one screen of what is taken and what is mine.

For everyone: the GPU units with their holders and how long they have held
them, the queue, my containers and my use against my limits and quota. Admins
(root, or the admin role) also see every user's slice, the scheduled jobs and
the alerts firing in Prometheus. ``--json`` prints the same data.

It reuses what the older commands read: the allocator's snapshot (``ds01 gpu
status``), the slice files (``ds01 limits``), the quota (``ds01 storage
usage``), the job records (``ds01 job``); they stay as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from ds01.cluster import queue as slurm_queue
from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit
from ds01.jobs import JOBS_DIR, read_all
from ds01.monitoring import collectors
from ds01.monitoring.render import address
from ds01.names import slice_cgroup_path, user_slice
from ds01.storage.usage import format_size_human

ADMIN_ROLE = "admin"


def firing_alerts(policy: Policy, timeout: float = 2.0) -> list[dict] | None:
    """The alerts Prometheus has firing now; None when it cannot be asked."""
    mon = policy.monitoring
    url = f"http://{address(mon, mon.ports.prometheus)}/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            alerts = json.load(r)["data"]["alerts"]
    except (OSError, ValueError, KeyError):
        return None
    return [
        {
            "alert": a["labels"].get("alertname", ""),
            "severity": a["labels"].get("severity", ""),
            "summary": a.get("annotations", {}).get("summary", ""),
            "since": a.get("activeAt"),
        }
        for a in alerts
        if a.get("state") == "firing"
    ]


def _slice(root: str, role: str, user: str) -> dict:
    s = collectors.read_slice(f"{root}/{slice_cgroup_path(user_slice(role, user))}")
    return {
        "containers": s.containers,
        "memory": s.memory,
        "tasks": s.tasks,
        "cpu_seconds": s.cpu_seconds,
        "oom_kills": s.memory_events.get("oom_kill", 0),
    }


def gather(
    policy: Policy,
    user: str,
    role: str | None,
    *,
    snapshot: dict | None,
    quota: Any = None,
    admin: bool = False,
    cgroup_root: str = collectors.CGROUP_ROOT,
    jobs_dir=JOBS_DIR,
    alerts: Callable[[], list[dict] | None] = lambda: None,
    slurm: Callable[[], slurm_queue.SlurmState] | None = None,
    now: float | None = None,
) -> dict:
    """Everything ``ds01 status`` shows, as JSON-ready data.

    + snapshot: the allocator's status (``ds01.gpu.cli._snapshot``); None: none yet
    + quota: the user's :class:`ds01.storage.quota.Usage`, or None
    + slurm: reads Slurm's queue (``ds01.cluster.queue.read``); None, as
      without ``cluster:`` in the policy: no Slurm section
    """
    now = time.time() if now is None else now
    snap = snapshot or {"units": [], "queue": [], "warnings": [], "at": None}
    units = [
        {
            "gpu": u["gpu"],
            "kind": u["kind"],
            "state": u["state"],
            "user": u.get("user"),
            "container": u.get("container"),
            "weight": u["weight"],
            "held_for": None
            if u.get("since") is None or u["state"] not in collectors.HELD_STATES
            else max(0.0, now - u["since"]),
        }
        for u in snap["units"]
    ]
    idle_warned = {w["container"] for w in snap.get("warnings", [])}
    for u, raw in zip(units, snap["units"], strict=True):
        u["idle_warned"] = u["container"] in idle_warned
        since = raw.get("idle_since")
        u["idle_for"] = None if since is None or u["held_for"] is None else max(0.0, now - since)
    out: dict[str, Any] = {
        "at": now,
        "user": user,
        "role": role,
        "gpu": {
            "as_of": snap.get("at"),
            "units": units,
            "free": sum(1 for u in units if u["state"] in ("free", "assigned")),
        },
        "queue": [
            {
                "position": q["position"],
                "user": q["user"],
                "kind": q["kind"] or "any",
                "state": q["state"],
                "waiting": max(0.0, now - q["since"]),
            }
            for q in snap["queue"]
        ],
    }
    if role is not None:
        lim = policy.limits_for(role, user)
        mine = [u for u in units if u["user"] == user and u["state"] in collectors.HELD_STATES]
        out["mine"] = {
            **_slice(cgroup_root, role, user),
            "gpu_containers": sorted({u["container"] for u in mine if u["container"]}),
            "gpu_held": round(sum(u["weight"] for u in mine), 6),
            "limits": {
                "memory_max": lim.user_slice.memory_max,
                "cpu_quota": lim.user_slice.cpu_quota,
                "tasks_max": lim.user_slice.tasks_max,
                "gpu_quota": lim.gpu.quota,
                "max_containers": lim.lifecycle.max_containers,
            },
            "storage": None
            if quota is None
            else {
                "used": quota.used_kib * 1024,
                "quota": quota.hard_kib * 1024 or None,
                "files": quota.files,
            },
        }
    if admin:
        out["users"] = [
            {"user": u, "role": r, **_slice(cgroup_root, r, u)}
            for r, u, _ in collectors.user_slices(list(policy.roles), cgroup_root)
        ]
        out["jobs"] = [
            {
                "job": k,
                "result": j["result"],
                "exit_code": j["exit_code"],
                "finished": j["finished"],
                "last_success": j["last_success"],
            }
            for k, j in sorted(read_all(jobs_dir).items())
        ]
        out["alerts"] = alerts()
    if slurm is not None:
        out["slurm"] = slurm_section(slurm(), user, admin)
    return out


def slurm_section(state: slurm_queue.SlurmState, user: str, admin: bool) -> dict:
    """Slurm's queue next to the allocator's: the counts and pending reasons
    of everyone's jobs (a user sees the queue they wait in), the jobs
    themselves of the caller only, or of everyone for an admin."""
    if not state.up:
        return {"up": False, "error": state.error}
    jobs = [j for j in state.jobs if admin or j.user == user]
    return {
        "up": True,
        "error": None,
        "running": sum(1 for j in state.jobs if j.state == slurm_queue.RUNNING),
        "pending": sum(1 for j in state.jobs if j.state == slurm_queue.PENDING),
        "pending_reasons": dict(sorted(slurm_queue.pending_reasons(state.jobs).items())),
        "gres": [vars(g) for g in slurm_queue.gres_use(state.nodes)],
        "jobs": [
            {
                "id": j.id,
                "user": j.user,
                "qos": j.qos,
                "partition": j.partition,
                "state": j.state,
                "reason": None if j.state == slurm_queue.RUNNING else j.reason,
                "gpus": j.gpus_allocated or j.gpus_asked,
                "billing": j.billing,
            }
            for j in jobs
        ],
    }


def _gpus(gpus: dict[str, int]) -> str:
    return " ".join(f"{t} x{n}" for t, n in sorted(gpus.items())) or "no GPU"


# An admin's screen lists this many of everyone's jobs (squeue has the rest).
SLURM_JOBS_SHOWN = 15


def _slurm_text(s: dict) -> list[str]:
    if not s["up"]:
        return [f"Slurm: not reachable ({s['error']})"]
    gres = ", ".join(f"{g['partition']} {g['type']} {g['allocated']}/{g['total']}"
                     for g in s["gres"])  # fmt: skip
    rows = [f"Slurm: {s['running']} running, {s['pending']} pending"
            + (f"; GPUs allocated: {gres}" if gres else "")]  # fmt: skip
    if s["pending_reasons"]:
        rows.append("  pending for: " + ", ".join(f"{r} ({n})" for r, n in
                                                  s["pending_reasons"].items()))  # fmt: skip
    for j in s["jobs"][:SLURM_JOBS_SHOWN]:
        why = f"  {j['reason']}" if j["reason"] else ""
        rows.append(f"  {j['id']:>7} {j['user']:<24} {j['partition']:<8} {j['state']:<10} "
                    f"{_gpus(j['gpus'])}{why}")  # fmt: skip
    if len(s["jobs"]) > SLURM_JOBS_SHOWN:
        rows.append(f"  ... {len(s['jobs']) - SLURM_JOBS_SHOWN} more: squeue")
    return rows


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m" if m else f"{s}s"


def _size(n: int | None) -> str:
    return "-" if n is None else format_size_human(n)


def _of(v, limit, fmt=str) -> str:
    return f"{fmt(v) if v is not None else '-'} of {'no limit' if limit is None else fmt(limit)}"


def text(data: dict) -> str:
    """The one terminal screen."""
    rows = []
    g = data["gpu"]
    rows.append(f"GPUs: {g['free']} of {len(g['units'])} units free")
    for u in g["units"]:
        who = f"{u['user']} ({u['container']})" if u["user"] else ""
        held = f"held {_ago(u['held_for'])}" if u["held_for"] is not None else ""
        notes = [f"idle {_ago(u['idle_for'])}"] if u["idle_for"] is not None else []
        notes += ["idle: warned"] if u["idle_warned"] else []
        idle = "  " + ", ".join(notes) if notes else ""
        rows.append(
            f"  GPU {u['gpu']} {u['kind']:<8} {u['state']:<9} {who:<40} {held}{idle}".rstrip()
        )
    if data["queue"]:
        rows.append(f"Queue: {len(data['queue'])} waiting")
        rows += [
            f"  {q['position']:>2}. {q['user']:<24} {q['kind']:<8} {q['state']:<9} "
            f"for {_ago(q['waiting'])}"
            for q in data["queue"]
        ]
    else:
        rows.append("Queue: empty")
    if "mine" in data:
        m, lim = data["mine"], data["mine"]["limits"]
        rows.append(f"Me: {data['user']} ({data['role']})")
        rows.append(
            f"  containers  {_of(m['containers'], lim['max_containers'])}"
            + (f"; with a GPU: {', '.join(m['gpu_containers'])}" if m["gpu_containers"] else "")
        )
        gpu = _of(m["gpu_held"], lim["gpu_quota"], lambda v: f"{v:.3g}")
        rows.append(f"  GPU         {gpu} GPU-equivalents")
        rows.append(f"  memory      {_of(m['memory'], lim['memory_max'], format_size_human)}")
        rows.append(f"  processes   {_of(m['tasks'], lim['tasks_max'])}")
        if m["oom_kills"]:
            rows.append(f"  OOM kills   {m['oom_kills']} (your containers hit their memory limit)")
        st = m["storage"]
        if st is not None:
            disk = _of(st["used"], st["quota"], format_size_human)
            rows.append(f"  disk        {disk}, {st['files']} files")
    elif data["role"] is None:
        rows.append(f"Me: {data['user']} has no DS01 role: no containers, no GPU")
    if "users" in data:
        rows.append(f"Users with a slice: {len(data['users'])}")
        busy = sorted(data["users"], key=lambda u: -(u["memory"] or 0))[:10]
        rows += [
            f"  {u['user']:<28} {u['role']:<11} {u['containers']:>3} containers "
            f"{_size(u['memory']):>8} memory"
            for u in busy
            if u["containers"] or u["memory"]
        ]
        rows.append("Jobs:")
        for j in data["jobs"]:
            ok = (
                "never"
                if j["last_success"] is None
                else _ago(data["at"] - j["last_success"]) + " ago"
            )
            rows.append(
                f"  {j['job']:<20} {j['result']:<7} exit {j['exit_code']:<4} last success {ok}"
            )
        alerts = data["alerts"]
        if alerts is None:
            rows.append("Alerts: Prometheus not reachable")
        else:
            rows.append(f"Alerts firing: {len(alerts)}")
            rows += [f"  {a['severity']:<8} {a['alert']}: {a['summary']}" for a in alerts]
    if "slurm" in data:
        rows += _slurm_text(data["slurm"])
    return "\n".join(rows)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status", help="what is taken (GPUs, queue) and what is yours, on one screen"
    )
    add_policy_option(p)
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    from ds01.gpu.cli import _snapshot
    from ds01.identity.local import role_of
    from ds01.storage.quota import usage_of

    policy = load_or_exit(args.policy)
    user = pwd.getpwuid(os.getuid()).pw_name
    role = role_of(user, policy)
    data = gather(
        policy,
        user,
        role,
        snapshot=_snapshot(policy),
        quota=usage_of(policy, user) if role else None,
        admin=os.geteuid() == 0 or role == ADMIN_ROLE,
        alerts=lambda: firing_alerts(policy),
        slurm=slurm_queue.reader(policy),
    )
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text(data))
    return 0
