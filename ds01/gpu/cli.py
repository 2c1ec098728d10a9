"""``ds01 gpu ...``: GPU status and queue for everyone, admin actions, the probe
and the reconciler.

Everyone:    ds01 gpu status [--json]          every unit: state, holder, since, use
             ds01 gpu queue [--json]           who waits for what
             ds01 gpu queue join [--kind K]    wait for a unit (runs itself via sudo)
             ds01 gpu queue leave [--kind K | --all]
             ds01 gpu notice                   what to tell you at login (quiet if nothing)
             ds01 gpu probe [--json]           the GPU layout as this host sees it
Admin:       ds01 gpu release UNIT             take a unit back from its holder now
             ds01 gpu drain UNIT [--undo]      take a unit out of the pool (or put it back)
             ds01 gpu layout plan [--json]     what `apply` would change, which units vanish
             ds01 gpu layout apply [--boot]    re-partition the GPUs as gpu.layout asks
             ds01 gpu layout resume            cancel: put back what an apply left drained
Service:     ds01 gpu reconcile                one reconciler + idle reaper pass (root)

The allocator's database is root's; ordinary users read the status snapshot
written beside it after every change. Joining and leaving the queue are the
only actions a user may run through sudo (/etc/sudoers.d/ds01-gpu-queue).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
import time

from ds01.config import DEFAULT_POLICY_PATH, Policy
from ds01.gpu.allocator import Allocator, GpuError, when
from ds01.gpu.layout import FULL_GPU, PROFILE_RE
from ds01.gpu.snapshot import readings, readings_path, snapshot_path, write_snapshot

DS01 = "/usr/local/bin/ds01"  # the path /etc/sudoers.d/ds01-gpu-queue names


def register(sub: argparse._SubParsersAction) -> None:
    gpu = sub.add_parser("gpu", help="GPU status, queue and allocator administration")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--policy", default=None, help=f"policy file (default {DEFAULT_POLICY_PATH})"
    )
    gsub = gpu.add_subparsers(dest="gpu_command", metavar="ACTION", required=True)

    p = gsub.add_parser(
        "status",
        parents=[common],
        help="every GPU unit: state, holder, since, utilisation; the queue",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    q = gsub.add_parser("queue", parents=[common], help="the GPU queue; join or leave it")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_queue)
    qsub = q.add_subparsers(dest="queue_command", metavar="ACTION")
    j = qsub.add_parser(
        "join", parents=[common], help="wait for a unit; it is reserved for you when one is free"
    )
    j.add_argument(
        "--kind",
        type=_kind,
        default=None,
        help="'gpu' for a whole GPU or a MIG profile such as 1g.10gb (default: any)",
    )
    j.set_defaults(func=cmd_queue_join)
    lv = qsub.add_parser("leave", parents=[common], help="stop waiting")
    which = lv.add_mutually_exclusive_group()
    which.add_argument("--kind", type=_kind, default=None)
    which.add_argument("--all", action="store_true")
    lv.set_defaults(func=cmd_queue_leave)

    n = gsub.add_parser(
        "notice", parents=[common], help="your GPU reservations, queue places and warnings"
    )
    n.add_argument(
        "--login",
        action="store_true",
        help="as at login: print nothing when there is nothing to report",
    )
    n.set_defaults(func=cmd_notice)

    pr = gsub.add_parser("probe", parents=[common], help="the GPU/MIG layout of this host")
    pr.add_argument("--json", action="store_true")
    pr.add_argument(
        "--backend",
        choices=["auto", "nvml", "simulated"],
        default=None,
        help="default: the policy's gpu.backend",
    )
    pr.set_defaults(func=cmd_probe)

    r = gsub.add_parser(
        "release", parents=[common], help="(admin) take a unit back from its holder now"
    )
    r.add_argument("unit", help="GPU-... or MIG-... uuid (ds01 gpu status)")
    r.set_defaults(func=cmd_release)
    d = gsub.add_parser(
        "drain", parents=[common], help="(admin) take a unit out of the pool, or --undo"
    )
    d.add_argument("unit")
    d.add_argument("--undo", action="store_true")
    d.set_defaults(func=cmd_drain)

    lay = gsub.add_parser(
        "layout", parents=[common], help="(admin) the MIG layout the policy asks for (gpu.layout)"
    )
    lsub = lay.add_subparsers(dest="layout_command", metavar="ACTION", required=True)
    lp = lsub.add_parser(
        "plan", parents=[common], help="what apply would change; which units vanish, who holds them"
    )
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(func=cmd_layout_plan)
    la = lsub.add_parser(
        "apply",
        parents=[common],
        help="drain the affected units, re-partition through NVML, resume",
    )
    la.add_argument(
        "--boot",
        action="store_true",
        help="at boot (ds01-gpu-layout.service): holds from before the reboot do not block",
    )
    la.set_defaults(func=cmd_layout_apply)
    lr = lsub.add_parser(
        "resume", parents=[common], help="put back the GPUs an apply left drained (cancel)"
    )
    lr.set_defaults(func=cmd_layout_resume)

    rc = gsub.add_parser(
        "reconcile", parents=[common], help="(service) repair state and reap idle containers once"
    )
    rc.set_defaults(func=cmd_reconcile)


def _kind(value: str) -> str:
    if value != FULL_GPU and not PROFILE_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a kind: use 'gpu' or a MIG profile such as '1g.10gb'"
        )
    return value


# --------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------


def _policy(args) -> Policy:
    from ds01.config_cli import load_or_exit

    return load_or_exit(args.policy or DEFAULT_POLICY_PATH)


def _fail(message: str, code: int = 1) -> int:
    print(f"ds01 gpu: {message}", file=sys.stderr)
    return code


def _caller() -> str:
    """The user a command acts for: the sudo caller when run through sudo."""
    if os.geteuid() == 0 and os.environ.get("SUDO_UID"):
        return pwd.getpwuid(int(os.environ["SUDO_UID"])).pw_name
    return pwd.getpwuid(os.getuid()).pw_name


def _require_admin() -> None:
    if os.geteuid() != 0:
        raise SystemExit(_fail("this is an admin command: run it with sudo", 2))


def _snapshot(policy: Policy) -> dict | None:
    """The current state: live from the database as root, else the snapshot."""
    if os.geteuid() == 0:
        alloc = Allocator(policy)
        try:
            return alloc.snapshot()
        finally:
            alloc.close()
    try:
        with open(snapshot_path(policy)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _layout_units(policy: Policy) -> dict[str, dict]:
    """Live utilisation and memory per unit (NVML needs no privileges)."""
    from ds01.gpu.backend import backend_for

    return {
        uuid: {
            "utilization": d.utilization,
            "memory_used": d.memory_used,
            "memory_total": d.memory_total,
            "processes": None if d.processes is None else len(d.processes),
        }
        for uuid, d in backend_for(policy).read().devices_by_unit().items()
    }


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024**3:.0f}"


# --------------------------------------------------------------------------
# Everyone
# --------------------------------------------------------------------------


def cmd_status(args) -> int:
    policy = _policy(args)
    snap = _snapshot(policy)
    if snap is None:
        return _fail(
            "no GPU state yet: the allocator has not run on this host (is the "
            "ds01-gpu-reconcile timer active?)"
        )
    live = _layout_units(policy)
    for u in snap["units"]:
        u.update(
            live.get(
                u["uuid"],
                {"utilization": None, "memory_used": None, "memory_total": None, "processes": None},
            )
        )
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
        return 0
    print(
        f"{'GPU':<4}{'KIND':<9}{'GPU-EQ':>7}  {'STATE':<10}{'USER':<22}{'CONTAINER':<22}"
        f"{'SINCE':<22}{'UTIL':>5}{'MEM GiB':>10}  UNIT"
    )
    for u in snap["units"]:
        since = u["since"]
        note = ""
        if u["state"] == "held":
            note = f" (until {when(u['release_at'])})"
        elif u["state"] == "reserved":
            note = f" (for {u['reserved_for']} until {when(u['reserved_until'])})"
        util = "-" if u["utilization"] is None else f"{u['utilization']}%"
        mem = f"{_gib(u['memory_used'])}/{_gib(u['memory_total'])}"
        print(
            f"{u['gpu']:<4}{u['kind']:<9}{u['weight']:>7.3f}  {u['state']:<10}"
            f"{(u['user'] or '-'):<22}{(u['container'] or '-'):<22}{when(since):<22}"
            f"{util:>5}{mem:>10}  {u['uuid']}{note}"
        )
    free = sum(1 for u in snap["units"] if u["state"] in ("free", "assigned"))
    print(f"\n{free} of {len(snap['units'])} units free; as of {when(snap['at'])}")
    _print_queue(snap["queue"])
    return 0


def _print_queue(queue: list[dict]) -> None:
    if not queue:
        print("GPU queue: empty (join it with `ds01 gpu queue join [--kind KIND]`)")
        return
    print("GPU queue (highest role priority first, then arrival):")
    for e in queue:
        what = (
            f"reserved {e['unit']} until {when(e['reserved_until'])}"
            if e["state"] == "reserved"
            else f"waiting since {when(e['since'])}"
        )
        print(
            f"  {e['position']:>3}. {e['user']:<22} {e['role']:<11} {e['kind'] or 'any':<9} {what}"
        )


def cmd_queue(args) -> int:
    policy = _policy(args)
    snap = _snapshot(policy)
    queue = snap["queue"] if snap else []
    if args.json:
        print(json.dumps(queue, indent=2, sort_keys=True))
    else:
        _print_queue(queue)
    return 0


def _as_root_for_user(args, argv: list[str]) -> tuple[Policy, str, str] | int:
    """Queue changes need root: re-run through sudo (the sudoers rule allows
    exactly these), then act for the sudo caller with their role."""
    if os.geteuid() != 0:
        os.execvp("sudo", ["sudo", "-n", DS01, "gpu", "queue", *argv])
    if os.environ.get("SUDO_UID") and args.policy:
        return _fail("--policy cannot be used through sudo", 2)
    policy = _policy(args)
    user = _caller()
    try:
        from ds01.identity.local import role_of
    except ImportError:
        return _fail("the identity module (ds01.identity.local) is not installed")
    role = role_of(user, policy)
    if role is None:
        return _fail(f"{user} has no DS01 role; ask the admin")
    return policy, user, role


def cmd_queue_join(args) -> int:
    got = _as_root_for_user(args, ["join"] + (["--kind", args.kind] if args.kind else []))
    if isinstance(got, int):
        return got
    policy, user, role = got
    alloc = Allocator(policy)
    try:
        e = alloc.enqueue(user, role, args.kind)
    except GpuError as err:
        return _fail(err.message)
    finally:
        alloc.close()
    if e.state == "reserved":
        print(
            f"A {e.kind or 'GPU unit'} ({e.unit}) is reserved for you until "
            f"{when(e.reserved_until)}: create and start your container before then."
        )
    else:
        print(
            f"You are number {e.position} in the queue for {e.kind or 'any unit'}. When one is "
            f"free it is reserved for you for {policy.gpu.queue_reservation // 60} minutes; "
            "you will be told at login and in `ds01 gpu queue`."
        )
    return 0


def cmd_queue_leave(args) -> int:
    argv = (
        ["leave"] + (["--all"] if args.all else []) + (["--kind", args.kind] if args.kind else [])
    )
    got = _as_root_for_user(args, argv)
    if isinstance(got, int):
        return got
    policy, user, _ = got
    alloc = Allocator(policy)
    try:
        n = alloc.leave(user, args.kind, any_kind=args.all)
    finally:
        alloc.close()
    print(f"left {n} queue entr{'y' if n == 1 else 'ies'}")
    return 0


def cmd_notice(args) -> int:
    """Login notice: never fails. With nothing to say it is silent at login
    (``--login``) or into a pipe, and says so when run by hand in a terminal."""
    try:
        policy = _policy(args)
        user = _caller()
        snap = _snapshot(policy) or {"queue": [], "warnings": []}
    except (SystemExit, Exception):  # a login must never break on this
        return 0
    for e in snap["queue"]:
        if e["user"] != user:
            continue
        if e["state"] == "reserved":
            print(
                f"DS01 GPU: a {e['kind'] or 'GPU unit'} ({e['unit']}) is reserved for you until "
                f"{when(e['reserved_until'])}: create and start a container before then."
            )
        else:
            print(
                f"DS01 GPU: you are number {e['position']} in the queue for "
                f"{e['kind'] or 'any unit'}."
            )
    said = any(e["user"] == user for e in snap["queue"])
    for w in snap.get("warnings", []):
        if w["user"] == user:
            print(f"DS01 GPU: {w['message']}")
            said = True
    if not said and not args.login and sys.stdout.isatty():
        print(
            f"DS01 GPU: nothing to report for {user}: no unit reserved for you, no place in "
            "the queue, no warning (`ds01 gpu status` shows every unit)."
        )
    return 0


def cmd_probe(args) -> int:
    from ds01.gpu.backend import backend_for
    from ds01.gpu.nvml import NvmlBackend

    if args.backend == "nvml":
        layout = NvmlBackend().read()  # needs no policy: the fact runs this on a bare host
    else:
        layout = backend_for(_policy(args), args.backend).read()
    if args.json:
        print(json.dumps(layout.to_json(), sort_keys=True))
        return 0
    if not layout.gpus:
        print(f"no GPUs ({layout.error or 'none found'})")
        return 0
    print(f"backend {layout.backend}, driver {layout.driver or '-'}")
    for g in layout.gpus:
        mig = {None: "no MIG", True: "MIG on", False: "MIG off"}[g.mig_current]
        if g.mig_pending is not None and g.mig_pending != g.mig_current:
            mig += " (change pending a GPU reset)"
        print(f"GPU {g.index} {g.name} {_gib(g.memory_total)} GiB, {mig}, {g.uuid}")
        for i in g.instances:
            print(f"    {i.profile:<10} slices {i.slices}/{g.slices}  {i.uuid}")
    return 0


# --------------------------------------------------------------------------
# Admin and service
# --------------------------------------------------------------------------


def cmd_release(args) -> int:
    _require_admin()
    alloc = Allocator(_policy(args))
    try:
        holder = alloc.admin_release(args.unit, by=_caller())
    except GpuError as err:
        return _fail(err.message)
    finally:
        alloc.close()
    if holder is None:
        print(f"{args.unit} was not held by anyone")
    else:
        print(
            f"{args.unit} taken back from container {holder}; the container still runs and "
            "can use the device until it is stopped: stop it if it must not"
        )
    return 0


def cmd_drain(args) -> int:
    _require_admin()
    alloc = Allocator(_policy(args))
    try:
        alloc.drain(args.unit, by=_caller(), drained=not args.undo)
    except GpuError as err:
        return _fail(err.message)
    finally:
        alloc.close()
    print(f"{args.unit} {'is back in the pool' if args.undo else 'is out of the pool'}")
    return 0


def cmd_layout_plan(args) -> int:
    from ds01.gpu.backend import backend_for
    from ds01.gpu.repartition import describe_plan, plan

    _require_admin()
    policy = _policy(args)
    layout = backend_for(policy).read()
    alloc = Allocator(policy)
    try:
        plans = plan(policy, layout, alloc.status(), alloc.layout_drains())
    finally:
        alloc.close()
    data = {"at": time.time(), "backend": layout.backend, "gpus": [p.to_json() for p in plans]}
    _keep_last_plan(policy, data)
    if args.json:
        print(json.dumps(data))
    else:
        for line in describe_plan(plans):
            print(line)
        if any(p.changes and not p.problem for p in plans):
            print("apply it with: sudo ds01 gpu layout apply")
    return 0


def _keep_last_plan(policy: Policy, data: dict) -> None:
    """The last plan beside the allocator's database (root's): what the
    converge saw, for the admin and the health checks."""
    from ds01.gpu.repartition import last_plan_path

    path = last_plan_path(policy)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as e:
        print(f"ds01 gpu: the plan was not kept in {path}: {e}", file=sys.stderr)


def cmd_layout_apply(args) -> int:
    from ds01.gpu.backend import backend_for
    from ds01.gpu.mig import MigFailed, NvmlPartitioner
    from ds01.gpu.repartition import LayoutRefused, apply

    _require_admin()
    policy = _policy(args)
    backend = backend_for(policy)
    if backend.read().backend != "nvml":
        if args.boot:
            print("no NVIDIA GPUs here (simulated backend): nothing to re-partition")
            return 0
        return _fail(
            "only real GPUs are re-partitioned; the simulated backend's layout is "
            "gpu.simulated in the policy (edit it there)",
            2,
        )
    alloc = Allocator(policy)
    try:
        done = apply(alloc, backend.read, NvmlPartitioner(), _caller(), boot=args.boot)
    except (LayoutRefused, MigFailed) as err:
        return _fail(str(err))
    finally:
        alloc.close()
    for p in done:
        print(f"GPU {p.index} re-partitioned and back in the pool")
    return 0


def cmd_layout_resume(args) -> int:
    _require_admin()
    alloc = Allocator(_policy(args))
    try:
        drained = alloc.layout_drains()
        alloc.resume_gpus(sorted(drained))
    finally:
        alloc.close()
    if not drained:
        print("no GPU was left drained by a layout apply")
    for index, by in sorted(drained.items()):
        print(f"GPU {index} back in the pool (drained by {by})")
    return 0


def _containers(policy: Policy) -> tuple[object | None, str]:
    """The containers as docker lists them, and why they are missing."""
    from ds01.gpu.containers import DockerContainers

    try:
        return DockerContainers(policy.docker.real_socket), ""
    except Exception as e:  # dockerd down: holds and the queue are still kept
        return None, f"docker is not reachable at {policy.docker.real_socket}: {e}"


def cmd_reconcile(args) -> int:
    from ds01.gpu.backend import backend_for
    from ds01.gpu.reconciler import reconcile

    _require_admin()
    policy = _policy(args)
    alloc = Allocator(policy)
    started = time.monotonic()
    try:
        containers, why = _containers(policy)
        layout = backend_for(policy).read()
        report = reconcile(
            alloc, containers, layout, lambda user, msg: print(f"notice to {user}: {msg}")
        )
        try:
            with alloc.store.locked():
                write_snapshot(readings_path(policy), readings(layout, time.time()))
        except OSError as e:  # the pass is done; the readings only go stale
            print(f"GPU readings not written: {e}", file=sys.stderr)
    finally:
        alloc.close()
    for line in report.lines():
        print(line)
    print(
        f"reconciled in {time.monotonic() - started:.2f}s"
        + ("" if containers else f" without containers: {why}")
    )
    return 0
