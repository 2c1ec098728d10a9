"""Helpers for the GPU tests (imported by conftest and by worker processes)."""

from __future__ import annotations

from ds01.config import Policy, SimulatedGpu
from ds01.gpu.allocator import Allocator
from ds01.gpu.simulated import SimulatedBackend

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_allocator(policy: Policy, path, clock=None) -> Allocator:
    return Allocator(policy, str(path), backend=SimulatedBackend(policy), clock=clock or Clock())


def policy_with(policy: Policy, simulated: list[dict] | None = None, **gpu) -> Policy:
    """The policy with its ``gpu`` section changed (the model is frozen)."""
    if simulated is not None:
        gpu["simulated"] = [SimulatedGpu.model_validate(s) for s in simulated]
    return policy.model_copy(update={"gpu": policy.gpu.model_copy(update=gpu)})
