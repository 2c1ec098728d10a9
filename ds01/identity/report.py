"""``ds01 users report``: who has not been seen for a long time.

Per home under ``identity.home.root``: the owner, their role now, last login
(wtmp and lastlog, and the directory's lastLogonTimestamp when it answers),
the newest modification anywhere under the home, the home's size, the
archived flag, and whether it is a candidate for deletion (no login and no
change for ``identity.report.stale_after``, or archived). The tool never
deletes: the admin does, by hand.

Homes are measured with ``du -s --time`` (one C pass per home, homes in
parallel), which stays fast on trees of millions of files.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ds01.config import Policy
from ds01.identity.classify import plain
from ds01.identity.local import role_of

WTMP = "/var/log/wtmp"
LASTLOG = "/var/log/lastlog"
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii4i20x")  # glibc x86_64 struct utmp, 384 bytes
_LASTLOG = struct.Struct("<i32s256s")  # struct lastlog, 292 bytes
USER_PROCESS = 7


@dataclass
class Row:
    user: str
    role: str | None
    home: str
    size_bytes: int | None
    last_change: float | None  # newest mtime under the home
    last_login: float | None  # wtmp/lastlog on this server
    directory_last_logon: float | None  # AD lastLogonTimestamp
    archived: bool
    idle_days: int | None  # since the latest of login, directory logon and change
    candidate: bool  # for deletion by the admin (never by the tool)


def wtmp_logins(path: str = WTMP) -> dict[str, float]:
    """Latest login time per user name (names as wtmp stores them: up to 32 bytes)."""
    out: dict[str, float] = {}
    try:
        data = Path(path).read_bytes()
    except OSError:
        return out
    for off in range(0, len(data) - _UTMP.size + 1, _UTMP.size):
        rec = _UTMP.unpack_from(data, off)
        if rec[0] != USER_PROCESS:
            continue
        user = rec[4].split(b"\0", 1)[0].decode("utf-8", "replace")
        t = float(rec[9])
        if user and t > out.get(user, 0):
            out[user] = t
    return out


def lastlog_time(uid: int, path: str = LASTLOG) -> float | None:
    try:
        with open(path, "rb") as f:
            f.seek(uid * _LASTLOG.size)
            raw = f.read(_LASTLOG.size)
    except OSError:
        return None
    if len(raw) < _LASTLOG.size:
        return None
    t = _LASTLOG.unpack(raw)[0]
    return float(t) if t > 0 else None


def measure(home: str) -> tuple[int | None, float | None]:
    """(bytes on disk, newest mtime) of a tree, by ``du -s --time`` on one file system."""
    proc = subprocess.run(
        ["du", "-s", "-x", "-B1", "--time", "--time-style=+%s", home],
        capture_output=True, text=True,
    )  # fmt: skip
    line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    parts = line.split("\t")
    if len(parts) < 3:
        return None, None
    return int(parts[0]), float(parts[1])


def _directory_logons(policy: Policy) -> dict[str, float]:
    from ds01.identity.directory import DirectoryError, read

    if not policy.identity.directory.enabled:
        return {}
    try:
        view = read(policy.identity.directory)
    except (DirectoryError, OSError):
        return {}
    return {u.account.casefold(): u.last_logon for u in view.users if u.last_logon}


def build(policy: Policy, now: float | None = None, with_directory: bool = True,
          workers: int = 4) -> list[Row]:  # fmt: skip
    now = now or time.time()
    root = Path(policy.identity.home.root)
    ident = policy.identity
    dom = ident.directory.domain
    archived = {plain(a, dom).casefold() for a in ident.archived}
    logins = wtmp_logins()
    dir_logons = _directory_logons(policy) if with_directory else {}
    homes = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                   and p.name != "lost+found")  # fmt: skip
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(lambda p: measure(str(p)), homes))
    rows = []
    for home, (size, changed) in zip(homes, sizes, strict=True):
        uid = home.stat().st_uid
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = home.name  # owner's account is gone: the home is an orphan
            uid = -1
        login_times = [
            t for t in (logins.get(user[:32]), lastlog_time(uid) if uid >= 0 else None) if t
        ]
        last_login = max(login_times) if login_times else None
        key = plain(user, dom).casefold()
        dl = dir_logons.get(key)
        seen = [t for t in (last_login, dl, changed) if t]
        idle = int((now - max(seen)) // 86400) if seen else None
        is_archived = key in archived
        stale = idle is None or idle * 86400 >= ident.report.stale_after
        rows.append(Row(
            user=user, role=role_of(user, policy), home=str(home), size_bytes=size,
            last_change=changed, last_login=last_login, directory_last_logon=dl,
            archived=is_archived, idle_days=idle, candidate=is_archived or stale,
        ))  # fmt: skip
    return rows


def _day(t: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t)) if t else "-"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return "-"


def _idle(r: Row) -> str:
    return "-" if r.idle_days is None else str(r.idle_days)


def to_text(rows: list[Row], policy: Policy) -> str:
    days = policy.identity.report.stale_after // 86400
    out = [f"{'user':<28} {'role':<10} {'size':>8} {'last login':>10} {'AD logon':>10} "
           f"{'last change':>11} {'idle d':>6}  flags"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (-(r.idle_days or 0), r.user)):
        flags = " ".join(
            f for f, on in (("ARCHIVED", r.archived), ("CANDIDATE", r.candidate)) if on
        )
        out.append(f"{r.user:<28} {r.role or '-':<10} {_size(r.size_bytes):>8} "
                   f"{_day(r.last_login):>10} {_day(r.directory_last_logon):>10} "
                   f"{_day(r.last_change):>11} {_idle(r):>6}  "
                   f"{flags}")  # fmt: skip
    n = sum(r.candidate for r in rows)
    out.append(f"\n{len(rows)} homes; {n} candidate(s) for deletion (idle >= {days} days or "
               "archived). Nothing was deleted: review and delete by hand.")  # fmt: skip
    return "\n".join(out)


def to_json(rows: list[Row]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=1)


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(Row)])
    w.writeheader()
    for r in rows:
        w.writerow(asdict(r))
    return buf.getvalue()


def save(rows: list[Row], policy: Policy) -> list[str]:
    d = Path(policy.identity.report.dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o750)
    stem = d / f"users-{time.strftime('%Y-%m-%d', time.gmtime())}"
    written = []
    for ext, text in (("json", to_json(rows)), ("csv", to_csv(rows))):
        path = f"{stem}.{ext}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        written.append(path)
    return written
