"""``ds01 doctor``: the live server checked against the policy, read-only.

Each check is a small function over the policy and a :class:`System` (the
server's state, read through a few narrow calls a test can replace) that
returns results: OK, WARN or FAIL, what it saw, and the fix. The exit code is
the worst result's (0 OK, 1 WARN, 2 FAIL).
"""

from __future__ import annotations

import argparse
import grp
import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass

from ds01.backup import run as backup_run
from ds01.config import Policy
from ds01.config_cli import add_policy_option, load_or_exit
from ds01.names import DOCKER_USERS_GROUP, ROOT_SLICE, role_group, role_slice, user_slice
from ds01.ops import schedule

OK, WARN, FAIL = "OK", "WARN", "FAIL"
RANK = {OK: 0, WARN: 1, FAIL: 2}
REDEPLOY = "converge again: pyinfra inventory.py deploys/all.py"
GRACE = 15 * 60  # a job may start late and run this long before it counts as missed


@dataclass(frozen=True)
class Result:
    check: str
    status: str
    detail: str
    fix: str = ""


class System:
    """What the checks read from the server."""

    def show(self, unit: str, *props: str) -> dict[str, str]:
        args = ["systemctl", "show", unit] + [f"--property={p}" for p in props]
        out = subprocess.run(args, capture_output=True, text=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def stat(self, path: str) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    def getfacl(self, path: str) -> list[str] | None:
        r = subprocess.run(["getfacl", "--absolute-names", "--omit-header", path],
                           capture_output=True, text=True)  # fmt: skip
        return r.stdout.splitlines() if r.returncode == 0 else None

    def repquota(self, filesystem: str) -> dict[str, int] | None:
        """User -> hard block limit (KiB); ``None`` when repquota fails."""
        from ds01.storage.quota import read_usages

        try:
            return {name: u.hard_kib for name, u in read_usages(filesystem).items()}
        except (OSError, subprocess.CalledProcessError, ValueError):
            return None

    def members(self, group: str) -> list[str]:
        try:
            return sorted(grp.getgrnam(group).gr_mem)
        except KeyError:
            return []

    def disk(self, path: str) -> tuple[int, int] | None:
        try:
            u = shutil.disk_usage(path)
        except OSError:
            return None
        return u.used, u.total

    def mtime(self, path: str) -> float | None:
        st = self.stat(path)
        return st.st_mtime if st else None


def check_services(policy: Policy, system: System, now: float) -> list[Result]:
    units = ["cron.service"]
    if system.exists("/etc/systemd/system/ds01-docker.socket"):
        units += ["docker.service", "ds01-docker.socket"]
    units.append(schedule.RECONCILER[1])
    out = []
    for unit in units:
        state = system.show(unit, "ActiveState").get("ActiveState", "unknown")
        out.append(Result("service", OK if state == "active" else FAIL, f"{unit} {state}",
                          f"systemctl start {unit}; journalctl -u {unit}"))  # fmt: skip
    return out


def check_jobs(policy: Policy, system: System, now: float,
               records=None) -> list[Result]:  # fmt: skip
    out = []
    for e in schedule.entries(policy, now, records):
        name = f"job {e.key}"
        if not e.installed:
            out.append(Result(name, FAIL, f"not installed ({e.unit})", REDEPLOY))
        elif e.result == "failed" and e.key != "doctor":  # doctor's own result is this screen
            out.append(Result(name, FAIL, f"last run failed ({_ago(e.last_run, now)})",
                              f"read /var/log/ds01/ and /var/lib/ds01/jobs/{e.key}.json; "
                              f"run it by hand: ds01 job run {e.key} -- {e.command}"))  # fmt: skip
        elif (missed := _missed(e, system, now)) is not None:
            out.append(Result(name, WARN, f"no run since one was due {_ago(missed, now)}",
                              "is cron running? systemctl status cron; grep CRON /var/log/syslog"))
        else:
            out.append(Result(name, OK, f"last {e.result} {_ago(e.last_run, now)}"
                              if e.last_run else "not due yet"))  # fmt: skip
    return out


def _missed(e: schedule.Entry, system: System, now: float) -> float | None:
    """When a run was due that has not happened (since install or the last run)."""
    if e.key == schedule.RECONCILER[0]:
        interval = int(e.schedule.split()[1].rstrip("s"))
        since = e.last_run or system.mtime("/etc/systemd/system/" + e.unit) or now
        return since + interval if now - since > 3 * interval + GRACE else None
    since = max(e.last_run or 0, system.mtime(e.unit) or now)
    due = schedule.next_run(e.schedule, since)
    return due if due + GRACE < now else None


def check_slices(policy: Policy, system: System, now: float) -> list[Result]:
    expected: list[tuple[str, str | None]] = [(ROOT_SLICE, None)]
    for role in policy.roles:
        expected.append((role_slice(role), None))
        for user in system.members(role_group(role)):
            lim = policy.limits_for(role, user).user_slice
            mem = "infinity" if lim.memory_max is None else str(lim.memory_max)
            expected.append((user_slice(role, user), mem))
    out = []
    for unit, mem in expected:
        p = system.show(unit, "LoadState", "ActiveState", "MemoryMax")
        fix = f"{REDEPLOY} (or deploys/slices.py alone)"
        if p.get("LoadState") != "loaded" or p.get("ActiveState") != "active":
            out.append(Result("slice", FAIL, f"{unit} {p.get('LoadState', '?')}/"
                              f"{p.get('ActiveState', '?')}", fix))  # fmt: skip
        elif mem is not None and p.get("MemoryMax") != mem:
            out.append(Result("slice", FAIL, f"{unit} MemoryMax={p.get('MemoryMax')}, "
                              f"policy {mem}", fix))  # fmt: skip
    if not out:
        out.append(Result("slice", OK, f"{len(expected)} slices active with their limits"))
    return out


def check_sockets(policy: Policy, system: System, now: float) -> list[Result]:
    if not system.exists("/etc/systemd/system/ds01-docker.socket"):
        return []
    out = []
    for path, group in ((policy.docker.user_socket, DOCKER_USERS_GROUP),
                        (policy.docker.real_socket, None)):  # fmt: skip
        st = system.stat(path)
        if st is None:
            out.append(Result("socket", FAIL, f"{path} missing", "systemctl restart "
                              "ds01-docker.socket docker.socket"))  # fmt: skip
            continue
        mode = oct(st.st_mode & 0o7777)
        want_gid = _gid(group) if group else None
        bad = mode != "0o660" or (want_gid is not None and st.st_gid != want_gid)
        out.append(Result("socket", FAIL if bad else OK, f"{path} mode {mode[2:]} gid {st.st_gid}"
                          + (f" (policy: 660, group {group})" if bad else ""),
                          REDEPLOY if bad else ""))  # fmt: skip
    return out


def _gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def acl_entries(lines: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """getfacl's lines as (access, default) maps in the storage plan's keys
    (``user:``, ``group:ds01-student``; the mask is left out)."""
    access: dict[str, str] = {}
    default: dict[str, str] = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        target = access
        if line.startswith("default:"):
            target, line = default, line[len("default:"):]
        kind, _, rest = line.partition(":")
        qualifier, _, perms = rest.rpartition(":")
        if kind == "mask":
            continue
        target[f"{kind}:{qualifier}"] = perms
    return access, default


def check_acls(policy: Policy, system: System, now: float) -> list[Result]:
    from ds01.storage.areas import plan

    out, checked = [], 0
    for d in plan(policy):
        lines = system.getfacl(d.path)
        fix = f"{REDEPLOY} (or deploys/storage.py alone)"
        if lines is None:
            out.append(Result("acl", FAIL, f"{d.path} missing", fix))
            continue
        checked += 1
        access, default = acl_entries(lines)
        for label, want, got in (("ACL", d.access, access), ("default ACL", d.default, default)):
            if want != got:
                diff = sorted(f"{k}={got.get(k, '-')} (policy {want.get(k, '-')})"
                              for k in set(want) | set(got) if want.get(k) != got.get(k))
                out.append(Result("acl", FAIL, f"{d.path} {label}: {', '.join(diff)}", fix))
    if not out:
        out.append(Result("acl", OK, f"{checked} directories as declared"))
    return out


def check_quotas(policy: Policy, system: System, now: float) -> list[Result]:
    from ds01.storage.quota import limit_kib

    fs = policy.storage.quota_filesystem
    wanted = {u: limit_kib(policy, r) for r in policy.roles for u in system.members(role_group(r))}
    wanted = {u: k for u, k in wanted.items() if k}
    if not fs or not wanted:
        return []
    got = system.repquota(fs)
    if got is None:
        return [Result("quota", FAIL, f"repquota {fs} failed: quotas off?", "quotaon -v " + fs)]
    bad = [f"{u}: {got.get(u, 0)} KiB (policy {k})" for u, k in sorted(wanted.items())
           if got.get(u, 0) != k]  # fmt: skip
    if bad:
        return [Result("quota", FAIL, "; ".join(bad[:5]), REDEPLOY)]
    return [Result("quota", OK, f"{len(wanted)} users' block limits on {fs} as declared")]


def check_disks(policy: Policy, system: System, now: float) -> list[Result]:
    paths = ["/", policy.identity.home.root, "/var/lib/docker"]
    if policy.storage.quota_filesystem:
        paths.append(policy.storage.quota_filesystem)
    out = []
    for path in dict.fromkeys(paths):
        usage = system.disk(path) if system.exists(path) else None
        if usage is None:
            continue
        pct = 100 * usage[0] / usage[1] if usage[1] else 0
        status = FAIL if pct >= 95 else WARN if pct >= 85 else OK
        fix = "" if status == OK else "ds01 users report; du -xsh under it"
        out.append(Result("disk", status, f"{path} {pct:.0f}% used", fix))
    return out


def check_backup(policy: Policy, system: System, now: float, status=None) -> list[Result]:
    if policy.backup is None:
        return [Result("backup", WARN, "no backup section in the policy: nothing is backed up",
                       "add backup: to the policy (docs/operations.md)")]  # fmt: skip
    status = backup_run.read_status() if status is None else status
    out = []
    b = status.get("backup", {})
    last = b.get("last_success")
    if not last:
        out.append(Result("backup", FAIL, "no successful backup yet", "ds01 backup run"))
    elif now - last > policy.backup.max_age:
        out.append(Result("backup", FAIL, f"last success {_ago(last, now)} (max_age "
                          f"{policy.backup.max_age // 3600}h)",
                          "ds01 backup status; ds01 backup run"))  # fmt: skip
    else:
        out.append(Result("backup", OK, f"last success {_ago(last, now)}, "
                          f"{b.get('files')} files"))  # fmt: skip
    for part in ("check", "drill"):
        if status.get(part, {}).get("last_result") == "failed":
            out.append(Result(f"backup {part}", FAIL, "last run failed",
                              "ds01 backup status; docs/operations.md"))  # fmt: skip
    return out


def check_gpus(policy: Policy, system: System, now: float) -> list[Result]:
    """The allocator's units against the layout the backend (NVML) reads now."""
    from ds01.gpu.backend import backend_for
    from ds01.gpu.store import DB_NAME

    db = os.path.join(policy.gpu.state_dir, DB_NAME)
    if not system.exists(db):
        return [Result("gpu", WARN, "no allocator database yet", "ds01 gpu reconcile")]
    layout = backend_for(policy).read()
    if layout.error:
        return [Result("gpu", FAIL, f"{layout.backend}: {layout.error}", "nvidia-smi; dmesg")]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        known = {r[0] for r in con.execute("SELECT uuid FROM units WHERE present = 1")}
    finally:
        con.close()
    live = {u.uuid for u in layout.units()}
    if known != live:
        return [Result("gpu", FAIL, f"allocator has {len(known - live)} unit(s) {layout.backend} "
                       f"does not, misses {len(live - known)}", "ds01 gpu reconcile")]
    return [Result("gpu", OK, f"{len(live)} units, allocator and {layout.backend} agree")]


CHECKS = (check_services, check_jobs, check_slices, check_sockets, check_acls, check_quotas,
          check_disks, check_backup, check_gpus)  # fmt: skip


def run_checks(policy: Policy, system: System | None = None,
               now: float | None = None) -> list[Result]:  # fmt: skip
    system = system or System()
    now = time.time() if now is None else now
    out = []
    for check in CHECKS:
        try:
            out += check(policy, system, now)
        except Exception as e:  # a broken check is a finding, not a crash of the others
            out.append(Result(check.__name__.removeprefix("check_"), FAIL,
                              f"check failed: {type(e).__name__}: {e}"))  # fmt: skip
    return out


def worst(results: list[Result]) -> int:
    return max((RANK[r.status] for r in results), default=0)


def render(results: list[Result], quiet: bool = False) -> str:
    lines = []
    for r in results:
        if quiet and r.status == OK:
            continue
        lines.append(f"{r.status:<4}  {r.check:<22} {r.detail}")
        if r.fix and r.status != OK:
            lines.append(f"      {'':<22} fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in RANK}
    lines.append(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
    return "\n".join(lines)


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "never"
    s = max(0, int(now - t))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s // n}{unit} ago"
    return f"{s}s ago"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the server against the policy (read-only)")
    add_policy_option(p)
    p.add_argument("--quiet", action="store_true", help="only what is not OK")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from ds01 import events

    policy = load_or_exit(args.policy)
    results = run_checks(policy)
    print(render(results, args.quiet))
    code = worst(results)
    if code:
        events.emit("doctor", result={1: "warn", 2: "fail"}[code],
                    problems=[f"{r.check}: {r.detail}" for r in results if r.status != OK][:20])
    return code


