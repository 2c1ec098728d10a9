"""Added latency of the DS01 docker service, and `docker ps` with 200 containers.

    sudo python3 tests/bench/bench_proxy.py [--calls 500] [--containers 200]

Starts a private dockerd and the service (tests/integration/docker_env.py),
then times the same requests on the raw socket and through the service, as
an ordinary user (the service sees a student). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml  # noqa: E402
from docker_env import IMAGE, Env, test_policy_text  # noqa: E402


class Client:
    """A keep-alive HTTP/1.1 client on a unix socket (what docker's SDK does)."""

    def __init__(self, path: str):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def get(self, path: str, method: str = "GET", body: bytes | None = None) -> int:
        head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.s.sendall(head.encode() + b"\r\n" + (body or b""))
        status = int(self.f.readline().split()[1])
        length, chunked = None, False
        while (line := self.f.readline()) != b"\r\n":
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding" and "chunked" in v:
                chunked = True
        if chunked:
            while (n := int(self.f.readline(), 16)) != 0:
                self.f.read(n + 2)
            self.f.readline()
        elif length:
            self.f.read(length)
        return status


def timings(sock: str, path: str, n: int, method="GET", body=None, ok=200) -> list[float]:
    c = Client(sock)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        assert c.get(path, method, body) == ok
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--containers", type=int, default=200)
    args = ap.parse_args()
    data = yaml.safe_load(test_policy_text())
    data["roles"]["student"]["lifecycle"]["max_containers"] = None  # the create bench makes many
    env = Env(yaml.safe_dump(data), gpu=False)
    try:
        alice = env.callers[61001]
        env.callers[0] = alice  # this process is root: let the service see a student
        raw, svc = str(env.dockerd.sock), env.sock
        cid = env.dockerd.cli("create", "--label", f"ds01.user={alice.name}", IMAGE, "true"
                              ).stdout.strip()
        print(f"{'request':<28} {'raw p50':>8} {'raw p99':>8} {'svc p50':>8} {'svc p99':>8}"
              f" {'added p50':>9}   (ms, {args.calls} calls, keep-alive)")
        for label, path in (("GET /_ping", "/_ping"),
                            ("GET /containers/json", "/v1.41/containers/json?all=1"),
                            ("GET /containers/ID/json", f"/v1.41/containers/{cid}/json")):
            timings(raw, path, 20), timings(svc, path, 20)  # warm up
            r, s = timings(raw, path, args.calls), timings(svc, path, args.calls)
            print(f"{label:<28} {pct(r, 50):8.2f} {pct(r, 99):8.2f} {pct(s, 50):8.2f} "
                  f"{pct(s, 99):8.2f} {pct(s, 50) - pct(r, 50):9.2f}")
        # create: what a user sends (the service adds labels, limits, the slice)
        body = json.dumps({"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Memory": 2**27}})
        n = max(10, args.calls // 5)
        r = timings(raw, "/v1.41/containers/create", n, "POST", body.encode(), 201)
        s = timings(svc, "/v1.41/containers/create", n, "POST", body.encode(), 201)
        print(f"{'POST /containers/create':<28} {pct(r, 50):8.2f} {pct(r, 99):8.2f} "
              f"{pct(s, 50):8.2f} {pct(s, 99):8.2f} {pct(s, 50) - pct(r, 50):9.2f}   ({n} calls)")
        env.dockerd.cli("container", "prune", "-f")

        t = time.perf_counter()
        for i in range(args.containers - 1):
            env.dockerd.cli("create", "--name", f"bench{i}", "--label",
                            f"ds01.user={alice.name}", IMAGE, "true")
        made = time.perf_counter() - t
        other = env.dockerd.cli("create", "--label", "ds01.user=someone-else", IMAGE, "true")
        assert other.returncode == 0

        def ps(host: str) -> tuple[float, int]:
            t = time.perf_counter()
            out = subprocess.run(["docker", "-H", f"unix://{host}", "ps", "-a", "--format",
                                  "{{.ID}}"], capture_output=True, text=True, check=True).stdout
            return (time.perf_counter() - t) * 1000, len(out.split())

        ps(raw), ps(svc)
        r = [ps(raw) for _ in range(10)]
        s = [ps(svc) for _ in range(10)]
        print(f"\n`docker ps -a` with {args.containers} containers of the user (+1 of another; "
              f"created in {made:.0f}s), median of 10 runs:")
        print(f"  raw socket     {statistics.median(x for x, _ in r):7.1f} ms  "
              f"({r[0][1]} listed)")
        print(f"  DS01 service   {statistics.median(x for x, _ in s):7.1f} ms  "
              f"({s[0][1]} listed: the user's own only)")
        print(json.dumps({"calls": args.calls, "containers": args.containers}))
    finally:
        env.close()


if __name__ == "__main__":
    main()
