"""What must always hold in the allocator's state, checked from outside the
decisions (the tests, the concurrency workers after every step, an admin).

A part of :class:`ds01.gpu.allocator.Allocator`.
"""

from __future__ import annotations

from ds01.gpu.placement import EPSILON


class InvariantsMixin:
    """``check_invariants`` (mixed into Allocator)."""

    def check_invariants(self) -> list[str]:
        """Every broken invariant, as text (empty when the state is consistent)."""
        problems = []
        with self._read():
            for r in self._rows(
                "SELECT u.uuid, u.holder, c.state FROM units u LEFT JOIN containers c "
                "ON c.name = u.holder WHERE u.holder IS NOT NULL"
            ):
                if r["state"] not in ("allocated", "held"):
                    problems.append(f"{r['uuid']} held by {r['holder']} in state {r['state']}")
                if not self.db.execute(
                    "SELECT 1 FROM targets WHERE container = ? AND uuid = ?",
                    (r["holder"], r["uuid"]),
                ).fetchone():
                    problems.append(f"{r['uuid']} held by {r['holder']}, which does not target it")
            for c in self._rows("SELECT * FROM containers WHERE state IN ('allocated', 'held')"):
                for t in self._targets(c["name"]):
                    if t["holder"] != c["name"]:
                        problems.append(
                            f"{c['name']} is {c['state']} but does not hold {t['uuid']}"
                        )
            for c in self._rows("SELECT * FROM containers WHERE state IN ('assigned', 'released')"):
                if self.db.execute("SELECT 1 FROM units WHERE holder = ?", (c["name"],)).fetchone():
                    problems.append(f"{c['name']} is {c['state']} but holds a unit")
            for u in self._rows("SELECT DISTINCT user, role FROM containers"):
                quota = self._limits(u["role"], u["user"]).gpu.quota
                held = self._held_weight(u["user"])
                if quota is not None and held > quota + EPSILON:
                    problems.append(f"{u['user']} holds {held:.3f} GPU-eq over a quota of {quota}")
            for q in self._rows("SELECT * FROM queue WHERE state = 'reserved'"):
                if not self.db.execute(
                    "SELECT 1 FROM units WHERE uuid = ? AND reserved_for = ?", (q["unit"], q["id"])
                ).fetchone():
                    problems.append(f"queue entry {q['id']} is reserved but its unit is not")
            for u in self._rows("SELECT * FROM units WHERE reserved_for IS NOT NULL"):
                if u["holder"] is not None:
                    problems.append(f"{u['uuid']} is both held and reserved")
            for u in self._rows("SELECT DISTINCT user FROM queue WHERE state = 'reserved'"):
                role = self._rows(
                    "SELECT role FROM queue WHERE user = ? AND state = 'reserved'", (u["user"],)
                )[0]["role"]
                quota = self._limits(role, u["user"]).gpu.quota
                committed = self._committed_weight(u["user"])
                if quota is not None and committed > quota + EPSILON:
                    problems.append(
                        f"{u['user']} holds and is reserved {committed:.3f} GPU-eq over a quota "
                        f"of {quota}"
                    )
            problems += self._physical_gpu_problems()
            problems += self._ledger_problems()
        return problems

    def _ledger_problems(self) -> list[str]:
        """The ledger matches the holds: one open lease per held unit, none else."""
        held = {
            (r["holder"], r["uuid"])
            for r in self._rows("SELECT holder, uuid FROM units WHERE holder IS NOT NULL")
        }
        open_ = [
            (r["container"], r["unit"])
            for r in self._rows("SELECT container, unit FROM leases WHERE ended_at IS NULL")
        ]
        out = [f"{u} held by {c} has no open lease" for c, u in held - set(open_)]
        out += [f"lease of {u} by {c} is open but not held" for c, u in set(open_) - held]
        out += [f"{u} has two open leases by {c}" for c, u in set(open_) if open_.count((c, u)) > 1]
        # a GPU being re-partitioned is drained whole, never in part
        for r in self._rows(
            "SELECT u.uuid, u.gpu_index FROM units u JOIN layout_drains d "
            "ON d.gpu_index = u.gpu_index WHERE u.present = 1 AND u.drained = 0"
        ):
            out.append(
                f"GPU {r['gpu_index']} is being re-partitioned but {r['uuid']} is in the pool"
            )
        return out

    def _physical_gpu_problems(self) -> list[str]:
        """One physical GPU is never handed out twice over: what is held on it
        weighs at most 1, and its whole-GPU unit and a MIG slice of it are
        never held at once (across re-partitioning, present or not)."""
        problems = []
        for g in self._rows(
            "SELECT gpu_index, sum(weight) AS weight, "
            "sum(profile IS NULL) AS whole, sum(profile IS NOT NULL) AS slices, "
            "group_concat(DISTINCT present) AS present "
            "FROM units WHERE holder IS NOT NULL GROUP BY gpu_index"
        ):
            if g["weight"] > 1 + EPSILON:
                problems.append(f"GPU {g['gpu_index']} has {g['weight']:.3f} GPU-eq held")
            if g["whole"] and g["slices"]:
                problems.append(f"GPU {g['gpu_index']} is held whole and as MIG slices at once")
            elif "," in (g["present"] or ""):
                problems.append(
                    f"GPU {g['gpu_index']} has units of its old and its new layout held at once"
                )
        return problems
