"""Restores: an admin's (any path, into a target directory) and a user's own
(files of their home, back into their home).

A user's restore goes through one narrow root helper, ``ds01-restore-own``,
which sudo runs for anyone (sudoers names exactly that program). It trusts
only sudo's ``SUDO_UID``; it resolves the requested path, refuses ``..`` and
anything outside the caller's home, restores as root into a private
temporary directory, and then hands the files over as a tar stream to a
``tar`` running *as the user*: whatever the user's symlinks point at, the
writes happen with the user's own permissions. Existing files are kept unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from ds01.backup import restic
from ds01.config import Policy

HELPER = "/opt/ds01/venv/bin/ds01-restore-own"
SNAPSHOT = re.compile(r"^(latest|[0-9a-f]{8,64})$")


class Refused(Exception):
    """The request is not one this helper carries out; the message says why."""


def own_path(requested: str, home: str, cwd: str | None = None) -> str:
    """The absolute path inside ``home`` that ``requested`` names, symlinks
    resolved; refuses ``..`` and anything outside the home."""
    if not requested or "\0" in requested:
        raise Refused("give a path inside your home")
    if ".." in requested.split("/"):
        raise Refused(f"{requested}: '..' is not allowed; give the path inside your home")
    base = cwd if cwd is not None else home
    path = os.path.realpath(os.path.join(base, os.path.expanduser(requested))
                            if not requested.startswith("/") else requested)  # fmt: skip
    home_real = os.path.realpath(home)
    if path != home_real and not path.startswith(home_real + "/"):
        raise Refused(f"{requested}: only files of your home ({home}) can be restored by you")
    rel = os.path.relpath(path, home_real)  # the snapshot holds the home's path as saved
    return home if rel == "." else os.path.join(home, rel)


def check_snapshot(snapshot: str) -> str:
    if not SNAPSHOT.match(snapshot):
        raise Refused(f"{snapshot!r} is not a snapshot id (see ds01 backup snapshots) or 'latest'")
    return snapshot


def restore_to(policy: Policy, snapshot: str, paths: list[str], target: str) -> int:
    """The admin's restore: ``paths`` of ``snapshot`` under ``target`` (full paths kept)."""
    os.makedirs(target, mode=0o700, exist_ok=True)
    proc = subprocess.run(restic.restore_argv(check_snapshot(snapshot), target, paths),
                          env=restic.env(policy))  # fmt: skip
    return proc.returncode


def restore_own(policy: Policy, uid: int, requested: list[str], snapshot: str = "latest",
                overwrite: bool = False, cwd: str | None = None,
                ) -> tuple[int, list[str]]:  # fmt: skip
    """Restore ``requested`` paths of user ``uid``'s home into that home; returns
    (files written, files kept because they exist)."""
    user = pwd.getpwuid(uid)
    if uid == 0:
        raise Refused("root restores with ds01 backup restore --target")
    paths = [own_path(p, user.pw_dir, cwd) for p in requested]
    check_snapshot(snapshot)
    work = tempfile.mkdtemp(prefix="restore-own.", dir=restic.BACKUP_STATE)
    try:
        proc = restic.call(policy, restic.restore_argv(snapshot, work, paths))
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise Refused(f"restic restore failed: {last}")
        root = os.path.join(work, user.pw_dir.lstrip("/"))
        members = _members(root)
        if not members:
            raise Refused("nothing to restore: " + ", ".join(requested) + f" not in {snapshot}")
        kept = [m for m in members if not overwrite and not os.path.isdir(os.path.join(root, m))
                and os.path.lexists(os.path.join(user.pw_dir, m))]  # fmt: skip
        tar = subprocess.Popen(
            ["tar", "-x", "-f", "-", "-C", user.pw_dir, "--no-same-owner",
             "--overwrite" if overwrite else "--skip-old-files"],
            stdin=subprocess.PIPE, user=uid, group=user.pw_gid, extra_groups=[],
            cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": user.pw_dir})  # fmt: skip
        assert tar.stdin is not None
        with tarfile.open(fileobj=tar.stdin, mode="w|", format=tarfile.PAX_FORMAT) as out:
            for m in members:
                info = out.gettarinfo(os.path.join(root, m), arcname=m)
                info.uid, info.gid, info.uname, info.gname = uid, user.pw_gid, "", ""
                if info.isreg():
                    with open(os.path.join(root, m), "rb") as f:
                        out.addfile(info, f)
                else:
                    out.addfile(info)
        tar.stdin.close()
        if tar.wait() != 0:
            raise Refused(f"writing into {user.pw_dir} failed (tar exited {tar.returncode})")
        written = sum(1 for m in members if not os.path.isdir(os.path.join(root, m))) - len(kept)
        return written, kept
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _members(root: str) -> list[str]:
    """Every path under ``root``, relative, parents before children."""
    if not os.path.lexists(root):
        return []
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def helper_main(argv: list[str] | None = None) -> int:
    """``ds01-restore-own [--snapshot ID] [--overwrite] [--cwd DIR] PATH...``, run by sudo."""
    from ds01.config import DEFAULT_POLICY_PATH, load_policy

    p = argparse.ArgumentParser(prog="ds01-restore-own",
                                description="restore files of your own home (through sudo)")
    p.add_argument("--snapshot", default="latest")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--cwd", help="the directory relative paths are read from")
    p.add_argument("paths", nargs="+")
    args = p.parse_args(argv)
    if os.geteuid() != 0 or "SUDO_UID" not in os.environ:
        print("ds01-restore-own: run it as `ds01 backup restore PATH` (through sudo)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        policy = load_policy(DEFAULT_POLICY_PATH)
        written, kept = restore_own(policy, int(os.environ["SUDO_UID"]), args.paths,
                                    args.snapshot, args.overwrite, args.cwd)  # fmt: skip
    except (Refused, KeyError, ValueError) as e:
        print(f"ds01 backup restore: {e}", file=sys.stderr)
        return 1
    print(f"restored {written} file(s) from {args.snapshot}")
    if kept:
        print(f"kept {len(kept)} existing file(s) (add --overwrite to replace them): "
              + ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else ""))  # fmt: skip
    return 0
