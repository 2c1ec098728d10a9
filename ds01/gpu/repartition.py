"""``ds01 gpu layout plan|apply``: from the layout the GPUs have to the one
the policy asks for (``gpu.layout``).

:func:`plan` compares, per GPU the policy lays out, its current partitioning
(the profiles of its MIG instances, or the whole GPU) with the desired one,
and lists the allocator's units that would vanish with who holds or targets
them. Two layouts with the same profiles are the same (placements are not
compared), so a second apply changes nothing.

:func:`apply` then, for the GPUs that differ:

1. drains all their units through the allocator in one transaction
   (:meth:`Allocator.drain_gpus`: no new assigns, reservations go back to the
   queue), and refuses while any is still held, listing the holders;
2. re-partitions each GPU through NVML (:mod:`ds01.gpu.mig`, in NVIDIA's order);
3. re-reads the layout into the allocator and resumes the GPUs.

What a failure leaves (fail safe, never a half-drained allocator):

* refused because units are held: every unit of those GPUs *stays drained*
  (nobody new takes them, the holders finish); the message lists holders and
  the commands to take them back, or to cancel (``ds01 gpu layout resume``:
  a GPU being re-partitioned comes back whole, never unit by unit);
* NVML failed before changing a GPU (busy: ``IN_USE``): that GPU and the ones
  not yet reached are resumed, unchanged;
* NVML failed after changing a GPU (a creation failed, the mode change waits
  for a reset): that GPU *stays drained*, with whatever units it now has, and
  the message says so and what to do; it is resumed by the next successful
  apply. A process killed midway leaves the same state (the drain is in the
  database); ``ds01 gpu layout plan`` shows it.

A GPU the cluster gives Slurm (``Policy.slurm_gpu_on_head``, the one
decision gres.conf and the allocator's pool read) is never touched, at boot
neither: its MIG devices are Slurm's GRES and its jobs hold them, none of which
the allocator's drain sees. The plan names it; the admin repartitions it with
the node drained in Slurm.

At boot (``--boot``, ds01-gpu-layout.service, before docker and the
reconciler) no container runs and MIG instances are gone: holds recorded
before the reboot do not block.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ds01.config import Policy
from ds01.gpu.layout import Layout
from ds01.gpu.mig import MigFailed
from ds01.gpu.profiles import Placed, place
from ds01.gpu.results import UnitStatus, describe, when

DRAINED_BY = "ds01 gpu layout apply"


def last_plan_path(policy: Policy) -> str:
    """Where ``ds01 gpu layout plan`` keeps its last result (beside the database)."""
    return f"{policy.gpu.state_dir}/gpu/layout-plan.json"


class Partitioner(Protocol):
    def apply(self, index: int, uuid: str, placed: list[Placed] | None) -> list[str]: ...


@dataclass
class GpuPlan:
    index: int
    uuid: str | None
    name: str | None
    current: list[str] | None  # profiles in placement order; None: whole GPU
    desired: list[str] | None
    placed: list[Placed] | None = None
    vanishing: list[UnitStatus] = field(default_factory=list)
    problem: str | None = None  # why it cannot be applied
    pending: bool = False  # a MIG mode change waits for a reset
    drained: str | None = None  # left drained by an earlier apply
    slurm: str | None = None  # the policy key giving it to Slurm: never touched here

    @property
    def changes(self) -> bool:
        if self.slurm:
            return False
        return self.pending or _shape(self.current) != _shape(self.desired)

    def to_json(self) -> dict:
        return {
            "gpu": self.index,
            "uuid": self.uuid,
            "model": self.name,
            "current": self.current,
            "desired": self.desired,
            "changes": self.changes,
            "problem": self.problem,
            "pending_reset": self.pending,
            "drained_by": self.drained,
            "slurm": self.slurm,
            "vanishing": [
                {
                    "unit": s.unit.uuid,
                    "kind": s.unit.kind,
                    "state": s.state,
                    "container": s.holder,
                    "user": s.user,
                    "since": s.since,
                    "targeted_by": s.targeted_by,
                }
                for s in self.vanishing
            ],
        }


def _shape(profiles: list[str] | None) -> Counter | None:
    return None if profiles is None else Counter(profiles)


def plan(
    policy: Policy, layout: Layout, units: list[UnitStatus], drains: dict[int, str] | None = None
) -> list[GpuPlan]:
    """One :class:`GpuPlan` per GPU the policy lays out, in index order."""
    gpus = {g.index: g for g in layout.gpus}
    drains = drains or {}
    out = []
    for entry in policy.gpu.layout:
        for index in entry.gpus:
            g = gpus.get(index)
            p = GpuPlan(index, None, None, None, entry.mig, drained=drains.get(index))
            out.append(p)
            if policy.slurm_gpu_on_head(index):
                # Its units are not the allocator's to drain: repartitioning it
                # here would pull MIG devices from under Slurm's running jobs.
                p.slurm = f"cluster.nodes.{policy.cluster.controller}.gpus"  # type: ignore[union-attr]
                continue
            if g is None:
                p.problem = (
                    f"there is no GPU {index} on this host "
                    f"({len(layout.gpus)} found{': ' + layout.error if layout.error else ''})"
                )
                continue
            p.uuid, p.name = g.uuid, g.name
            if g.mig_current:
                insts = sorted(g.instances, key=lambda i: (i.placement_start or 0, i.uuid))
                p.current = [i.profile for i in insts]
            p.pending = g.mig_pending is not None and g.mig_pending != g.mig_current
            p.vanishing = [s for s in units if s.unit.gpu_index == index and s.state != "missing"]
            if g.error:
                p.problem = g.error
            elif g.name != entry.model:
                p.problem = (
                    f"GPU {index} is a {g.name}, but the policy lays it out as a {entry.model}"
                )
            elif g.mig_current is None and entry.mig is not None:
                p.problem = f"GPU {index} ({g.name}) cannot do MIG"
            else:
                p.placed = None if entry.mig is None else place(entry.model, entry.mig)
            if not p.changes:
                p.vanishing = []
    return sorted(out, key=lambda p: p.index)


def describe_plan(plans: list[GpuPlan]) -> list[str]:
    """The plan as an admin reads it."""
    if not plans:
        return ["the policy lays out no GPU (gpu.layout is empty): nothing to do"]

    def shape(profiles: list[str] | None) -> str:
        if profiles is None:
            return "whole GPU (MIG off)"
        return "MIG " + (" + ".join(profiles) or "(no instances)")

    lines = []
    for p in plans:
        head = f"GPU {p.index} {p.name or '?'}: "
        if p.slurm:
            lines.append(
                f"GPU {p.index}: Slurm's ({p.slurm}), left as it is: drain the node "
                "in Slurm (scontrol update state=drain) to repartition it"
            )
            continue
        if p.problem:
            lines.append(head + f"cannot be applied: {p.problem}")
            continue
        if not p.changes:
            lines.append(head + f"as the policy asks ({shape(p.current)})")
        else:
            lines.append(head + f"{shape(p.current)} -> {shape(p.desired)}")
            if p.pending:
                lines.append("    its MIG mode change is pending a GPU reset")
            for s in p.vanishing:
                who = (
                    f"held by {s.user} (container '{s.holder}') since {when(s.since)}"
                    if s.holder
                    else f"targeted by {', '.join(s.targeted_by)}"
                    if s.targeted_by
                    else s.state
                )
                lines.append(f"    vanishes: {describe(s.unit)}, {who}")
        if p.drained:
            lines.append(f"    drained by an unfinished apply ({p.drained})")
    return lines


class LayoutRefused(Exception):
    """Nothing (more) was changed on the hardware; the message says why."""


def apply(
    alloc,
    read: Callable[[], Layout],
    partitioner: Partitioner,
    by: str,
    *,
    boot: bool = False,
    say=print,
) -> list[GpuPlan]:
    """Apply the policy's layout (see the module docstring). ``read`` returns
    the current :class:`Layout`; ``alloc`` is the :class:`Allocator`. Returns
    the GPUs changed; raises :class:`LayoutRefused` or :class:`MigFailed`
    (its message says what state it left)."""
    layout = read()
    alloc.sync_layout(layout)
    plans = plan(alloc.policy, layout, alloc.status(), alloc.layout_drains())
    bad = [p for p in plans if p.problem]
    if bad:
        raise LayoutRefused(
            "nothing was changed:\n" + "\n".join(f"  GPU {p.index}: {p.problem}" for p in bad)
        )
    todo = [p for p in plans if p.changes]
    leftover = [p.index for p in plans if p.drained and not p.changes]
    if leftover:
        alloc.resume_gpus(leftover)  # an earlier apply's work is in place after all
    slurms = [str(p.index) for p in plans if p.slurm]
    if slurms:
        say(f"GPU(s) {', '.join(slurms)} are Slurm's: left as they are")
    if not todo:
        say("every GPU is laid out as the policy asks; nothing to do")
        return []
    marker = f"{DRAINED_BY} ({by})"
    held = alloc.drain_gpus([p.index for p in todo], marker)
    if held and not boot:
        lines = [
            f"  {describe(s.unit)}: held by {s.user} (container '{s.holder}') since "
            f"{when(s.since)}; take it back: sudo ds01 gpu release {s.unit.uuid}"
            for s in held
        ]
        raise LayoutRefused(
            "not re-partitioned: units of these GPUs are still held:\n"
            + "\n".join(lines)
            + "\nEvery unit of GPU(s) "
            + ", ".join(str(p.index) for p in todo)
            + " is now drained (no new assigns; the queue was told), so the holders can "
            "finish. Run `sudo ds01 gpu layout apply` again once they stop, or cancel: "
            "`sudo ds01 gpu layout resume`"
        )
    for s in held:  # boot: these holds are from before the reboot
        say(f"GPU {s.unit.gpu_index}: {s.holder} held {s.unit.uuid} before the reboot")
    done: list[GpuPlan] = []
    for k, p in enumerate(todo):
        try:
            for line in partitioner.apply(p.index, p.uuid, p.placed):
                say(f"GPU {p.index}: {line}")
        except MigFailed as e:
            rest = [q.index for q in todo[k + 1 :]] + ([] if e.changed else [p.index])
            alloc.sync_layout(read())
            alloc.resume_gpus(rest + [q.index for q in done])
            state = (
                f"GPU {p.index} stays drained (its units, old or new, are out of the pool) "
                "until an apply succeeds"
                if e.changed
                else f"GPU {p.index} is back in the pool unchanged"
            )
            if rest:
                state += "; GPU(s) " + ", ".join(map(str, sorted(rest))) + " resumed"
            raise type(e)(f"{e.message}.\n{state}.", e.changed) from None
        done.append(p)
    alloc.sync_layout(read())
    alloc.resume_gpus([p.index for p in done])
    return done
