"""The GPU allocator: which container targets, holds and waits for which unit.

States of a container's GPU units, as the admin defined them:

* ``assigned``: targets chosen at ``docker create``; nothing is reserved.
* ``allocated``: reserved for the container's exclusive use while it runs.
* *blocked*: not a state but the outcome of a start whose target someone
  else holds: :class:`GpuBlocked` says who, since when, and what to do.
* ``held``: stopped, but still holding its units for the role's
  ``gpu_hold_after_stop`` grace (a quick restart gets them back).
* ``released``: stopped; the units are back in the pool (or reserved for the
  head of the queue). A later start tries to allocate the same targets again.

Every decision is one transaction of the store (:mod:`ds01.gpu.store`: SQLite
in WAL mode, ``BEGIN IMMEDIATE`` behind an ``flock``), so a caller killed
mid-decision leaves nothing half-done; after each COMMIT the status snapshot
is rewritten (:mod:`ds01.gpu.snapshot`). Placement is a pure function
(:mod:`ds01.gpu.placement`); refusals and records are in
:mod:`ds01.gpu.results`; the queue's decisions in :mod:`ds01.gpu.queue` and
the invariants in :mod:`ds01.gpu.invariants`. This module is the lease state
machine (assign, allocate, release, forget, expiry, layout sync).

A unit's holder is a single column, so no unit can ever be held by two
containers. Quotas, in GPU-equivalents, are checked inside the same
transaction that reserves; what is reserved for a user by the queue counts
against their quota too. A physical GPU is never handed out twice over: while
a unit of its previous partitioning is still held, none of its new units is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from ds01.config import Policy
from ds01.gpu import placement
from ds01.gpu.dcgm import write_job_map
from ds01.gpu.invariants import InvariantsMixin
from ds01.gpu.layout import FULL_GPU, PROFILE_RE, Layout, Unit
from ds01.gpu.placement import EPSILON
from ds01.gpu.queue import QueueMixin
from ds01.gpu.results import (
    Assignment,
    GpuBlocked,
    GpuDenied,
    GpuError,
    GpuUnknown,
    QueueEntry,
    ReaperState,
    UnitStatus,
    describe,
    when,
)
from ds01.gpu.snapshot import SNAPSHOT_NAME, snapshot_path, write_snapshot
from ds01.gpu.store import DB_NAME, ContainerRow, Store, UnitRow
from ds01.gpu.usage import Lease, Wait

# The allocator's contract, importable from here as before the split.
__all__ = [
    "Allocator", "Assignment", "GpuBlocked", "GpuDenied", "GpuError", "GpuUnknown",
    "QueueEntry", "ReaperState", "UnitStatus", "describe", "snapshot_path", "when",
]  # fmt: skip

T = TypeVar("T")
log = logging.getLogger("ds01.gpu.allocator")


def _eq(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x else "0"


# --------------------------------------------------------------------------
# The allocator
# --------------------------------------------------------------------------


class Allocator(QueueMixin, InvariantsMixin):
    """
    + policy: the validated policy (roles' GPU limits, queue reservation time)
    + db_path: the SQLite file; default ``<gpu.state_dir>/gpu/allocator.sqlite3``
    + backend: where the layout is read from when the database has no units yet
      (default: the policy's ``gpu.backend``)
    + clock: seconds since the epoch (tests pass a fake one)
    + snapshot: where the status snapshot goes (default: in ``gpu.runtime_dir``
      with the default database, beside the database otherwise)
    """

    def __init__(
        self,
        policy: Policy,
        db_path: str | None = None,
        *,
        backend=None,
        clock: Callable[[], float] = time.time,
        snapshot: str | None = None,
    ):
        self.policy = policy
        self.path = db_path or os.path.join(policy.gpu.state_dir, DB_NAME)
        self.clock = clock
        self.snapshot_path = snapshot or (
            snapshot_path(policy)
            if db_path is None
            else os.path.join(os.path.dirname(self.path), SNAPSHOT_NAME)
        )
        os.makedirs(os.path.dirname(self.snapshot_path), mode=0o755, exist_ok=True)
        self.store = Store(self.path, clock, self._after_commit)
        self.db = self.store.db
        with self._tx():
            empty = self.db.execute("SELECT count(*) FROM units").fetchone()[0] == 0
        if empty:
            from ds01.gpu.backend import backend_for

            self.sync_layout((backend or backend_for(policy)).read())
        if not os.path.exists(self.snapshot_path):  # /run is empty after a reboot
            with self.store.locked():
                self._write_snapshot()

    def close(self) -> None:
        self.store.close()

    # -- the store ---------------------------------------------------------

    def _tx(self, op: str = "other"):
        return self.store.tx(op)

    def _read(self):
        return self.store.read()

    def _rows(self, sql: str, args=()) -> list[dict]:
        return self.store.rows(sql, args)

    def _event(self, what: str, container=None, user=None, unit=None, detail=None) -> None:
        self.store.event(what, container, user, unit, detail)

    def _after_commit(self, changed: bool) -> None:
        if not changed:
            return
        try:
            self._write_snapshot()
        except OSError as e:
            # The decision is committed: failing its caller now would be a lie.
            # The snapshot stays at the previous decision until a writer that
            # can write it (the reconciler, every gpu.reconcile_interval) does.
            log.warning("GPU status snapshot %s not written: %s", self.snapshot_path, e)

    def _write_snapshot(self) -> None:
        with self._read():
            data = self._snapshot()
        write_snapshot(self.snapshot_path, data)
        if self.policy.gpu.dcgm_job_map_dir:
            write_job_map(self.policy.gpu.dcgm_job_map_dir, data)

    def transaction(self):
        """A raw write transaction (tests, repairs by hand)."""
        return self._tx()

    def update_reaper(
        self, container: str, step: Callable[[ReaperState], tuple[ReaperState, T]]
    ) -> T:
        """The reaper's state of ``container`` through ``step`` (which returns the
        new state and a result), read and stored in one transaction."""
        with self._tx("reaper"):
            rows = self._rows("SELECT * FROM reaper WHERE container = ?", (container,))
            old = (
                ReaperState(**{k: v for k, v in rows[0].items() if k != "container"})
                if rows
                else None
            )
            new, result = step(old or ReaperState())
            if (
                old is not None
                and old.idle_since is not None
                and new.idle_since is not None
                and old.last_check is not None
                and new.last_check is not None
                and new.last_check > old.last_check
            ):  # idle at two samples in a row: the time between them was idle
                self.db.execute(
                    "UPDATE leases SET idle_seconds = idle_seconds + ? WHERE container = ? "
                    "AND ended_at IS NULL",
                    (new.last_check - old.last_check, container),
                )
            if new != old:
                self.db.execute(
                    "INSERT OR REPLACE INTO reaper(container, idle_checks, idle_since, "
                    "last_check, last_net, warned_at, warning) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (container, new.idle_checks, new.idle_since, new.last_check, new.last_net,
                     new.warned_at, new.warning),
                )  # fmt: skip
            return result

    # -- policy helpers ------------------------------------------------------

    def _limits(self, role: str, user: str):
        if role not in self.policy.roles:
            raise GpuDenied(
                f"role '{role}' is not defined in the policy ({', '.join(self.policy.roles)})"
            )
        return self.policy.limits_for(role, user)

    def _check_kind(self, kind: str | None, role: str, user: str) -> None:
        gpu = self._limits(role, user).gpu
        if kind is not None and kind != FULL_GPU and not PROFILE_RE.fullmatch(kind):
            raise GpuDenied(
                f"'{kind}' is not a GPU kind: ask for 'gpu' (a whole GPU), a MIG profile "
                "such as '1g.10gb', or leave it out for any unit"
            )
        if kind == FULL_GPU and not gpu.allow_full_gpu:
            raise GpuDenied(
                f"the {role} role may not use a whole GPU; leave the kind out or ask for a "
                "MIG profile (ds01 gpu status lists them)"
            )
        if gpu.max_units_per_container < 1:
            raise GpuDenied(f"the {role} role has no GPU access")

    def _allowed(self, unit: Unit, kind: str | None, role: str, user: str) -> bool:
        if unit.profile is None and not self._limits(role, user).gpu.allow_full_gpu:
            return False
        return kind is None or unit.kind == kind

    def _held_weight(self, user: str, exclude: str | None = None) -> float:
        row = self.db.execute(
            "SELECT coalesce(sum(u.weight), 0) FROM units u JOIN containers c ON u.holder = c.name "
            "WHERE c.user = ? AND c.name IS NOT ?",
            (user, exclude),
        ).fetchone()
        return float(row[0])

    # -- reading units -------------------------------------------------------

    @staticmethod
    def _unit(row) -> Unit:
        return Unit(row["uuid"], row["gpu_index"], row["profile"], row["weight"])

    def _container(self, name: str) -> ContainerRow | None:
        rows = self._rows("SELECT * FROM containers WHERE name = ?", (name,))
        return rows[0] if rows else None

    def _targets(self, name: str) -> list[UnitRow]:
        return self._rows(
            "SELECT u.* FROM targets t JOIN units u ON u.uuid = t.uuid WHERE t.container = ? "
            "ORDER BY u.gpu_index, u.position",
            (name,),
        )

    def _assignment(self, name: str) -> Assignment:
        c = self._container(name)
        if c is None:
            raise GpuUnknown(f"container '{name}' has no GPU assignment")
        since = self.db.execute(
            "SELECT min(held_since) FROM units WHERE holder = ?", (name,)
        ).fetchone()[0]
        return Assignment(
            container=c["name"],
            user=c["user"],
            role=c["role"],
            state=c["state"],
            units=[self._unit(u) for u in self._targets(name)],
            kind=c["kind"],
            assigned_at=c["assigned_at"],
            allocated_at=c["allocated_at"],
            release_at=c["release_at"],
            leased_since=since,
        )

    # -- housekeeping inside every decision ----------------------------------

    def _free(self, container: str, why: str, at: float | None = None) -> None:
        """Give back every unit ``container`` holds, and offer each to the queue;
        its leases end ``at`` (default now), for ``why``."""
        self.db.execute(
            "UPDATE leases SET ended_at = ?, end_reason = ? WHERE container = ? "
            "AND ended_at IS NULL",
            (self.clock() if at is None else at, why, container),
        )
        freed = [
            r["uuid"] for r in self._rows("SELECT uuid FROM units WHERE holder = ?", (container,))
        ]
        self.db.execute(
            "UPDATE units SET holder = NULL, held_since = NULL WHERE holder = ?", (container,)
        )
        for uuid in freed:
            self._event("released", container=container, unit=uuid)

    def _expire(self, now: float) -> None:
        for c in self._rows(
            "SELECT name, release_at FROM containers WHERE state = 'held' AND release_at <= ?",
            (now,),
        ):
            self._free(c["name"], "hold expired", at=c["release_at"])
            self.db.execute(
                "UPDATE containers SET state = 'released', release_at = NULL WHERE name = ?",
                (c["name"],),
            )
        for q in self._rows(
            "SELECT id, user, unit FROM queue WHERE state = 'reserved' AND reserved_until <= ?",
            (now,),
        ):
            self.db.execute(
                "UPDATE queue SET state = 'expired', ended_at = ? WHERE id = ?", (now, q["id"])
            )
            self.db.execute(
                "UPDATE units SET reserved_for = NULL, reserved_until = NULL WHERE reserved_for = "
                "?",
                (q["id"],),
            )
            self._event("reservation expired", user=q["user"], unit=q["unit"])
        self._dispatch(now)

    def _old_layout_in_use(self) -> dict[int, str]:
        """Physical GPUs (by index) whose previous partitioning is still held:
        a unit that vanished keeps its holder until release, and until then no
        unit of the new layout of that GPU may be handed out (a whole GPU and
        a slice of it must never both be held). Maps index -> holder."""
        return {
            r["gpu_index"]: r["holder"]
            for r in self._rows(
                "SELECT gpu_index, holder FROM units WHERE present = 0 AND holder IS NOT NULL"
            )
        }

    # -- the decisions -------------------------------------------------------

    def assign(
        self, container: str, user: str, role: str, count: int = 1, kind: str | None = None
    ) -> Assignment:
        """Choose ``count`` target units for a new container (nothing is reserved).

        Placement: :func:`ds01.gpu.placement.order` (the queue reserves the same way).
        ``created`` on the result is False when the name already had this
        assignment (nothing was recorded by this call). Raises
        :class:`GpuDenied` when the request is not allowed, would take the user
        over quota, or nothing free fits."""
        if not container or not user:
            raise GpuDenied("a container name and a user are required")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise GpuDenied(
                f"the number of GPU units must be a whole number of 1 or more, not {count!r}"
            )
        with self._tx("assign"):
            now = self.clock()
            self._expire(now)
            self._check_kind(kind, role, user)
            limits = self._limits(role, user).gpu
            if count > limits.max_units_per_container:
                raise GpuDenied(
                    f"the {role} role may use at most {limits.max_units_per_container} GPU "
                    f"unit(s) per container; {count} were asked for"
                )
            existing = self._container(container)
            if existing is not None:
                if (existing["user"], existing["kind"], existing["count"]) == (user, kind, count):
                    # A retried create, or a second create of a name in use:
                    # the caller cannot tell which, so it is told this call
                    # created nothing (created=False) and must not forget it.
                    return self._assignment(container)
                raise GpuDenied(f"container '{container}' already has a GPU assignment")
            rows = self._rows(
                "SELECT u.*, q.user AS reserved_user, "
                "(SELECT count(*) FROM targets t WHERE t.uuid = u.uuid) AS targeted "
                "FROM units u LEFT JOIN queue q ON q.id = u.reserved_for "
                "WHERE u.present = 1 AND u.drained = 0 AND u.holder IS NULL "
                "AND (u.reserved_for IS NULL OR q.user = ?)",
                (user,),
            )
            busy = self._old_layout_in_use()
            candidates = [
                r
                for r in rows
                if r["gpu_index"] not in busy and self._allowed(self._unit(r), kind, role, user)
            ]
            held = self._held_weight(user)
            budget = math.inf if limits.quota is None else limits.quota - held
            chosen = placement.choose(candidates, count, budget, user)
            if len(chosen) < count:
                wanted = "whole GPU" if kind == FULL_GPU else (kind or "GPU unit")
                if candidates and limits.quota is not None:
                    raise GpuDenied(
                        f"{user} ({role}) holds {_eq(held)} of a {_eq(limits.quota)} "
                        "GPU-equivalent "
                        f"quota; no free {wanted} fits in the {_eq(max(budget, 0))} left. Stop a "
                        "container that holds a GPU, or ask for a smaller MIG profile"
                    )
                raise GpuDenied(
                    f"no {wanted} is free right now ({count} needed). See `ds01 gpu status`, "
                    f"or wait for one: `ds01 gpu queue join"
                    + (f" --kind {kind}" if kind else "")
                    + "`"
                )
            self.db.execute(
                "INSERT INTO containers(name, user, role, state, kind, count, assigned_at) "
                "VALUES (?, ?, ?, 'assigned', ?, ?, ?)",
                (container, user, role, kind, count, now),
            )
            for r in chosen:
                self.db.execute(
                    "INSERT INTO targets(container, uuid) VALUES (?, ?)", (container, r["uuid"])
                )
                self._event("assigned", container, user, r["uuid"])
            return replace(self._assignment(container), created=True)

    def allocate(self, container: str) -> Assignment:
        """Reserve the container's targets for its exclusive use (at start).

        Raises :class:`GpuBlocked` when a target is held, reserved for the
        queue, drained or gone; :class:`GpuDenied` when holding it would take
        the user over quota."""
        with self._tx("allocate"):
            now = self.clock()
            self._expire(now)
            c = self._container(container)
            if c is None:
                raise GpuUnknown(
                    f"container '{container}' has no GPU assignment; it was created without "
                    "the ds01 allocator. Recreate it."
                )
            if c["state"] == "allocated":
                # A start of a running container, or a restart whose stop the
                # event stream has not delivered yet: this start is the
                # current run, so a stop reported later from before it is late.
                self.db.execute(
                    "UPDATE containers SET allocated_at = ? WHERE name = ?", (now, container)
                )
                return self._assignment(container)
            targets = self._targets(container)
            recreate = (
                "Remove and recreate the container to be assigned a free unit "
                "(`ds01 gpu status` shows what is free)"
            )
            gone = [t for t in targets if not t["present"]]
            if c["state"] == "held" and gone:
                # A restart within the hold, but the GPU was re-partitioned
                # meanwhile: the unit it holds no longer exists. Give it back
                # (the refusal still commits) rather than run on a ghost.
                self._free(container, "unit vanished")
                self.db.execute(
                    "UPDATE containers SET state = 'released', release_at = NULL WHERE name = ?",
                    (container,),
                )
                self._dispatch(now)
            elif c["state"] == "held":  # a restart within the grace period
                self.db.execute(
                    "UPDATE containers SET state = 'allocated', allocated_at = ?, stopped_at = "
                    "NULL, "
                    "release_at = NULL WHERE name = ?",
                    (now, container),
                )
                self._event("allocated", container, c["user"], detail="restarted within hold")
                return self._assignment(container)
            busy = self._old_layout_in_use()
            for t in targets:
                unit = self._unit(t)
                if not t["present"]:
                    raise GpuBlocked(
                        f"{describe(unit)} no longer exists (the GPU was re-partitioned). "
                        f"{recreate}."
                    )
                if t["drained"]:
                    raise GpuBlocked(
                        f"{describe(unit)} was taken out of service by "
                        f"{t['drained_by'] or 'an admin'}. "
                        f"{recreate}."
                    )
                if t["gpu_index"] in busy and busy[t["gpu_index"]] != container:
                    h = self._container(busy[t["gpu_index"]])
                    raise GpuBlocked(
                        f"GPU {t['gpu_index']} was re-partitioned while "
                        f"{h['user'] if h else '?'} (container '{busy[t['gpu_index']]}') still "
                        f"holds a unit of its old layout; {describe(unit)} is free once that "
                        f"container stops. {recreate}, or wait."
                    )
                if t["holder"] is not None and t["holder"] != container:
                    h = self._container(t["holder"])
                    who = h["user"] if h else "?"
                    raise GpuBlocked(
                        f"{describe(unit)} is in use by {who} (container '{t['holder']}') since "
                        f"{when(t['held_since'])}. {recreate}, or wait for this kind of unit: "
                        f"`ds01 gpu queue join --kind {unit.kind}`."
                    )
                if t["reserved_for"] is not None:
                    q = self._rows("SELECT user FROM queue WHERE id = ?", (t["reserved_for"],))[0]
                    if q["user"] != c["user"]:
                        raise GpuBlocked(
                            f"{describe(unit)} is reserved for {q['user']}, who is first in the "
                            f"GPU queue, until {when(t['reserved_until'])}. {recreate}, or try "
                            "again after that time."
                        )
            quota = self._limits(c["role"], c["user"]).gpu.quota
            need = sum(t["weight"] for t in targets)
            held = self._held_weight(c["user"], exclude=container)
            if quota is not None and held + need > quota + EPSILON:
                raise GpuDenied(
                    f"starting '{container}' would make {c['user']} hold {_eq(held + need)} "
                    f"GPU-equivalents; the {c['role']} quota is {_eq(quota)}. Stop another "
                    "container that holds a GPU first (`ds01 gpu status`)."
                )
            for t in targets:
                self.db.execute(
                    "UPDATE units SET holder = ?, held_since = ? WHERE uuid = ?",
                    (container, now, t["uuid"]),
                )
                self.db.execute(
                    "INSERT INTO leases(container, user, role, unit, gpu_index, kind, weight, "
                    "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (container, c["user"], c["role"], t["uuid"], t["gpu_index"],
                     t["profile"] or FULL_GPU, t["weight"], now),
                )  # fmt: skip
                if t["reserved_for"] is not None:  # the user's own reservation: used
                    self.db.execute(
                        "UPDATE queue SET state = 'done', ended_at = ? WHERE id = ?",
                        (now, t["reserved_for"]),
                    )
                    self.db.execute(
                        "UPDATE units SET reserved_for = NULL, reserved_until = NULL WHERE uuid = "
                        "?",
                        (t["uuid"],),
                    )
                self._event("allocated", container, c["user"], t["uuid"])
            self.db.execute(
                "UPDATE containers SET state = 'allocated', allocated_at = ?, stopped_at = NULL, "
                "release_at = NULL WHERE name = ?",
                (now, container),
            )
            self._fit_reservations(c["user"], c["role"], now)
            return self._assignment(container)

    def release(
        self, container: str, stopped_at: float | None = None, *, hold: bool = True
    ) -> None:
        """The container stopped at ``stopped_at`` (default now): its units go
        back after the role's ``gpu_hold_after_stop``, counted from then
        (at once with ``hold=False``: the idle reaper stopped it).
        Unknown containers and repeated calls are no-ops, and so is a stop
        older than the current allocation (a late event of an earlier run)."""
        with self._tx("release"):
            now = self.clock()
            self._expire(now)
            c = self._container(container)
            if c is None or c["state"] != "allocated":
                return
            if stopped_at is not None and stopped_at < (c["allocated_at"] or 0):
                # A stop of an earlier run, reported late (docker stop; docker
                # start can outrun the event stream): the current run goes on.
                self._event(
                    "late stop ignored", container, c["user"], detail=f"stopped {when(stopped_at)}"
                )
                return
            stopped = now if stopped_at is None else min(stopped_at, now)
            grace = self._limits(c["role"], c["user"]).lifecycle.gpu_hold_after_stop if hold else 0
            if stopped + grace > now:
                self.db.execute(
                    "UPDATE containers SET state = 'held', stopped_at = ?, release_at = ? "
                    "WHERE name = ?",
                    (stopped, stopped + grace, container),
                )
                self._event("held", container, c["user"], detail=f"until {when(stopped + grace)}")
            else:
                self._free(container, "stopped")
                self.db.execute(
                    "UPDATE containers SET state = 'released', stopped_at = ?, release_at = NULL "
                    "WHERE name = ?",
                    (stopped, container),
                )
            self._dispatch(now)

    def forget(self, container: str) -> None:
        """The container was removed: free its units and drop its record."""
        with self._tx("forget"):
            now = self.clock()
            self._expire(now)
            if self._container(container) is None:
                return
            self._free(container, "removed")
            self.db.execute("DELETE FROM targets WHERE container = ?", (container,))
            self.db.execute("DELETE FROM containers WHERE name = ?", (container,))
            self._event("forgotten", container)
            self._purge_missing()
            self._dispatch(now)

    def expire(self) -> None:
        """Release units whose hold ran out, pass on expired reservations, and
        drop history older than ``gpu.history_retention`` (the reconciler
        calls this every ``gpu.reconcile_interval``)."""
        with self._tx("expire"):
            now = self.clock()
            self._expire(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Events, and queue entries that ended, older than the retention."""
        before = now - self.policy.gpu.history_retention
        self.db.execute("DELETE FROM events WHERE at < ?", (before,))
        self.db.execute(
            "DELETE FROM queue WHERE state IN ('done', 'expired', 'cancelled') AND ended_at < ?",
            (before,),
        )

    # -- admin ---------------------------------------------------------------

    def admin_release(self, uuid: str, by: str) -> str | None:
        """Take a unit back from its holder now (the container keeps running
        without its reservation). Returns the container that held it."""
        with self._tx("admin_release"):
            now = self.clock()
            self._expire(now)
            row = self._unit_row(uuid)
            holder = row["holder"]
            if holder is not None:
                self._free(holder, f"admin release by {by}")
                self.db.execute(
                    "UPDATE containers SET state = 'released', release_at = NULL WHERE name = ?",
                    (holder,),
                )
                self._event("admin release", holder, unit=uuid, detail=f"by {by}")
            self._dispatch(now)
            return holder

    def drain(self, uuid: str, by: str, drained: bool = True) -> None:
        """Take a unit out of the pool (or put it back). Its current holder keeps
        it until release; nobody is assigned or allocated it meanwhile."""
        with self._tx("drain"):
            now = self.clock()
            self._expire(now)
            row = self._unit_row(uuid)
            busy = self._rows(
                "SELECT by FROM layout_drains WHERE gpu_index = ?", (row["gpu_index"],)
            )
            if busy and not drained:
                raise GpuDenied(
                    f"GPU {row['gpu_index']} is being re-partitioned ({busy[0]['by']}): its "
                    "units come back together, with `sudo ds01 gpu layout resume`"
                )
            self.db.execute(
                "UPDATE units SET drained = ?, drained_by = ?, reserved_for = NULL, "
                "reserved_until = NULL WHERE uuid = ?",
                (int(drained), by if drained else None, uuid),
            )
            self.db.execute(
                "UPDATE queue SET state = 'waiting', unit = NULL, reserved_until = NULL "
                "WHERE state = 'reserved' AND unit = ?",
                (uuid,),
            )
            self._event("drained" if drained else "undrained", unit=uuid, detail=f"by {by}")
            self._dispatch(now)

    def drain_gpus(self, indexes: list[int], by: str) -> list[UnitStatus]:
        """Take every unit of the GPUs ``indexes`` out of the pool at once, for
        re-partitioning (reservations go back to the queue, and units that
        appear on them meanwhile stay out too). Returns the units of those
        GPUs still held, old layout included: they must be let go first."""
        with self._tx("drain_gpus"):
            now = self.clock()
            self._expire(now)
            for index in indexes:
                self.db.execute(
                    "INSERT OR REPLACE INTO layout_drains(gpu_index, by, since) VALUES (?, ?, ?)",
                    (index, by, now),
                )
                for r in self._rows(
                    "SELECT uuid FROM units WHERE gpu_index = ? AND drained = 0", (index,)
                ):
                    self.db.execute(
                        "UPDATE units SET drained = 1, drained_by = ?, reserved_for = NULL, "
                        "reserved_until = NULL WHERE uuid = ?",
                        (by, r["uuid"]),
                    )
                    self.db.execute(
                        "UPDATE queue SET state = 'waiting', unit = NULL, reserved_until = NULL "
                        "WHERE state = 'reserved' AND unit = ?",
                        (r["uuid"],),
                    )
                    self._event("drained", unit=r["uuid"], detail=by)
            self._dispatch(now)
            return [
                s for s in self._status() if s.unit.gpu_index in indexes and s.holder is not None
            ]

    def resume_gpus(self, indexes: list[int]) -> None:
        """Put back what :meth:`drain_gpus` took out (an admin's own drains stay)."""
        with self._tx("resume_gpus"):
            now = self.clock()
            self._expire(now)
            for index in indexes:
                row = self._rows("SELECT by FROM layout_drains WHERE gpu_index = ?", (index,))
                if not row:
                    continue
                for r in self._rows(
                    "SELECT uuid FROM units WHERE gpu_index = ? AND drained = 1 AND drained_by = ?",
                    (index, row[0]["by"]),
                ):
                    self.db.execute(
                        "UPDATE units SET drained = 0, drained_by = NULL WHERE uuid = ?",
                        (r["uuid"],),
                    )
                    self._event("undrained", unit=r["uuid"], detail=row[0]["by"])
                self.db.execute("DELETE FROM layout_drains WHERE gpu_index = ?", (index,))
            self._dispatch(now)

    def layout_drains(self) -> dict[int, str]:
        """GPUs a layout apply has drained (and not resumed): index -> by whom."""
        with self._read():
            return {r["gpu_index"]: r["by"] for r in self._rows("SELECT * FROM layout_drains")}

    def _purge_missing(self) -> None:
        """Units gone from the layout and no longer referenced are dropped for good."""
        self.db.execute(
            "DELETE FROM units WHERE present = 0 AND holder IS NULL "
            "AND uuid NOT IN (SELECT uuid FROM targets)"
        )

    def _unit_row(self, uuid: str) -> UnitRow:
        rows = self._rows("SELECT * FROM units WHERE uuid = ?", (uuid,))
        if not rows:
            raise GpuUnknown(f"no GPU unit {uuid}; `ds01 gpu status` lists them")
        return rows[0]

    # -- layout --------------------------------------------------------------

    def own(self, layout: Layout) -> Layout:
        """``layout`` without the GPUs the cluster gives Slurm
        (``Policy.slurm_gpu_on_head``): the allocator never hands them out, and
        a Slurm job's processes on them are none of its business."""
        return replace(layout, gpus=[g for g in layout.gpus
                                     if not self.policy.slurm_gpu_on_head(g.index)])  # fmt: skip

    def sync_layout(self, layout: Layout) -> tuple[list[str], list[str]]:
        """Make the unit table match ``layout``. Units that vanished are marked
        missing (their holders keep them until release, their targets are
        blocked at the next start); units that appear join the pool. Returns
        (added, missing) uuids. An empty layout with an error changes nothing:
        a failed NVML read must not take every GPU away, and the units of a
        GPU that could not be read (``Gpu.error``) stay as they were. Slurm's
        GPUs (:meth:`own`) leave the pool as a vanished GPU does."""
        if layout.error and not layout.gpus:
            return [], []
        layout = self.own(layout)
        unread = layout.unread_gpus()
        units = {u.uuid: u for u in layout.units()}
        position = {uuid: i for i, uuid in enumerate(units)}
        with self._tx("reconcile"):
            known = {r["uuid"]: r for r in self._rows("SELECT uuid, present, gpu_index FROM units")}
            drains = {r["gpu_index"]: r["by"] for r in self._rows("SELECT * FROM layout_drains")}
            added, missing = [], []
            for u in units.values():
                if u.uuid not in known:
                    added.append(u.uuid)
                    by = drains.get(u.gpu_index)
                    self.db.execute(
                        "INSERT INTO units(uuid, gpu_index, position, profile, weight, drained, "
                        "drained_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (u.uuid, u.gpu_index, position[u.uuid], u.profile, u.weight,
                         int(by is not None), by),
                    )  # fmt: skip
                else:
                    if not known[u.uuid]["present"]:
                        added.append(u.uuid)
                    self.db.execute(
                        "UPDATE units SET present = 1, gpu_index = ?, position = ?, profile = ?, "
                        "weight = ? WHERE uuid = ?",
                        (u.gpu_index, position[u.uuid], u.profile, u.weight, u.uuid),
                    )
            for uuid, r in known.items():
                if uuid not in units and r["present"] and r["gpu_index"] not in unread:
                    missing.append(uuid)
                    self.db.execute(
                        "UPDATE units SET present = 0, reserved_for = NULL, reserved_until = NULL "
                        "WHERE uuid = ?",
                        (uuid,),
                    )
                    self.db.execute(
                        "UPDATE queue SET state = 'waiting', unit = NULL, reserved_until = NULL "
                        "WHERE state = 'reserved' AND unit = ?",
                        (uuid,),
                    )
            self._purge_missing()
            for uuid in added:
                self._event("unit added", unit=uuid)
            for uuid in missing:
                self._event("unit missing", unit=uuid)
            self._dispatch(self.clock())
            return added, missing

    # -- reading -------------------------------------------------------------

    def ledger(self, since: float) -> tuple[list[Lease], list[Wait]]:
        """The leases and queue waits that end at or after ``since`` (or go on)."""
        with self._read():
            leases = [
                Lease(**{k: r[k] for k in Lease.__dataclass_fields__})
                for r in self._rows(
                    "SELECT * FROM leases WHERE ended_at IS NULL OR ended_at >= ? ORDER BY id",
                    (since,),
                )
            ]
            waits = [
                Wait(r["user"], r["role"], r["kind"], r["enqueued_at"], r["ended_at"], r["outcome"])
                for r in self._rows("SELECT * FROM waits WHERE ended_at >= ? ORDER BY id", (since,))
            ] + [
                Wait(r["user"], r["role"], r["kind"], r["enqueued_at"], None, r["state"])
                for r in self._rows(
                    "SELECT * FROM queue WHERE state IN ('waiting', 'reserved') ORDER BY id"
                )
            ]
            return leases, waits

    def assignment(self, container: str) -> Assignment | None:
        with self._read():
            try:
                return self._assignment(container)
            except GpuUnknown:
                return None

    def assignments(self) -> list[Assignment]:
        with self._read():
            names = [r["name"] for r in self._rows("SELECT name FROM containers ORDER BY name")]
            return [self._assignment(n) for n in names]

    def status(self) -> list[UnitStatus]:
        """Every unit with its state, as of now (a read; changes nothing)."""
        with self._read():
            return self._status()

    def snapshot(self) -> dict:
        """Units and queue as JSON-ready data (what ``ds01 gpu status --json`` prints)."""
        with self._read():
            return self._snapshot()

    def _snapshot(self) -> dict:
        # since when the idle reaper has seen each container idle (its rule's sense)
        idle = {r["container"]: r["idle_since"] for r in self._rows(
            "SELECT container, idle_since FROM reaper WHERE idle_since IS NOT NULL")}  # fmt: skip
        return {
            "at": self.clock(),
            "units": [
                {
                    "uuid": s.unit.uuid,
                    "gpu": s.unit.gpu_index,
                    "kind": s.unit.kind,
                    "weight": round(s.unit.weight, 6),
                    "state": s.state,
                    "container": s.holder,
                    "user": s.user,
                    "since": s.since,
                    "idle_since": idle.get(s.holder) if s.holder else None,
                    "release_at": s.release_at,
                    "reserved_for": s.reserved_for,
                    "reserved_until": s.reserved_until,
                    "targeted_by": len(s.targeted_by),
                }
                for s in self._status()
            ],
            "queue": [
                {
                    "id": e.id,
                    "user": e.user,
                    "role": e.role,
                    "kind": e.kind,
                    "position": e.position,
                    "state": e.state,
                    "since": e.enqueued_at,
                    "unit": e.unit,
                    "reserved_until": e.reserved_until,
                }
                for e in self._queue()
            ],
            "decisions": self.store.decisions(),
            "warnings": [
                {
                    "container": r["container"],
                    "user": r["user"],
                    "at": r["warned_at"],
                    "message": r["warning"],
                }
                for r in self._rows(
                    "SELECT r.*, c.user FROM reaper r JOIN containers c ON c.name = r.container "
                    "WHERE r.warned_at IS NOT NULL ORDER BY r.warned_at"
                )
            ],
        }

    def _status(self) -> list[UnitStatus]:
        now = self.clock()
        rows = self._rows(
            "SELECT u.*, c.user AS holder_user, c.state AS holder_state, "
            "c.release_at AS holder_release_at, q.user AS reserved_user "
            "FROM units u LEFT JOIN containers c ON c.name = u.holder "
            "LEFT JOIN queue q ON q.id = u.reserved_for ORDER BY u.gpu_index, u.position"
        )
        targeted: dict[str, list[str]] = {}
        for t in self._rows("SELECT container, uuid FROM targets ORDER BY container"):
            targeted.setdefault(t["uuid"], []).append(t["container"])
        out = []
        for r in rows:
            reserved = r["reserved_user"] if (r["reserved_until"] or 0) > now else None
            if not r["present"]:
                state = "missing"
            elif r["holder"] is not None:
                state = r["holder_state"]
            elif r["drained"]:
                state = "drained"
            elif reserved:
                state = "reserved"
            elif targeted.get(r["uuid"]):
                state = "assigned"
            else:
                state = "free"
            out.append(
                UnitStatus(
                    unit=self._unit(r),
                    state=state,
                    holder=r["holder"],
                    user=r["holder_user"],
                    since=r["held_since"],
                    release_at=r["holder_release_at"] if r["holder_state"] == "held" else None,
                    reserved_for=reserved,
                    reserved_until=r["reserved_until"] if reserved else None,
                    targeted_by=targeted.get(r["uuid"], []),
                )
            )
        return out
