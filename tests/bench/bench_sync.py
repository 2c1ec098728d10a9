"""Figures for the identity sync (run on demand; prints, asserts nothing about time).

    python3 tests/bench/bench_sync.py [--users 10000] [--ad-dir DIR]

1. Classification + plan + apply of an N-user directory (synthetic, in memory;
   membership commands recorded, state and log written to a temp dir).
2. With --ad-dir (a DC from tests/integration/samba_ad.py that is up): users
   read per second from Samba AD, over StartTLS, page size 500.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ds01 import hooks  # noqa: E402
from ds01.config import parse_policy  # noqa: E402
from ds01.hooks import LocalUser  # noqa: E402
from ds01.identity import directory  # noqa: E402
from ds01.identity.model import DirectoryUser, DirectoryView  # noqa: E402
from ds01.identity.sync import ChangeLog, State, apply, membership_commands, plan  # noqa: E402


def policy(tmp: Path, **directory_changes):
    data = yaml.safe_load((REPO / "config/resource-allocation.yaml").read_text())
    data["identity"]["sync"].update(log_file=str(tmp / "sync.log"), state_file=str(tmp / "s.json"))
    data["identity"]["directory"].update(directory_changes)
    return parse_policy(yaml.safe_dump(data), "bench-policy.yaml")


def synthetic(n: int) -> DirectoryView:
    users = []
    for i in range(n):
        if i % 5 == 0:
            users.append(DirectoryUser(f"r.user{chr(97 + i % 26)}x{i}", f"CN=r{i}",
                                       member_of=("PhD-Group",)))  # fmt: skip
        else:
            users.append(DirectoryUser(f"{300000 + i}", f"CN={i}", disabled=i % 97 == 0))
    return DirectoryView(users=tuple(users), group_parents={"PhD-Group": ("DS01-Researchers",)})


def bench_sync(n: int) -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        p = policy(tmp)
        view = synthetic(n)
        local = {f"{u.account}@example.lan" for u in view.users}
        t0 = time.perf_counter()
        first = plan(p, view, None, {}, local)
        t1 = time.perf_counter()
        calls: list[list[str]] = []
        hooks.handlers = lambda: []  # the hooks' own cost is theirs (homes: mkdir + chown)
        apply(first, p, State(), ChangeLog(str(tmp / "sync.log"), "bench"), run=calls.append,
              user_of=lambda name, role: LocalUser(name, 1, 1, f"/home/{name}", role))  # fmt: skip
        t2 = time.perf_counter()
        current = {g: set(m) for g, m in first.desired.items()}
        again = plan(p, view, None, current, local, State.load(str(tmp / "s.json")).known, n)
        t3 = time.perf_counter()
        more = synthetic(n + 1)
        local.add(f"{more.users[-1].account}@example.lan")
        change = plan(p, more, None, current, local, baseline=n)
        print(f"sync of {n} directory users (classify + plan): {t1 - t0:.3f} s "
              f"({n / (t1 - t0):,.0f} users/s)")  # fmt: skip
        print(f"  apply (commands recorded, {len(first.new_users)} new users logged, state "
              f"written): {t2 - t1:.3f} s")  # fmt: skip
        print(f"  second sync, nothing to do: {t3 - t2:.3f} s, "
              f"{len(membership_commands(again))} commands")  # fmt: skip
        print(f"  first sync: {len(membership_commands(first))} remote commands for "
              f"{sum(len(m) for m in first.desired.values())} memberships")  # fmt: skip
        print(f"  one new user: {len(membership_commands(change))} commands "
              f"({', '.join(c[0] + ' ' + c[-1] for c in membership_commands(change))})")


def bench_read(ad: Path, rounds: int = 3) -> None:
    sys.path.insert(0, str(REPO / "tests/integration"))
    import samba_ad

    with tempfile.TemporaryDirectory() as t:
        p = policy(Path(t), uri=samba_ad.uri(ad), start_tls=True, ca_file=str(ad / "ca.pem"),
                   bind_dn=samba_ad.READER_DN, bind_password_file=str(ad / "bind.secret"),
                   user_base_dn=f"OU=People,{samba_ad.BASE}",
                   group_base_dn=f"OU=Groups,{samba_ad.BASE}", page_size=500)  # fmt: skip
        best = None
        for _ in range(rounds):
            t0 = time.perf_counter()
            n = len(directory.read(p.identity.directory).users)
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
        print(f"Samba AD read: {n} users in {best:.2f} s = {n / best:,.0f} users/s "
              f"(StartTLS, page 500, best of {rounds})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--ad-dir", type=Path)
    a = ap.parse_args()
    bench_sync(a.users)
    if a.ad_dir:
        bench_read(a.ad_dir)


if __name__ == "__main__":
    main()
