"""``ds01 docker serve`` (the access service), the user commands ``ds01
container create|start|stop|ls|rm`` (thin over the Docker API, through the
DS01 docker service like any other client) and ``ds01 images prune`` (cron)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ds01.config_cli import add_policy_option
from ds01.names import DOCKER_USERS_GROUP


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_policy_option(common)

    d = sub.add_parser("docker", help="the DS01 docker access service")
    dsub = d.add_subparsers(dest="docker_command", metavar="ACTION", required=True)
    p = dsub.add_parser("serve", parents=[common], help="run the access service (systemd does)")
    p.add_argument("--socket", help="listen here instead of docker.user_socket")
    p.add_argument("--group", default=DOCKER_USERS_GROUP, help="group that may connect")
    p.set_defaults(func=cmd_serve)
    p = dsub.add_parser(
        "cleanup",
        parents=[common],
        help="remove stopped containers past their role's lifecycle.remove_stopped_after (cron)",
    )
    p.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    p.set_defaults(func=cmd_cleanup)

    c = sub.add_parser("container", help="your containers: create, start, stop, list, remove")
    csub = c.add_subparsers(dest="container_command", metavar="ACTION", required=True)
    p = csub.add_parser("create", help="create a container (with a GPU if asked)")
    p.add_argument("name")
    p.add_argument("--image", required=True, help="image to run, e.g. one you built")
    p.add_argument(
        "--gpu",
        nargs="?",
        const="any",
        metavar="KIND",
        help="ask for a GPU unit: any (default), 'gpu' for a whole GPU, or a MIG "
        "profile such as 1g.5gb",
    )
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="mount this folder (in your home or a shared area) at /workspace",
    )
    p.add_argument(
        "--cmd",
        metavar="COMMAND",
        help="what it runs, e.g. 'python train.py' "
        "(default: sleep infinity, for docker exec and Dev Containers)",
    )
    p.set_defaults(func=cmd_create)
    for name, helptext in (
        ("start", "start (the GPU is reserved for it while it runs)"),
        ("stop", "stop (its GPU is released after your role's hold time)"),
        ("rm", "remove (its GPU assignment is forgotten)"),
    ):
        p = csub.add_parser(name, help=helptext)
        p.add_argument("names", nargs="+")
        p.set_defaults(func=cmd_action, action=name)
    p = csub.add_parser("ls", help="your containers, their state and GPU")
    p.set_defaults(func=cmd_ls)

    i = sub.add_parser("images", help="image hygiene (admins)")
    isub = i.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    p = isub.add_parser(
        "prune", parents=[common], help="remove images unused for docker.image_prune.unused_for"
    )
    p.add_argument("--dry-run", action="store_true", help="list, remove nothing")
    p.set_defaults(func=cmd_prune)


def _policy(path: str):
    from ds01.config_cli import load_or_exit

    return load_or_exit(path)


def cmd_serve(args: argparse.Namespace) -> int:
    from ds01.docker.gpu import GpuGlue
    from ds01.docker.service import serve

    policy = _policy(args.policy)
    serve(policy, socket_path=args.socket, group=args.group, gpu=GpuGlue(policy))
    return 0


def _client():
    import docker

    return docker.from_env(timeout=120)  # DOCKER_HOST: the DS01 service (profile.d, wrapper)


def _fail(e: Exception) -> int:
    print(f"ds01: {getattr(e, 'explanation', None) or e}", file=sys.stderr)
    return 1


def cmd_create(args: argparse.Namespace) -> int:
    import shlex

    import docker
    from docker.types import DeviceRequest, Mount

    from ds01.docker.policy import GPU

    kw: dict = {
        "name": args.name,
        "command": shlex.split(args.cmd or "sleep infinity"),
        "detach": True,
    }
    if args.gpu:
        kw["device_requests"] = [
            DeviceRequest(count=1, capabilities=[["gpu"]])
            if args.gpu == "any"
            else DeviceRequest(device_ids=[args.gpu], capabilities=[["gpu"]])
        ]
    if args.workspace:
        kw["mounts"] = [Mount("/workspace", os.path.realpath(args.workspace), type="bind")]
        kw["working_dir"] = "/workspace"
    try:
        c = _client().containers.create(args.image, **kw)
    except docker.errors.DockerException as e:
        return _fail(e)
    gpu = (c.labels or {}).get(GPU)
    print(
        f"created {c.name}"
        + (f" with GPU unit {gpu} (assigned; reserved when it starts)" if gpu else "")
    )
    return 0


def cmd_action(args: argparse.Namespace) -> int:
    import docker

    client, rc = _client(), 0
    for name in args.names:
        try:
            c = client.containers.get(name)
            if args.action == "start":
                c.start()
            elif args.action == "stop":
                c.stop()
            else:
                c.remove()
            print(f"{args.action}: {name}")
        except docker.errors.DockerException as e:
            rc = _fail(e)
    return rc


def cmd_ls(args: argparse.Namespace) -> int:
    import docker

    from ds01.docker.policy import CTYPE, GPU

    try:
        containers = _client().containers.list(all=True)
    except docker.errors.DockerException as e:
        return _fail(e)
    print(f"{'NAME':<24} {'STATE':<10} {'TYPE':<13} {'GPU':<44} IMAGE")
    for c in containers:
        labels = c.labels or {}
        image = (c.image.tags or [c.image.short_id])[0] if c.image else "?"
        print(
            f"{c.name:<24} {c.status:<10} {labels.get(CTYPE, '-'):<13} "
            f"{labels.get(GPU, '-'):<44} {image}"
        )
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import docker

    from ds01.docker.prune import prune

    policy = _policy(args.policy)
    api = docker.APIClient(base_url=f"unix://{policy.docker.real_socket}", timeout=300)
    removals, errors = prune(api, policy, time.time(), dry_run=args.dry_run)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    verb = "would remove" if args.dry_run else "removed"
    for r in removals:
        print(f"{stamp} {verb} {r.image.id[:19]}: {r.reason}")
    for e in errors:
        print(f"{stamp} kept {e}", file=sys.stderr)
    print(f"{stamp} image prune: {len(removals)} image(s) {verb}, {len(errors)} kept on error")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    import docker

    from ds01.docker.cleanup import cleanup

    policy = _policy(args.policy)
    api = docker.APIClient(base_url=f"unix://{policy.docker.real_socket}", timeout=300)
    p, errors = cleanup(api, policy, time.time(), dry_run=args.dry_run)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    verb = "would remove" if args.dry_run else "removed"
    for c, why in p.remove:
        print(f"{stamp} {verb} {c.id[:12]} {why}")
    for user, items in sorted(p.notices.items()):
        print(f"{stamp} told {user}: {', '.join(c.name for c, _ in items)} due within a day")
    for e in errors:
        print(f"{stamp} kept {e}", file=sys.stderr)
    print(f"{stamp} container cleanup: {len(p.remove)} {verb}, {len(errors)} kept on error")
    return 1 if errors else 0
