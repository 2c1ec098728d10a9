"""Glue between the access service and the GPU allocator.

create  -> ``assign``: the container gets concrete units (``ds01.gpu`` label,
           ``NVIDIA_VISIBLE_DEVICES`` and, with real GPUs, a device request
           naming exactly those UUIDs); a refused create -> ``forget``, only
           when :class:`Assigned` says this create made the assignment;
start   -> ``allocate``, or the start is refused with the allocator's message;
die     -> ``release`` (from the daemon's event stream, so a container that
           exits by itself or is stopped through the real socket is seen too);
destroy -> ``forget``.
The GPU reconciler (ds01.gpu) is the safety net for events missed while the
service was down.

The allocator holds an SQLite connection, so every call runs on one worker
thread that owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ds01.config import Policy
from ds01.docker import policy as rules
from ds01.docker.daemon import events
from ds01.docker.policy import Caller, GpuRequest

log = logging.getLogger("ds01.docker.gpu")


EVENT_FILTERS = {"type": ["container"], "event": ["die", "destroy"], "label": [rules.GPU]}


@dataclass(frozen=True)
class Assigned:
    """What a create was given.

    + uuids: the units, in the order the container sees them
    + created: this create recorded the assignment. False when the name
      already had it (a retried create, or a second ``docker create --name X``
      of a running X): after a refused create the service forgets the
      assignment only when ``created``, so it never frees a unit it did not
      hand out.
    """

    uuids: list[str]
    created: bool


class GpuGlue:
    """
    + policy: the validated policy
    + make_allocator: builds the allocator (default ``ds01.gpu.allocator.Allocator(policy)``)
    + device_requests: give containers NVIDIA device requests (False on the
      simulated backend, where no NVIDIA runtime exists)
    """

    def __init__(
        self,
        policy: Policy,
        make_allocator: Callable[[], object] | None = None,
        device_requests: bool | None = None,
    ):
        from ds01.gpu.allocator import Allocator, GpuError

        self.errors = (GpuError,)
        self._make = make_allocator or (lambda: Allocator(policy))
        if device_requests is None:
            from ds01.gpu.backend import backend_for
            from ds01.gpu.simulated import SimulatedBackend

            device_requests = not isinstance(backend_for(policy), SimulatedBackend)
        self.device_requests = device_requests
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-allocator")
        self._alloc = None

    async def _call(self, method: str, *args):
        def run():
            if self._alloc is None:
                self._alloc = self._make()
            return getattr(self._alloc, method)(*args)

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    async def assign(self, name: str, caller: Caller, req: GpuRequest) -> Assigned:
        a = await self._call(
            "assign", name, caller.name, caller.role or rules.ADMIN_ROLE, req.count, req.kind
        )
        return Assigned([u.uuid for u in a.units], a.created)

    async def allocate(self, name: str) -> None:
        await self._call("allocate", name)

    async def release(self, name: str, stopped_at: float | None = None) -> None:
        await self._call("release", name, stopped_at)

    async def forget(self, name: str) -> None:
        await self._call("forget", name)

    async def on_event(self, event: dict) -> None:
        attrs = (event.get("Actor") or {}).get("Attributes") or {}
        name = attrs.get("name")
        if not name or rules.GPU not in attrs:
            return
        action = event.get("Action") or event.get("status")
        when = event.get("timeNano", 0) / 1e9 or event.get("time")
        try:
            if action == "die":
                await self.release(name, when)
                log.info("gpu: %s stopped; its units are released or held", name)
            elif action == "destroy":
                await self.forget(name)
                log.info("gpu: %s removed; its assignment is forgotten", name)
        except self.errors as e:
            log.warning("gpu: %s %s: %s", action, name, e.message)

    async def watch(self, upstream, retry: float = 2.0) -> None:
        """Follow the daemon's events for ever (reconnecting after errors)."""
        while True:
            try:
                async for event in events(upstream, EVENT_FILTERS):
                    await self.on_event(event)
            except (ConnectionError, OSError, ValueError) as e:
                log.warning("gpu: event stream lost (%s); reconnecting", e)
            await asyncio.sleep(retry)
