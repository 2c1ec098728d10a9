"""The GPU queue: a user waits for a unit of a kind (any, ``gpu`` for a whole
GPU, or a MIG profile). When such a unit is free it is *reserved* for the head
of the queue (highest role priority, then earliest arrival) for
``gpu.queue_reservation``; others are blocked from it meanwhile. An expired
reservation passes to the next in line. The unit reserved is the one
``assign`` would give (:mod:`ds01.gpu.placement`), and what is reserved for a
user counts against their quota with what they hold.

A part of :class:`ds01.gpu.allocator.Allocator` (its queue decisions, each in
the allocator's transaction; the lease state machine is in allocator.py).
"""

from __future__ import annotations

import math

from ds01.gpu import placement
from ds01.gpu.placement import EPSILON
from ds01.gpu.results import GpuDenied, QueueEntry, when


class QueueMixin:
    """Queue decisions over the allocator's store (mixed into Allocator)."""

    def _committed_weight(self, user: str) -> float:
        """What counts against ``user``'s quota: units held plus units reserved
        for them by the queue (a reservation is a promise of a unit)."""
        row = self.db.execute(
            "SELECT coalesce(sum(u.weight), 0) FROM units u JOIN queue q ON q.id = u.reserved_for "
            "WHERE q.user = ?",
            (user,),
        ).fetchone()
        return self._held_weight(user) + float(row[0])

    def _dispatch(self, now: float) -> None:
        """Reserve a free unit for each waiting entry, in queue order, chosen
        as assign would choose it and within the user's quota (counting what
        they hold and what is already reserved for them)."""
        waiting = self._rows(
            "SELECT * FROM queue WHERE state = 'waiting' ORDER BY priority DESC, enqueued_at, id"
        )
        if not waiting:
            return
        busy = self._old_layout_in_use()
        free = [
            r
            for r in self._rows(
                "SELECT u.*, (SELECT count(*) FROM targets t WHERE t.uuid = u.uuid) AS targeted "
                "FROM units u WHERE holder IS NULL AND reserved_for IS NULL AND present = 1 "
                "AND drained = 0"
            )
            if r["gpu_index"] not in busy
        ]
        until = now + self.policy.gpu.queue_reservation
        for q in waiting:
            if not free:
                return
            quota = self._limits(q["role"], q["user"]).gpu.quota
            budget = math.inf if quota is None else quota - self._committed_weight(q["user"])
            row = placement.best(
                [r for r in free if self._allowed(self._unit(r), q["kind"], q["role"], q["user"])],
                budget,
            )
            if row is None:
                continue
            free.remove(row)
            self.db.execute(
                "UPDATE units SET reserved_for = ?, reserved_until = ? WHERE uuid = ?",
                (q["id"], until, row["uuid"]),
            )
            self.db.execute(
                "UPDATE queue SET state = 'reserved', unit = ?, reserved_until = ? WHERE id = ?",
                (row["uuid"], until, q["id"]),
            )
            self._event("reserved", user=q["user"], unit=row["uuid"], detail=f"until {when(until)}")

    def _fit_reservations(self, user: str, role: str, now: float) -> None:
        """What ``user`` holds plus what is reserved for them stays within their
        quota: after a start that leaves no room, their latest reservations go
        back to waiting, and their units to whoever is next and fits."""
        quota = self._limits(role, user).gpu.quota
        if quota is None:
            return
        passed = False
        for q in self._rows(
            "SELECT q.id, q.unit FROM queue q WHERE q.user = ? AND q.state = 'reserved' "
            "ORDER BY q.reserved_until DESC, q.id DESC",
            (user,),
        ):
            if self._committed_weight(user) <= quota + EPSILON:
                break
            self.db.execute(
                "UPDATE queue SET state = 'waiting', unit = NULL, reserved_until = NULL "
                "WHERE id = ?",
                (q["id"],),
            )
            self.db.execute(
                "UPDATE units SET reserved_for = NULL, reserved_until = NULL "
                "WHERE reserved_for = ?",
                (q["id"],),
            )
            self._event("reservation passed on", user=user, unit=q["unit"], detail="over quota")
            passed = True
        if passed:
            self._dispatch(now)

    def enqueue(self, user: str, role: str, kind: str | None = None) -> QueueEntry:
        """Wait for a unit of ``kind``; one free now is reserved at once."""
        with self._tx():
            now = self.clock()
            self._expire(now)
            self._check_kind(kind, role, user)
            if self.db.execute(
                "SELECT 1 FROM queue WHERE user = ? AND kind IS ? AND state IN ('waiting', "
                "'reserved')",
                (user, kind),
            ).fetchone():
                raise GpuDenied(f"{user} is already in the queue for {kind or 'any unit'}")
            if not any(
                self._allowed(self._unit(r), kind, role, user)
                for r in self._rows("SELECT * FROM units WHERE present = 1")
            ):
                raise GpuDenied(f"this server has no {kind or 'GPU unit'} the {role} role may use")
            cur = self.db.execute(
                "INSERT INTO queue(user, role, priority, kind, enqueued_at, state) "
                "VALUES (?, ?, ?, ?, ?, 'waiting')",
                (user, role, self.policy.roles[role].priority, kind, now),
            )
            entry_id = cur.lastrowid
            self._event("queued", user=user, detail=kind or "any")
            self._dispatch(now)
            return next(e for e in self._queue() if e.id == entry_id)

    def leave(self, user: str, kind: str | None = None, *, any_kind: bool = False) -> int:
        """Leave the queue (for ``kind``, or every entry); a reservation held is
        passed to the next in line. Returns how many entries were cancelled."""
        with self._tx():
            now = self.clock()
            self._expire(now)
            rows = self._rows(
                "SELECT id FROM queue WHERE user = ? AND state IN ('waiting', 'reserved')"
                + ("" if any_kind else " AND kind IS ?"),
                (user,) if any_kind else (user, kind),
            )
            for r in rows:
                self.db.execute(
                    "UPDATE queue SET state = 'cancelled', ended_at = ? WHERE id = ?",
                    (now, r["id"]),
                )
                self.db.execute(
                    "UPDATE units SET reserved_for = NULL, reserved_until = NULL WHERE "
                    "reserved_for = ?",
                    (r["id"],),
                )
            self._dispatch(now)
            return len(rows)

    def _queue(self) -> list[QueueEntry]:
        out = []
        position: dict[str | None, int] = {}
        for q in self._rows(
            "SELECT * FROM queue WHERE state IN ('waiting', 'reserved') "
            "ORDER BY priority DESC, enqueued_at, id"
        ):
            position[q["kind"]] = position.get(q["kind"], 0) + 1
            out.append(
                QueueEntry(
                    q["id"],
                    q["user"],
                    q["role"],
                    q["priority"],
                    q["kind"],
                    q["enqueued_at"],
                    q["state"],
                    position[q["kind"]],
                    q["unit"],
                    q["reserved_until"],
                )
            )
        return out

    def queue(self) -> list[QueueEntry]:
        with self._read():
            return self._queue()

    def notices(self, user: str) -> list[str]:
        """What ``user`` should be told at login: reservations and queue places."""
        out = []
        for e in self.queue():
            if e.user != user:
                continue
            if e.state == "reserved":
                out.append(
                    f"A {e.kind or 'GPU unit'} ({e.unit}) is reserved for you until "
                    f"{when(e.reserved_until)}: create and start a container with it before then."
                )
            else:
                out.append(
                    f"You are number {e.position} in the GPU queue for {e.kind or 'any unit'}."
                )
        return out
