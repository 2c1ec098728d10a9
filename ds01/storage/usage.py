"""What a user sees of their limits and current use: slices (cgroup files) and disk quota."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ds01.config import Policy, SliceLimits
from ds01.names import slice_cgroup_path, user_slice
from ds01.units import format_size

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class SliceUse:
    cgroup: str  # path under /sys/fs/cgroup
    active: bool
    cpu_percent: float | None  # over the sampling interval; 100 is one CPU
    memory: int | None
    tasks: int | None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_usec(cgroup_dir: str) -> int | None:
    text = _read(f"{cgroup_dir}/cpu.stat")
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    return None


def sample(cgroups: list[str], interval: float = 0.5, root: str = CGROUP_ROOT) -> list[SliceUse]:
    """Current use of each cgroup; CPU is measured over ``interval`` seconds."""
    dirs = [f"{root}/{c}" for c in cgroups]
    before = [_cpu_usec(d) for d in dirs]
    t0 = time.monotonic()
    if any(b is not None for b in before):
        time.sleep(interval)
    elapsed = time.monotonic() - t0
    out = []
    for c, d, b in zip(cgroups, dirs, before, strict=True):
        a = _cpu_usec(d)
        cpu = None if a is None or b is None or elapsed <= 0 else (a - b) / (elapsed * 1e6) * 100
        mem, tasks = _read(f"{d}/memory.current"), _read(f"{d}/pids.current")
        out.append(SliceUse(
            cgroup=c, active=os.path.isdir(d), cpu_percent=cpu,
            memory=int(mem) if mem is not None else None,
            tasks=int(tasks) if tasks is not None else None,
        ))  # fmt: skip
    return out


def _lim(v: int | None, fmt=str) -> str:
    return "no limit" if v is None else fmt(v)


def slice_rows(title: str, lim: SliceLimits, use: SliceUse) -> list[str]:
    state = "" if use.active else "  (nothing running there now)"
    cpu = "-" if use.cpu_percent is None else f"{use.cpu_percent:.0f}%"
    mem = "-" if use.memory is None else format_size_human(use.memory)
    tasks = "-" if use.tasks is None else str(use.tasks)
    return [
        f"{title}{state}",
        f"  {'CPU':<10} {cpu:>12}   of {_lim(lim.cpu_quota, lambda v: f'{v}% ({v / 100:g} CPUs)')}",
        f"  {'memory':<10} {mem:>12}   of {_lim(lim.memory_max, format_size_human)}"
        + (f" (slowed down above {format_size_human(lim.memory_high)})" if lim.memory_high else ""),
        f"  {'processes':<10} {tasks:>12}   of {_lim(lim.tasks_max)}",
    ]


def format_size_human(n: int) -> str:
    if n == 0:
        return "0"  # an empty slice: not "0T" (0 is a multiple of every unit)
    exact = format_size(n)
    if exact[-1] in "kmgt" and len(exact) <= 6:
        return exact.upper() if exact[-1] != "k" else exact[:-1] + "K"
    for unit, f in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= f:
            return f"{n / f:.1f}{unit}"
    return f"{n}B"


def limits_report(
    policy: Policy,
    user: str,
    uid: int,
    role: str | None,
    root: str = CGROUP_ROOT,
    interval: float = 0.5,
) -> str:
    """The text of ``ds01 limits``: containers slice, login slice, disk quota."""
    if role is None:
        return (
            f"{user} has no DS01 role (not in any ds01-<role> group): no containers, "
            "no GPU. Ask the admin if this is wrong."
        )
    eff = policy.limits_for(role, user)
    override = " (with a personal exception)" if policy.override_for(user) else ""
    containers = slice_cgroup_path(user_slice(role, user))
    login = f"user.slice/user-{uid}.slice"
    c_use, l_use = sample([containers, login], interval=interval, root=root)
    gpu = "no limit" if eff.gpu.quota is None else f"{eff.gpu.quota:g} GPU-equivalents"
    life = eff.lifecycle
    rows = [
        f"{user}: role {role}{override}",
        "",
        *slice_rows(
            f"All your containers together ({user_slice(role, user)})", eff.user_slice, c_use
        ),
        "",
        *slice_rows(f"Your processes outside containers (user-{uid}.slice)", eff.login, l_use),
        "",
        f"GPUs: {gpu}, at most {eff.gpu.max_units_per_container} per container"
        + ("" if eff.gpu.allow_full_gpu else ", MIG slices only"),
        f"Containers: at most {_lim(life.max_containers)}, each {eff.container.cpus:g} CPUs and "
        f"{format_size_human(eff.container.memory)} memory",
    ]
    return "\n".join(rows)
