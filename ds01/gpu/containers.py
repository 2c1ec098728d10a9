"""What the reconciler and the idle reaper need to know about containers.

The docker access layer implements :class:`Containers` as
``ds01.docker.containers.DockerContainers``; the tests use a fake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str  # the name the allocator knows the container by
    user: str
    running: bool
    started_at: float | None  # seconds since the epoch
    finished_at: float | None
    gpu_uuids: list[str] = field(default_factory=list)  # the devices it was given
    cpu_percent: float | None = None  # since the last reading; 100 is one CPU
    net_bytes: int | None = None  # received + sent since it started (a counter)


class Containers(Protocol):
    def list(self) -> list[ContainerInfo]:
        """Every DS01-managed container, running or stopped."""
        ...

    def stop(self, id: str, reason: str) -> None:
        """Stop the container; ``reason`` is logged and shown to its owner."""
        ...
