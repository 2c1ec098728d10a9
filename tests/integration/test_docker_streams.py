"""Streams through the access service as users run them: no output lost, real
exit codes, long runs without stdin, and half-closing clients."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.integration

ALICE = 61001
IMG = "ds01-test/debian:bookworm"
SHORT_RUNS = int(os.environ.get("DS01_TEST_SHORT_RUNS", "300"))


def test_short_runs_all_print_their_output(env):
    def run(n: int):
        r = env.as_user(ALICE, "run", "--rm", IMG, "echo", str(n), timeout=120)
        return n, r.returncode, r.stdout, r.stderr

    t0 = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(SHORT_RUNS)))
    took = time.monotonic() - t0
    lost = [(n, rc, err) for n, rc, out, err in results if (rc, out) != (0, f"{n}\n")]
    print(f"{SHORT_RUNS} runs in {took:.1f} s, {len(lost)} without their output")
    assert not lost, lost[:5]


def test_long_run_and_exec_without_stdin_keep_output_and_exit_code(env):
    r = env.as_user(ALICE, "run", "-d", "--name", "long1", IMG, "sleep", "1000")
    assert r.returncode == 0, r.stderr

    def long_run():
        return env.as_user(
            ALICE, "run", "--rm", IMG, "sh", "-c", "sleep 65; echo run-done; exit 4", timeout=180
        )

    def long_exec():
        return env.as_user(
            ALICE, "exec", "long1", "sh", "-c", "sleep 62; echo exec-done; exit 3", timeout=180
        )

    with ThreadPoolExecutor(2) as pool:
        run, exe = pool.submit(long_run), pool.submit(long_exec)
        run, exe = run.result(), exe.result()
    assert (run.returncode, run.stdout) == (4, "run-done\n"), run.stderr
    assert (exe.returncode, exe.stdout) == (3, "exec-done\n"), exe.stderr


def test_exec_exit_code_and_stdin_half_close(env):
    r = env.as_user(ALICE, "run", "-d", "--name", "hc1", IMG, "sleep", "1000")
    assert r.returncode == 0, r.stderr
    r = env.as_user(ALICE, "exec", "hc1", "sh", "-c", "echo x; exit 3")
    assert (r.returncode, r.stdout) == (3, "x\n"), r.stderr
    r = env.as_user(ALICE, "exec", "-i", "hc1", "sh", "-c", "cat; echo end", input="in\n")
    assert (r.returncode, r.stdout) == (0, "in\nend\n"), r.stderr


def test_logs_follow_and_events_end_cleanly(env):
    r = env.as_user(
        ALICE, "run", "-d", "--name", "lf1", IMG, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 1; done"
    )
    assert r.returncode == 0, r.stderr
    r = env.as_user(ALICE, "logs", "-f", "lf1", timeout=30)
    assert (r.returncode, r.stdout) == (0, "1\n2\n3\n"), r.stderr
    r = env.as_user(
        ALICE, "events", "--since", "0", "--until", str(int(time.time()) + 1), timeout=30
    )
    assert r.returncode == 0 and "lf1" in r.stdout, r.stderr
