"""What the allocator answers: its refusals (the contract with the docker
access layer and the CLI) and the typed records it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from ds01.gpu.layout import Unit


class GpuError(Exception):
    """Every allocator refusal; ``message`` is written for the user."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class GpuDenied(GpuError):
    """The request is not allowed (quota, role, kind) or nothing fits now."""


class GpuBlocked(GpuError):
    """The container's target unit is held or reserved by someone else."""


class GpuUnknown(GpuError):
    """The allocator has no record of the container or unit named."""


@dataclass(frozen=True)
class Assignment:
    container: str
    user: str
    role: str
    state: str  # assigned | allocated | held | released
    units: list[Unit]
    kind: str | None = None
    assigned_at: float | None = None
    allocated_at: float | None = None
    release_at: float | None = None  # when a held container's units go back
    # Start of the continuous hold of its units (the GPU lease): a restart
    # within gpu_hold_after_stop keeps it; None while it holds nothing.
    leased_since: float | None = None
    # True only on what assign() returns when that very call recorded the
    # assignment; False when it returned one that already existed (a repeated
    # create of the same name must not forget someone's running container).
    created: bool = field(default=False, compare=False)

    @property
    def weight(self) -> float:
        return sum(u.weight for u in self.units)


@dataclass(frozen=True)
class QueueEntry:
    id: int
    user: str
    role: str
    priority: int
    kind: str | None
    enqueued_at: float
    state: str  # waiting | reserved
    position: int  # 1 is the head of its kind's line
    unit: str | None = None
    reserved_until: float | None = None


@dataclass(frozen=True)
class UnitStatus:
    unit: Unit
    state: str  # free | assigned | allocated | held | reserved | drained | missing
    holder: str | None = None  # container
    user: str | None = None
    since: float | None = None
    release_at: float | None = None
    reserved_for: str | None = None
    reserved_until: float | None = None
    targeted_by: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReaperState:
    """The idle reaper's readings of one container (see ds01.gpu.reconciler)."""

    idle_checks: int = 0
    idle_since: float | None = None
    last_check: float | None = None
    last_net: int | None = None
    warned_at: float | None = None
    warning: str | None = None


def when(t: float | None) -> str:
    """A timestamp as users read it: ``2026-11-29 20:41 UTC``."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(unit: Unit) -> str:
    """``GPU 2 slice 1g.5gb (MIG-...)`` or ``GPU 0 (GPU-...)``."""
    what = f"GPU {unit.gpu_index}" + (f" slice {unit.profile}" if unit.profile else "")
    return f"{what} ({unit.uuid})"
