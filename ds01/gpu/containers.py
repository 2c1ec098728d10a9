"""What the reconciler and the idle reaper need to know about containers.

:class:`Containers` is the interface; :class:`DockerContainers` implements it
over the real docker socket (the tests use a fake). It lives on the GPU side so
that ``ds01.gpu`` never imports the access service (``ds01.docker``): the GPU
layer sits below it. The two agree on the labels the access service puts on
every container it creates (:data:`OWNER_LABEL`, :data:`GPU_LABEL`; a unit
test checks them against ``ds01.docker.policy``).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

OWNER_LABEL = "ds01.user"  # the container's owner (the access service's ds01.docker.policy.OWNER)
GPU_LABEL = "ds01.gpu"  # the units it was given, comma-separated (ds01.docker.policy.GPU)

log = logging.getLogger("ds01.gpu.containers")


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


# --------------------------------------------------------------------------
# Over the real docker socket
# --------------------------------------------------------------------------

_ZERO_TIME = "0001-01-01T00:00:00Z"


def docker_time(value: str | None) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, 'Z') -> seconds since the epoch."""
    if not value or value == _ZERO_TIME:
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    frac = (frac[:6] if frac else "0").ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{frac}+00:00").timestamp()


def cpu_percent(prev: tuple[int, int] | None, stats: dict) -> tuple[float | None, tuple[int, int]]:
    """CPU use since ``prev`` (total, system) in percent of one CPU."""
    cpu = stats.get("cpu_stats") or {}
    now = (
        int((cpu.get("cpu_usage") or {}).get("total_usage") or 0),
        int(cpu.get("system_cpu_usage") or 0),
    )
    if prev is None or now[1] <= prev[1]:
        return None, now
    cpus = cpu.get("online_cpus") or 1
    return (now[0] - prev[0]) / (now[1] - prev[1]) * cpus * 100.0, now


def net_bytes(stats: dict) -> int | None:
    nets = stats.get("networks")
    if not nets:
        return None
    return sum(int(n.get("rx_bytes", 0)) + int(n.get("tx_bytes", 0)) for n in nets.values())


class DockerContainers:
    """
    + socket: the real docker socket (``docker.real_socket``)
    Readings of CPU and network use are taken for running GPU containers only
    (the reaper's concern), in parallel.
    """

    def __init__(self, socket: str = "/run/docker.sock", client: Any = None):
        if client is None:
            import docker  # only where containers are read: the allocator does not need it

            client = docker.DockerClient(base_url=f"unix://{socket}", timeout=30)
        self.client = client
        self._cpu: dict[str, tuple[int, int]] = {}

    def list(self) -> list[ContainerInfo]:
        api = self.client.api
        rows = api.containers(all=True, filters={"label": [OWNER_LABEL]})
        infos = [api.inspect_container(r["Id"]) for r in rows]
        gpu_running = [
            i["Id"]
            for i in infos
            if i["State"]["Running"] and (i["Config"]["Labels"] or {}).get(GPU_LABEL)
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            stats = dict(
                zip(
                    gpu_running,
                    pool.map(lambda cid: api.stats(cid, stream=False, one_shot=True), gpu_running),
                    strict=True,
                )
            )
        out = []
        for i in infos:
            labels = i["Config"]["Labels"] or {}
            s = stats.get(i["Id"])
            pct = None
            if s is not None:
                pct, self._cpu[i["Id"]] = cpu_percent(self._cpu.get(i["Id"]), s)
            out.append(
                ContainerInfo(
                    id=i["Id"],
                    name=i["Name"].lstrip("/"),
                    user=labels.get(OWNER_LABEL, ""),
                    running=bool(i["State"]["Running"]),
                    started_at=docker_time(i["State"].get("StartedAt")),
                    finished_at=docker_time(i["State"].get("FinishedAt")),
                    gpu_uuids=[u for u in labels.get(GPU_LABEL, "").split(",") if u],
                    cpu_percent=pct,
                    net_bytes=net_bytes(s) if s else None,
                )
            )
        return out

    def stop(self, id: str, reason: str) -> None:
        log.warning("stopping container %s: %s", id, reason)
        self.client.api.stop(id, timeout=30)
