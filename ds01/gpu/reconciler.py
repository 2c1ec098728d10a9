"""Keeping the allocator's state true to reality, and reaping idle containers.

:func:`reconcile` runs every ``gpu.reconcile_interval`` (the systemd timer
``ds01-gpu-reconcile.timer``). It:

1. re-reads the layout (a re-partitioned GPU's old units go missing);
2. releases units whose hold ran out and passes on expired reservations;
3. forgets containers that no longer exist, releases those that stopped
   without telling the allocator (from their finish time, so the role's hold
   is honoured), and reports containers that run without an allocation or use
   a device they were not granted;
4. reports every unit in use by a process the allocator did not grant;
5. runs the idle reaper (:func:`reap`).

Containers younger than :data:`GRACE` are left alone: they may be between the
allocator's decision and docker's (created but not yet listed, allocated but
not yet running).

The idle reaper, per the owner's role (``idle`` and ``lifecycle``): a reading
every ``idle.check_interval``; a reading is idle when the GPU utilisation of
every unit the container holds, its CPU use and its network traffic since the
last reading are all below the role's thresholds; a unit with no utilisation
figure (a MIG device) is idle only when NVML lists no process on it, and an
unreadable process list is never idle. After
``idle.consecutive_checks`` idle readings the container is idle since the first
of them; once it has been idle for ``lifecycle.idle_timeout`` minus
``idle.warn_before_stop`` its owner is warned, and it is stopped (its units
released at once) when it has been idle for ``lifecycle.idle_timeout`` and the
warning is at least ``idle.warn_before_stop`` old. Any busy reading clears the
count and the warning. ``lifecycle.max_runtime`` is enforced the same way:
warned ``warn_before_stop`` before, stopped at the limit; it counts from the
start of the lease (when the container began holding its units without a
break: a restart within ``gpu_hold_after_stop`` does not reset it). A reading that cannot
be taken (no CPU or network figure) counts as busy: missing data never stops
anyone's work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ds01 import events
from ds01.gpu.allocator import Allocator, Assignment, ReaperState, describe, when
from ds01.gpu.containers import ContainerInfo, Containers
from ds01.gpu.layout import Layout
from ds01.units import format_duration

GRACE = 120.0  # seconds a just-created or just-started container is left alone

Notify = Callable[[str, str], None]  # (user, message)


@dataclass
class Report:
    added: list[str] = field(default_factory=list)  # units that appeared
    missing: list[str] = field(default_factory=list)  # units that vanished
    forgotten: list[str] = field(default_factory=list)  # containers gone
    released: list[str] = field(default_factory=list)  # containers found stopped
    warned: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # for the admin: not repaired

    def lines(self) -> list[str]:
        out = []
        for label, items in (
            ("units added", self.added),
            ("units missing", self.missing),
            ("forgotten (container gone)", self.forgotten),
            ("released (container stopped)", self.released),
            ("warned", self.warned),
            ("stopped by the reaper", self.stopped),
        ):
            if items:
                out.append(f"{label}: {', '.join(items)}")
        out += [f"problem: {p}" for p in self.problems]
        return out


def reconcile(
    alloc: Allocator,
    containers: Containers | None,
    layout: Layout,
    notify: Notify | None = None,
) -> Report:
    """One pass; see the module docstring. ``containers`` None: no container
    runtime is reachable, so only the layout, holds and the queue are kept."""
    report = Report()
    layout = alloc.own(layout)
    report.added, report.missing = alloc.sync_layout(layout)
    alloc.expire()
    if layout.error:
        report.problems.append(f"GPU layout not read: {layout.error}")
    report.problems += [g.error for g in layout.gpus if g.error]
    assignments = alloc.assignments()  # before the list: see GRACE
    if containers is not None:
        listed_at = alloc.clock()
        infos = {c.name: c for c in containers.list()}
        for a in assignments:
            _repair(alloc, a, infos.get(a.container), listed_at, report)
        _foreign_devices(alloc, infos.values(), report)
    _foreign_processes(alloc, layout, report)
    if containers is not None:
        reap(alloc, containers, layout, notify or (lambda user, msg: None), report)
    return report


def _repair(
    alloc: Allocator, a: Assignment, info: ContainerInfo | None, listed_at: float, report: Report
) -> None:
    if info is None:
        if (a.assigned_at or 0) < listed_at - GRACE:
            alloc.forget(a.container)
            report.forgotten.append(a.container)
        return
    if a.state == "allocated" and not info.running:
        if (a.allocated_at or 0) >= listed_at - GRACE:
            return  # allocated, docker about to start it
        finished = info.finished_at
        if finished is None or finished < (a.allocated_at or 0):
            finished = listed_at
        alloc.release(a.container, stopped_at=finished)
        report.released.append(a.container)
    elif a.state in ("assigned", "released") and info.running:
        if info.gpu_uuids:
            report.problems.append(
                f"container {a.container} of {a.user} runs with GPU devices but no allocation "
                "(started around the allocator)"
            )


def _foreign_devices(alloc: Allocator, infos, report: Report) -> None:
    holders = {s.unit.uuid: s.holder for s in alloc.status()}
    for info in infos:
        if not info.running:
            continue
        for uuid in info.gpu_uuids:
            if uuid not in holders:
                report.problems.append(
                    f"container {info.name} of {info.user} uses {uuid}, "
                    "which is not a unit of this server's layout"
                )
            elif holders[uuid] != info.name:
                report.problems.append(
                    f"container {info.name} of {info.user} uses {uuid}, which the allocator "
                    + (f"granted to {holders[uuid]}" if holders[uuid] else "did not grant")
                )


def _foreign_processes(alloc: Allocator, layout: Layout, report: Report) -> None:
    held = {s.unit.uuid: s for s in alloc.status()}
    for uuid, procs in layout.processes_by_unit().items():
        s = held.get(uuid)
        if procs and (s is None or s.holder is None):  # None (unknown): nothing to report
            pids = ", ".join(str(p.pid) for p in procs)
            where = describe(s.unit) if s else uuid
            report.problems.append(
                f"{where} is in use by process(es) {pids}, but the allocator granted it to nobody"
            )


# --------------------------------------------------------------------------
# The idle reaper
# --------------------------------------------------------------------------


def _gpu_busy(layout: Layout, a: Assignment, threshold: int) -> bool:
    util = layout.utilization_by_unit()
    procs = layout.processes_by_unit()
    for unit in a.units:
        u = util.get(unit.uuid)
        if u is None:  # MIG devices report no utilisation: a process means busy
            p = procs.get(unit.uuid)
            if p is None or p:  # an unknown process list is never idle
                return True
        elif u >= threshold:
            return True
    return False


def reap(
    alloc: Allocator, containers: Containers, layout: Layout, notify: Notify, report: Report
) -> None:
    now = alloc.clock()
    infos = {c.name: c for c in containers.list()}
    for a in alloc.assignments():
        info = infos.get(a.container)
        if a.state != "allocated" or info is None or not info.running:
            continue
        limits = alloc.policy.limits_for(a.role, a.user)
        idle, life = limits.idle, limits.lifecycle

        def step(r: ReaperState, a=a, info=info, idle=idle, life=life):
            checks, since, last_net = r.idle_checks, r.idle_since, r.last_net
            warned_at, warning, last_check = r.warned_at, r.warning, r.last_check
            if last_check is None or now - last_check >= idle.check_interval:
                quiet = (
                    not _gpu_busy(layout, a, idle.gpu_util_percent)
                    and info.cpu_percent is not None
                    and info.cpu_percent < idle.cpu_percent
                    and info.net_bytes is not None
                    and last_net is not None
                    and info.net_bytes - last_net < idle.network_bytes
                )
                if quiet:
                    checks, since = checks + 1, since or now
                else:
                    checks, since = 0, None
                    if warning and warning.startswith("idle"):
                        warned_at, warning = None, None
                last_check, last_net = now, info.net_bytes
            action = _decide(a, info, idle, life, now, checks, since, warned_at, warning)
            if action is not None and action[0] == "warn":
                warned_at, warning = now, action[1]
            return ReaperState(checks, since, last_check, last_net, warned_at, warning), action

        action = alloc.update_reaper(a.container, step)
        if action is None:
            continue
        verb, message = action
        if verb == "warn":
            notify(a.user, message)
            report.warned.append(a.container)
        else:
            containers.stop(info.id, message)
            events.emit("gpu_reap", user=a.user, container=a.container, reason=message)
            alloc.release(a.container, stopped_at=now, hold=False)
            notify(a.user, message)
            report.stopped.append(a.container)


def _decide(a, info, idle, life, now, checks, since, warned_at, warning):
    """("warn"|"stop", message) or None."""
    warned_long_enough = warned_at is not None and now - warned_at >= idle.warn_before_stop
    if life.idle_timeout is not None and checks >= idle.consecutive_checks and since is not None:
        idle_for = now - since
        if idle_for >= life.idle_timeout and warned_long_enough and warning.startswith("idle"):
            return "stop", (
                f"stopped container {a.container}: its GPU was idle for "
                f"{format_duration(int(idle_for))} "
                "(the limit of your role); its GPU is released"
            )
        if idle_for >= life.idle_timeout - idle.warn_before_stop and warned_at is None:
            return "warn", (
                f"idle: container {a.container} has not used its GPU since {when(since)}; it will "
                "be "
                f"stopped and its GPU released after {when(max(now, since + life.idle_timeout))} "
                "unless it is used again"
            )
    # Runtime is counted over the lease (the continuous hold of the units),
    # not docker's run: StartedAt resets on every start, and a restart within
    # gpu_hold_after_stop keeps the lease.
    if life.max_runtime is not None and a.leased_since is not None:
        deadline = a.leased_since + life.max_runtime
        if now >= deadline and warned_long_enough and warning.startswith("runtime"):
            return "stop", (
                f"stopped container {a.container}: it reached the "
                f"{format_duration(life.max_runtime)} "
                "maximum runtime of your role; its GPU is released"
            )
        if now >= deadline - idle.warn_before_stop and (
            warning is None or not warning.startswith("runtime")
        ):
            return "warn", (
                f"runtime: container {a.container} reaches the maximum runtime of your role at "
                f"{when(deadline)} and will be stopped then"
            )
    return None
