"""The service against the acting side, field by field: generated create
requests (random key spellings, duplicates, forbidden values, the classes of
issue 9) go through the access service as a student; for every one the
daemon accepted, what dockerd stored (read on its raw socket) must equal what
dockerd stores for the body the service decided and sent (nothing the client
wrote reaches the daemon any other way), and must never carry a forbidden
value. A refused request creates nothing."""

from __future__ import annotations

import json
import random
import threading

import pytest
from test_docker_schema import Raw, respelled, stored_container

from ds01.docker import apispec
from ds01.names import user_slice

pytestmark = pytest.mark.integration

ALICE = 61001
IMG = "ds01-test/debian:bookworm"
CORPUS = 240
SEED = 9_2026

# values a student may send, and values the rules must refuse or rewrite
ALLOWED_HOST = {
    "Memory": [64 << 20, 8 << 30],
    "NanoCpus": [500_000_000, 64_000_000_000],
    "PidsLimit": [100, 0, -1, 100_000],
    "ShmSize": [32 << 20],
    "CapDrop": [["NET_RAW"]],
    "CapAdd": [["CHOWN"], []],
    "SecurityOpt": [["no-new-privileges"], []],
    "Ulimits": [[{"Name": "nofile", "Soft": 1024, "Hard": 4096}]],
    "PortBindings": [{"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}],
    "RestartPolicy": [{"Name": "no"}, {"Name": "on-failure", "MaximumRetryCount": 2}],
    "Init": [True],
    "ReadonlyRootfs": [True],
    "Tmpfs": [{"/run": "size=1m"}],
    "Mounts": [
        [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20}}],
        [{"Type": "volume", "Source": "dfv1", "Target": "/v"}],
    ],
    "Binds": [["dfv1:/v2"]],
    "VolumesFrom": [["dfvf:ro"]],
    "NetworkMode": ["none", "bridge", "dfn1", "container:dfvf"],
    "IpcMode": ["private", "shareable"],
    "CgroupParent": ["/"],  # rewritten to the caller's slice
    "LogConfig": [{"Type": "json-file", "Config": {"max-size": "1m"}}],
}
FORBIDDEN_HOST = {
    "Privileged": [True],
    "CapAdd": [["SYS_ADMIN"], "NET_ADMIN"],
    "PidMode": ["host"],
    "IpcMode": ["host"],
    "UsernsMode": ["host"],
    "CgroupnsMode": ["host"],
    "NetworkMode": ["host"],
    "Devices": [[{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n"}]],
    "SecurityOpt": [["apparmor=unconfined"], ["seccomp=unconfined"]],
    "ReadonlyPaths": [[]],
    "MaskedPaths": [[]],
    "Sysctls": [{"kernel.shmmax": "1"}],
    "Binds": [["/:/host"], ["/etc:/e:ro"], ["/run/docker.sock:/s"]],
    "Mounts": [[{"Type": "bind", "Source": "/", "Target": "/host"}]],
    "Runtime": ["kata"],
    "OomKillDisable": [True],
    "OomScoreAdj": [-500],
    "Ulimits": [[{"Name": "rtprio", "Soft": 99, "Hard": 99}]],
    "PortBindings": [{"80/tcp": [{"HostIp": "", "HostPort": "80"}]}],
    "LogConfig": [{"Type": "syslog"}],
}
CONFIG = {
    "User": ["0:0", "root", ""],
    "Env": [["A=1"], ["NVIDIA_VISIBLE_DEVICES=all"]],
    "Labels": [{"k": "v", "ds01.user": "654321@example.lan"}],
    "WorkingDir": ["/w"],
    "Tty": [True],
}


@pytest.fixture(scope="module")
def world(env):
    """alice's volume, network and container that the generated bodies name."""
    for args in (
        ["volume", "create", "dfv1"],
        ["network", "create", "dfn1"],
        ["create", "--name", "dfvf", "--network", "none", "-v", "/data", IMG, "true"],
    ):
        r = env.as_user(ALICE, *args)
        assert r.returncode == 0, r.stderr
    return env


def pick(rng, table, k):
    return {name: rng.choice(table[name]) for name in rng.sample(sorted(table), k)}


def body_of(rng: random.Random) -> tuple[dict, bool]:
    """A create body in random spellings, and whether it carries a forbidden value."""
    host = pick(rng, ALLOWED_HOST, rng.randint(0, 7))
    bad = rng.random() < 0.35
    if bad:
        host |= pick(rng, FORBIDDEN_HOST, rng.randint(1, 2))
    body = {
        "Image": IMG,
        "Cmd": ["true"],
        **pick(rng, CONFIG, rng.randint(0, 3)),
        "HostConfig": host,
    }
    if host.get("NetworkMode") == "dfn1" and rng.random() < 0.5:
        body["NetworkingConfig"] = {"EndpointsConfig": {"dfn1": {"Aliases": ["a1"]}}}
    return respelled(rng, body, apispec.SCHEMAS["ContainerCreate"]), bad


def with_duplicate(rng: random.Random, body: dict) -> dict:
    """The same body with one key given twice, in another spelling (as raw JSON)."""
    key = rng.choice(sorted(body))
    return {"raw": json.dumps(body)[:-1] + f', "{key.swapcase()}": {json.dumps(body[key])}}}'}


class Recorder:
    """The bodies the service wrote to the daemon, in order."""

    def __init__(self, service):
        self.sent: list[bytes] = []
        self.lock = threading.Lock()
        inner = service.upstream_head

        def upstream_head(parsed, d, head, body):
            if body is not None:
                with self.lock:
                    self.sent.append(body)
            return inner(parsed, d, head, body)

        service.upstream_head = upstream_head


def containers(raw: Raw) -> set[str]:
    return {c["Id"] for c in raw.call("GET", "/v1.41/containers/json?all=1")[1]}


def as_alice(env, body: bytes) -> tuple[int, dict]:
    head = (
        b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    answer = env.raw_as(ALICE, head + body)
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")


def check_invariants(stored: dict, env) -> None:
    h = stored["HostConfig"]
    limits = env.policy.limits_for("student", "123456@example.lan").container
    base = env.baseline  # what the daemon stores for a plain create: its own defaults
    assert not h["Privileged"] and (not h["CapAdd"] or set(h["CapAdd"]) <= {"CHOWN"})
    assert h["PidMode"] != "host" and h["IpcMode"] != "host" and h["UsernsMode"] != "host"
    # cgroupns: the daemon's own default (host on a cgroup v1 host, private on v2)
    assert h["NetworkMode"] != "host" and h["CgroupnsMode"] in ("private", base["CgroupnsMode"])
    assert not h["Devices"]
    assert (h["ReadonlyPaths"], h["MaskedPaths"]) == (base["ReadonlyPaths"], base["MaskedPaths"])
    assert all(not s.startswith(("apparmor", "seccomp")) for s in h["SecurityOpt"] or [])
    assert h["CgroupParent"] == user_slice("student", "123456@example.lan")
    assert 0 < h["Memory"] <= limits.memory and 0 < h["NanoCpus"] <= limits.cpus * 10**9
    assert 0 < h["PidsLimit"] <= limits.pids
    assert h["Runtime"] in ("runc", "") and not h["OomKillDisable"]
    assert h["LogConfig"]["Type"] in ("json-file", "")
    assert all(not b.startswith("/") for b in h["Binds"] or [])
    assert all(m["Type"] != "bind" for m in stored["Mounts"])
    assert stored["Config"]["Labels"]["ds01.user"] == "123456@example.lan"
    env_vars = stored["Config"]["Env"] or []
    assert (
        "NVIDIA_VISIBLE_DEVICES=void" in env_vars and "NVIDIA_VISIBLE_DEVICES=all" not in env_vars
    )


def test_what_dockerd_stores_is_what_the_service_decided(world):
    env = world
    raw, rng = Raw(env.dockerd.sock), random.Random(SEED)
    plain = raw.call(
        "POST", "/v1.41/containers/create", json.dumps({"Image": IMG, "Cmd": ["true"]}).encode()
    )[1]
    assert "Id" in plain, plain
    env.baseline = stored_container(raw, plain["Id"])["HostConfig"]
    raw.call("DELETE", f"/v1.41/containers/{plain['Id']}")
    rec = Recorder(env.service.service)
    stats = {"stored": 0, "refused": 0, "duplicates": 0}
    for i in range(CORPUS):
        body, bad = body_of(rng)
        data = json.dumps(body).encode()
        if rng.random() < 0.1:
            data, bad = with_duplicate(rng, body)["raw"].encode(), True
            stats["duplicates"] += 1
        before, sent_before = containers(raw), len(rec.sent)
        status, answer = as_alice(env, data)
        if status != 201:
            stats["refused"] += 1
            assert status in (400, 403, 409), (i, status, answer)
            assert containers(raw) == before, (i, body)
            continue
        assert not bad, (i, body, "a forbidden value was allowed")
        stats["stored"] += 1
        got = stored_container(raw, answer["Id"])
        check_invariants(got, env)
        (decided,) = rec.sent[sent_before:]
        status, again = raw.call("POST", "/v1.41/containers/create", decided)
        assert status == 201, again
        want = stored_container(raw, again["Id"])
        for part in ("HostConfig", "Config", "Mounts"):
            a, b = got[part], want[part]
            if part == "Config":
                a, b = {**a, "Hostname": ""}, {**b, "Hostname": ""}
            assert a == b, (i, part, {k: (a.get(k), b.get(k)) for k in a if a.get(k) != b.get(k)})
        raw.call("DELETE", f"/v1.41/containers/{answer['Id']}?v=0")
        raw.call("DELETE", f"/v1.41/containers/{again['Id']}?v=0")
    print(f"differential: {CORPUS} requests, {stats}")
    assert stats["stored"] >= CORPUS * 0.3 and stats["refused"] >= CORPUS * 0.3
