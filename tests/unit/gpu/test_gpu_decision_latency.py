"""Decision latency: every allocator decision that writes is timed (waiting for
the lock included) into a histogram per operation, which the status snapshot
carries to the exporter; a transaction that changes nothing is not counted."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

from ds01.gpu.store import LATENCY_BUCKETS


def _decisions(alloc) -> dict:
    return json.load(open(alloc.snapshot_path))["decisions"]


def test_each_writing_decision_is_counted_under_its_operation(alloc):
    alloc.assign("nb", "123456@example.lan", "student", kind="1g.5gb")
    alloc.allocate("nb")
    alloc.release("nb", hold=False)
    alloc.expire()  # nothing to expire: no write, no decision
    d = _decisions(alloc)
    assert {op: v["count"] for op, v in d.items()}.items() >= {"assign": 1, "allocate": 1, "release": 1}.items()
    assert "expire" not in d
    for v in d.values():
        counts = [n for _, n in v["buckets"]]
        assert [le for le, _ in v["buckets"]] == list(LATENCY_BUCKETS)
        assert counts == sorted(counts) and counts[-1] <= v["count"]  # cumulative
        assert 0 <= v["sum"] < 5


def test_waiting_for_the_lock_is_part_of_the_latency(alloc):
    held = threading.Event()

    def another_process_mid_decision():
        fd = os.open(alloc.store.path + ".lock", os.O_RDWR)  # its own open file: its own flock
        fcntl.flock(fd, fcntl.LOCK_EX)
        held.set()
        time.sleep(0.3)
        os.close(fd)

    t = threading.Thread(target=another_process_mid_decision)
    t.start()
    held.wait()
    alloc.assign("nb", "123456@example.lan", "student", kind="1g.5gb")
    t.join()
    assign = _decisions(alloc)["assign"]
    assert assign["count"] == 1 and assign["sum"] >= 0.25
    below = dict((le, n) for le, n in assign["buckets"])
    assert below[0.1] == 0 and below[1.0] == 1
