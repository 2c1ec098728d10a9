"""A private dockerd and the DS01 access service in front of it, for the
integration tests and the benchmark. Needs root and the docker.io package;
images come from mmdebstrap (no registry): the rootfs tarball is cached."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import yaml

from ds01.config import parse_policy
from ds01.docker.policy import Caller
from ds01.docker.service import AccessService

REPO = Path(__file__).resolve().parents[2]
IMAGE = "ds01-test/debian:bookworm"
ROOTFS_CACHE = (
    Path(os.environ.get("DS01_TEST_CACHE", "/var/cache/ds01-test")) / "debian-minbase.tar"
)


def rootfs_tar() -> Path:
    """The cached minbase tarball, built once (under a lock: test runs may share
    the cache) into a name ending in .tar, which is what makes mmdebstrap write
    a tarball rather than a directory."""
    ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOTFS_CACHE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ROOTFS_CACHE.exists():
            tmp = ROOTFS_CACHE.with_name(f"{ROOTFS_CACHE.stem}.part.tar")
            tmp.unlink(missing_ok=True)
            run_checked(["mmdebstrap", "--variant=minbase", "--quiet", "bookworm", str(tmp)])
            if not tarfile.is_tarfile(tmp):
                raise RuntimeError(f"mmdebstrap did not write a tarball at {tmp}")
            tmp.rename(ROOTFS_CACHE)
    return ROOTFS_CACHE


def run_checked(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run that, on failure, raises with the command's own message."""
    r = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if r.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} ... exited {r.returncode}: {(r.stderr or r.stdout).strip()}"
        )
    return r


def test_policy_text(simulated: list[dict] | None = None) -> str:
    """The repository policy with small limits for a 2-CPU host and a fast GPU hold."""
    data = yaml.safe_load((REPO / "config/resource-allocation.yaml").read_text())
    for role in data["roles"].values():
        role["lifecycle"]["gpu_hold_after_stop"] = "0s"
    data["roles"]["student"]["container"].update(
        {"cpus": 1, "memory": "256m", "pids": 256, "shm_size": "64m"}
    )
    data["roles"]["student"]["lifecycle"]["max_containers"] = 6
    data["gpu"]["backend"] = "simulated"
    data["docker"]["shared_images"] = ["ds01-test/*"]  # imported by the raw socket: nobody's
    if simulated is not None:
        data["gpu"]["simulated"] = simulated
    return yaml.safe_dump(data)


class Dockerd:
    def __init__(self, root: Path):
        self.root = root
        self.sock = root / "docker.sock"
        self.log = open(root / "dockerd.log", "w")
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--host",
                f"unix://{self.sock}",
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(root / "exec"),
                "--pidfile",
                str(root / "docker.pid"),
                "--bridge",
                "none",
                "--iptables=false",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while not self.sock.exists() or self.cli("version", check=False).returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"dockerd did not start; see {root}/dockerd.log")
            time.sleep(0.3)

    def cli(self, *args, check=True, input=None):
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        return subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, check=check, input=input
        )

    def inspect(self, ref: str) -> dict:
        return json.loads(self.cli("inspect", ref).stdout)[0]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class ServiceThread:
    """The access service on its own event loop thread."""

    def __init__(self, policy, upstream: str, path: str, callers: dict[int, Caller], gpu=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = AccessService(policy, upstream=upstream, identify=callers.get, gpu=gpu)
        self.path = path
        asyncio.run_coroutine_threadsafe(self.service.start(path, 0o666), self.loop).result(10)
        if gpu is not None:
            self.watch = asyncio.run_coroutine_threadsafe(
                gpu.watch(self.service.upstream, 0.2), self.loop
            )

    def stop(self):
        async def close():
            self.service.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Env:
    """dockerd + service + invented users (uids without accounts: the service's
    identify() is a table, as NSS would be on the server)."""

    def __init__(self, policy_text: str | None = None, gpu: bool = True):
        if os.geteuid() != 0 or not shutil.which("dockerd"):
            raise RuntimeError("needs root and dockerd (apt-get install -y docker.io)")
        self.root = Path(tempfile.mkdtemp(prefix="ds01-dk-", dir="/var/tmp"))
        self.root.chmod(0o755)
        self.policy = parse_policy(policy_text or test_policy_text(), "test-policy.yaml")
        self.dockerd = Dockerd(self.root)
        imported = self.dockerd.cli("import", str(rootfs_tar()), IMAGE, check=False)
        if imported.returncode != 0:
            raise RuntimeError(f"docker import of the test rootfs failed: {imported.stderr.strip()}")
        home = self.root / "home"
        self.callers: dict[int, Caller] = {}
        for uid, name, role in [
            (61001, "123456@example.lan", "student"),
            (61002, "654321@example.lan", "student"),
            (61003, "h.admin", "admin"),
            (61004, "x.guest", None),
        ]:
            h = home / name
            (h / "proj").mkdir(parents=True)
            (h / "proj" / "data.txt").write_text(f"{name}\n")
            for p in (h, h / "proj", h / "proj" / "data.txt"):
                os.chown(p, uid, uid)
            h.chmod(0o700)
            self.callers[uid] = Caller(uid, uid, name, str(h), role, frozenset({str(uid)}))
        self.callers[0] = Caller(0, 0, "root", "/root", None)
        self.glue = None
        if gpu:
            from ds01.docker.gpu import GpuGlue
            from ds01.gpu.allocator import Allocator
            from ds01.gpu.simulated import SimulatedBackend

            db = str(self.root / "gpu.sqlite3")
            self.glue = GpuGlue(
                self.policy,
                lambda: Allocator(self.policy, db, backend=SimulatedBackend(self.policy)),
                device_requests=False,
            )
            self.allocator_db = db
        self.sock = str(self.root / "ds01.sock")
        self.service = ServiceThread(
            self.policy, str(self.dockerd.sock), self.sock, self.callers, self.glue
        )

    def caller(self, uid: int) -> Caller:
        return self.callers[uid]

    def as_user(self, uid: int, *args, input=None, timeout=60):
        """The docker CLI run as ``uid`` against the access service."""
        c = self.callers.get(uid)
        home = c.home if c else str(self.root)
        env = {
            "DOCKER_HOST": f"unix://{self.sock}",
            "HOME": home,
            "PATH": os.environ["PATH"],
            "DOCKER_BUILDKIT": "0",
        }
        return subprocess.run(
            ["docker", *args],
            env=env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            user=uid,
            group=uid,
            cwd=home,
        )

    def python_as(self, uid: int, code: str) -> dict:
        """Run ``code`` with the docker SDK in a child that has become ``uid``;
        ``client`` is connected to the service; the code sets ``result``."""
        import docker

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to the user, talk to the service, report
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                scope = {
                    "docker": docker,
                    "client": docker.DockerClient(base_url=f"unix://{self.sock}"),
                }
                exec(code, scope)
                os.write(w, json.dumps(scope["result"]).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read()
        os.waitpid(pid, 0)
        return json.loads(out)

    def raw_as(self, uid: int, data: bytes, timeout: float = 20.0, shutdown: bool = True) -> bytes:
        """Bytes written on a raw connection to the service as ``uid``, and
        everything it answered until it closed (or ``timeout``)."""
        return self.raw_script_as(uid, [data], timeout, shutdown)

    def raw_script_as(
        self, uid: int, parts: list[bytes], timeout: float = 20.0, shutdown: bool = True
    ) -> bytes:
        import socket

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            out = b""
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(timeout)
                s.connect(self.sock)
                try:
                    for part in parts:
                        s.sendall(part)
                        time.sleep(0.05)
                    if shutdown:
                        s.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    while chunk := s.recv(65536):
                        out += chunk
                except (TimeoutError, ConnectionResetError):
                    pass
            finally:
                os.write(w, out)
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return data

    def ds01_as(self, uid: int, *argv: str) -> tuple[int, str, str]:
        """``ds01 ARGV`` (the CLI, in-process) in a child that has become ``uid``,
        with DOCKER_HOST pointing at the service: (exit code, stdout, stderr)."""
        import contextlib
        import io

        import docker.types  # noqa: F401  (imported as root: the child cannot read root's site-packages)

        import ds01.cli

        ds01.cli.build_parser()  # imports every command module (and their libraries) as root

        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code, out, err = 99, io.StringIO(), io.StringIO()
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.environ["DOCKER_HOST"] = f"unix://{self.sock}"
                from ds01.cli import main

                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = main(list(argv))
            except BaseException:
                import traceback

                err.write(traceback.format_exc())
            finally:
                os.write(w, json.dumps([code, out.getvalue(), err.getvalue()]).encode())
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            data = f.read()
        os.waitpid(pid, 0)
        return tuple(json.loads(data))

    def close(self):
        self.service.stop()
        subprocess.run(
            [
                "sh",
                "-c",
                f"DOCKER_HOST=unix://{self.dockerd.sock} docker rm -f "
                f"$(DOCKER_HOST=unix://{self.dockerd.sock} docker ps -aq) 2>/dev/null",
            ],
            capture_output=True,
        )
        self.dockerd.stop()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
