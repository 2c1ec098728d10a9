"""Choosing the layout backend named by ``gpu.backend`` in the policy."""

from __future__ import annotations

from typing import Protocol

from ds01.config import Policy
from ds01.gpu.layout import Layout
from ds01.gpu.nvml import NvmlBackend, nvml_present
from ds01.gpu.simulated import SimulatedBackend


class Backend(Protocol):
    def read(self) -> Layout: ...


def backend_for(policy: Policy, name: str | None = None) -> Backend:
    """``nvml``, ``simulated``, or ``auto``: NVML wherever the NVIDIA driver's
    library or device nodes exist (so a server whose driver broke shows an
    error instead of pretending), the simulated layout elsewhere."""
    name = name or policy.gpu.backend
    if name == "simulated" or (name == "auto" and not nvml_present()):
        return SimulatedBackend(policy)
    return NvmlBackend()
