"""The schema against the acting side: bodies with random key spellings go
straight to a private dockerd's raw socket, and the same bodies rewritten by
``schema.canonical`` must make dockerd store the same thing. This is what shows
the service reads a request at least as permissively as Go does (if dockerd
read a spelling the schema missed, the two stored objects would differ).

Also recorded here for the service: dockerd's own reading of duplicates, of
Unicode-folded keys and of a HostConfig sent to ``start`` under API v1.23, and
the API versions the docker CLI and the SDK on this machine send."""

from __future__ import annotations

import http.client
import json
import random
import re
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from ds01.docker import apispec, schema

pytestmark = pytest.mark.integration

IMG = "ds01-test/debian:bookworm"
NET, VOL, VF = "dsn1", "dsv1", "dsvf"  # a network, a volume and a container the bodies name
CORPUS = 220
SEED = 20261202


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.unix = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(self.unix)


class Raw:
    """HTTP on dockerd's socket, bytes exactly as given."""

    def __init__(self, sock: Path):
        self.sock = str(sock)

    def call(self, method: str, url: str, body: bytes | None = None) -> tuple[int, object]:
        c = _Unix(self.sock)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, url, body, headers)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        text = data.strip()
        return r.status, json.loads(text) if text[:1] in (b"{", b"[") else text.decode()


@pytest.fixture(scope="module")
def dockerd():
    from docker_env import Dockerd, rootfs_tar

    try:
        tar = rootfs_tar()
        root = Path(tempfile.mkdtemp(prefix="ds01-schema-"))
        d = Dockerd(root)
    except (RuntimeError, FileNotFoundError, PermissionError) as err:
        pytest.skip(str(err))
    try:
        d.cli("import", str(tar), IMG)
        d.cli("network", "create", "--subnet", "10.77.0.0/24", NET)
        d.cli("volume", "create", VOL)
        d.cli("create", "--name", VF, "--network", "none", "-v", "/data", IMG, "true")
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------

CONFIG_VALUES = {
    "User": ["1000:1000", "0:0", "root"],
    "Env": [["A=1", "B=2"], []],
    "Cmd": ["true", ["sh", "-c", "true"]],
    "Entrypoint": ["/bin/sh", ["/bin/sh", "-c"], []],
    "Labels": [{"k": "v", "ds01.user": "j.doe"}, {}],
    "WorkingDir": ["/w", ""],
    "Tty": [True, False],
    "OpenStdin": [True, False],
    "AttachStdout": [True, False],
    "StopSignal": ["SIGINT"],
    "StopTimeout": [5, 0],
    "Healthcheck": [{"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 3}, {}],
    "ExposedPorts": [{"80/tcp": {}, "53/udp": {}}],
    "Volumes": [{"/anon": {}}],
    "Domainname": ["example.lan"],
    "Hostname": ["h1"],
    "Shell": [["/bin/bash", "-c"]],
    "OnBuild": [["RUN true"]],
}
HOST_VALUES = {
    "Privileged": [True, False],
    "CapAdd": [["SYS_ADMIN"], "NET_ADMIN", []],
    "CapDrop": [["NET_RAW"], "ALL"],
    "Binds": [["/tmp:/mnt/t:ro"], [f"{VOL}:/v2"], []],
    "Mounts": [
        [{"Type": "bind", "Source": "/tmp", "Target": "/b", "ReadOnly": True}],
        [
            {
                "Type": "bind",
                "Source": "/tmp",
                "Target": "/b",
                "BindOptions": {"Propagation": "rslave"},
            }
        ],
        [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}}],
        [
            {
                "Type": "volume",
                "Source": VOL,
                "Target": "/v",
                "VolumeOptions": {"NoCopy": True, "Labels": {"l": "1"}},
            }
        ],
    ],
    "PidMode": ["host", ""],
    "IpcMode": ["private", "shareable", "host"],
    "UsernsMode": ["host", ""],
    "Devices": [
        [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/n", "CgroupPermissions": "rwm"}]
    ],
    "SecurityOpt": [["no-new-privileges"], ["apparmor=unconfined"], []],
    "ReadonlyPaths": [[], ["/proc/sys"]],
    "MaskedPaths": [[], ["/proc/kcore"]],
    "Sysctls": [{"net.ipv4.ip_forward": "1"}],
    "CgroupParent": ["ds01-test.slice"],
    "DeviceRequests": [[{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]],
    "PidsLimit": [100, 0, -1],
    "Ulimits": [[{"Name": "nofile", "Soft": 10, "Hard": 20}]],
    "PortBindings": [{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}],
    "Memory": [64 << 20],
    "MemorySwap": [128 << 20],
    "NanoCpus": [500_000_000],
    "CpuShares": [512],
    "CpusetCpus": ["0"],
    "ShmSize": [32 << 20],
    "OomScoreAdj": [5, -5],
    "OomKillDisable": [True],
    "RestartPolicy": [{"Name": "on-failure", "MaximumRetryCount": 2}, {"Name": "always"}],
    "LogConfig": [{"Type": "json-file", "Config": {"max-size": "1m"}}, {"Type": "none"}],
    "Init": [True, False],
    "ReadonlyRootfs": [True],
    "Dns": [["192.0.2.53"]],
    "ExtraHosts": [["h:192.0.2.4"]],
    "GroupAdd": [["10"]],
    "Tmpfs": [{"/run": "size=1m"}],
    "VolumesFrom": [[f"{VF}:ro"]],
    "VolumeDriver": ["local"],
    "Runtime": ["runc"],
    "CgroupnsMode": ["private", "host"],
    "ConsoleSize": [[24, 80]],
    "AutoRemove": [False],
    "PublishAllPorts": [True],
    "ContainerIDFile": [""],
}
NET_MODES = ["none", NET, "default"]


def respell(rng: random.Random, key: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in key)


def respelled(rng: random.Random, value, t: schema.GoType):
    """``value`` with every struct key (not map keys) in a random ASCII case."""
    if isinstance(t, schema.Ptr):
        t = t.elem
    if isinstance(t, schema.Struct) and isinstance(value, dict):
        return {
            respell(rng, k): respelled(rng, v, t.fields.get(k, schema.Str()))
            for k, v in value.items()
        }
    if isinstance(t, schema.List) and isinstance(value, list):
        return [respelled(rng, v, t.elem) for v in value]
    if isinstance(t, schema.Map) and isinstance(value, dict):
        return {k: respelled(rng, v, t.elem) for k, v in value.items()}
    return value


def pick(rng: random.Random, table: dict, k: int) -> dict:
    return {name: rng.choice(table[name]) for name in rng.sample(sorted(table), k)}


def create_body(rng: random.Random) -> dict:
    body = {"Image": IMG, "Cmd": "true", **pick(rng, CONFIG_VALUES, rng.randint(0, 8))}
    host = pick(rng, HOST_VALUES, rng.randint(1, 14))
    mode = rng.choice(NET_MODES)
    host["NetworkMode"] = mode
    if mode != NET:
        host.pop("PortBindings", None) if mode == "none" else None
    else:
        endpoint = {
            "Aliases": ["al1"],
            "IPAMConfig": {"IPv4Address": f"10.77.0.{rng.randint(10, 250)}"},
        }
        if rng.random() < 0.3:  # what docker CLI 28 adds; dockerd 20.10 has no such fields
            endpoint |= {"DNSNames": None, "GwPriority": 0}
        body["NetworkingConfig"] = {"EndpointsConfig": {NET: endpoint}}
    if mode == "none":
        host.pop("PortBindings", None)
        host.pop("PublishAllPorts", None)
    for key in rng.sample(sorted(host), rng.randint(0, 2)):
        host[key] = None  # Go: the zero value
    shape = rng.random()
    if shape < 0.2:  # the deprecated shape: HostConfig fields at the top level
        body |= host
    elif shape < 0.35:  # both: only five top-level fields count, and only where the inner is zero
        body["HostConfig"] = host
        body |= pick(
            rng,
            {
                k: HOST_VALUES[k]
                for k in ("Memory", "CpuShares", "CpusetCpus", "Privileged", "Binds", "PidMode")
            },
            3,
        )
        if rng.random() < 0.5:
            body["Cpuset"] = "0"
    else:
        body["HostConfig"] = host
    return respelled(rng, body, apispec.SCHEMAS["ContainerCreate"])


def stored_container(raw: Raw, cid: str) -> dict:
    status, info = raw.call("GET", f"/v1.41/containers/{cid}/json")
    assert status == 200, info
    config = dict(info["Config"])
    if config.get("Hostname") == cid[:12]:
        config["Hostname"] = "(id)"
    mounts = [
        {**m, "Name": "(anon)", "Source": "(anon)"}
        if re.fullmatch(r"[0-9a-f]{64}", m.get("Name", ""))
        else m
        for m in info["Mounts"]
    ]
    networks = {
        name: {k: ep.get(k) for k in ("Aliases", "IPAMConfig", "Links", "DriverOpts", "MacAddress")}
        for name, ep in (info["NetworkSettings"]["Networks"] or {}).items()
    }
    return {
        "HostConfig": info["HostConfig"],
        "Config": config,
        "Mounts": sorted(mounts, key=lambda m: m["Destination"]),
        "Networks": networks,
    }


def _diff(a: dict, b: dict) -> dict:
    return {
        f"{part}.{k}": (a[part].get(k), b[part].get(k))
        for part in a
        if isinstance(a[part], dict)
        for k in a[part].keys() | b[part].keys()
        if a[part].get(k) != b[part].get(k)
    }


def create(raw: Raw, body: bytes) -> tuple[int, object]:
    status, data = raw.call("POST", "/v1.41/containers/create", body)
    if status != 201:
        return status, data
    return status, stored_container(raw, data["Id"])


# --------------------------------------------------------------------------
# The differential
# --------------------------------------------------------------------------


def test_create_corpus_stores_the_same_as_its_canonical_form(dockerd):
    raw, rng = Raw(dockerd.sock), random.Random(SEED)
    created, refused = 0, 0
    for i in range(CORPUS):
        body = create_body(rng)
        data = json.dumps(body).encode()
        canon = schema.canonical(schema.loads(data), apispec.SCHEMAS["ContainerCreate"])
        assert all(
            k in apispec.CONFIG_FIELDS or k in ("HostConfig", "NetworkingConfig") for k in canon
        )
        got, want = create(raw, data), create(raw, schema.dumps(canon))
        assert got[0] == want[0], (i, body, got, want)
        if got[0] == 201:
            created += 1
            assert got[1] == want[1], (i, body, _diff(got[1], want[1]))
        else:  # dockerd refused both; the same way
            refused += 1
            assert got[1] == want[1], (i, body)
    print(f"create corpus: {created} stored, {refused} refused by dockerd in both spellings")
    assert created + refused == CORPUS
    assert created >= CORPUS * 0.7, f"only {created} of {CORPUS} bodies made a container"
    raw.call("POST", "/v1.41/containers/prune")


def test_exec_volume_network_bodies_store_the_same(dockerd):
    raw, rng = Raw(dockerd.sock), random.Random(SEED + 1)
    status, data = raw.call(
        "POST",
        "/v1.41/containers/create",
        schema.dumps(
            {"Image": IMG, "Cmd": ["sleep", "300"], "HostConfig": {"NetworkMode": "none"}}
        ),
    )
    assert status == 201, data
    cid = data["Id"]
    assert raw.call("POST", f"/v1.41/containers/{cid}/start")[0] == 204

    def exec_state(body: bytes):
        s, d = raw.call("POST", f"/v1.41/containers/{cid}/exec", body)
        if s != 201:
            return s, d
        info = raw.call("GET", f"/v1.41/exec/{d['Id']}/json")[1]
        return s, {
            k: info[k]
            for k in ("ProcessConfig", "OpenStdin", "OpenStdout", "OpenStderr", "DetachKeys")
        }

    def volume_state(body: bytes):
        s, d = raw.call("POST", "/v1.41/volumes/create", body)
        if s != 201:
            return s, d
        name = d["Name"]
        raw.call("DELETE", f"/v1.41/volumes/{name}")
        return s, {k: d[k] for k in ("Driver", "Labels", "Options")} | {
            "named": not re.fullmatch(r"[0-9a-f]{64}", name)
        }

    def network_state(body: bytes):
        s, d = raw.call("POST", "/v1.41/networks/create", body)
        if s != 201:
            return s, d
        info = raw.call("GET", f"/v1.41/networks/{d['Id']}")[1]
        raw.call("DELETE", f"/v1.41/networks/{d['Id']}")
        if "IPAM" not in schema.canonical(schema.loads(body), apispec.SCHEMAS["NetworkCreate"]):
            info["IPAM"]["Config"] = "(allocated by dockerd)"
        keep = (
            "Name",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Ingress",
            "ConfigOnly",
            "Options",
            "Labels",
            "Scope",
        )
        return s, {k: info[k] for k in keep}

    n = 0
    for i in range(40):
        body = {
            "Cmd": ["sh", "-c", "exit 3"],
            **pick(
                rng,
                {
                    "User": ["0", "1000:1000"],
                    "Privileged": [True, False],
                    "Tty": [True, False],
                    "AttachStdin": [True, False],
                    "AttachStdout": [True],
                    "Env": [["X=1"]],
                    "WorkingDir": ["/tmp"],
                    "DetachKeys": ["ctrl-x"],
                    "Container": [cid],  # the SDK's; dockerd 20.10 ignores it
                },
                rng.randint(0, 6),
            ),
        }
        n += _same(
            exec_state, respelled(rng, body, apispec.SCHEMAS["ContainerExec"]), "ContainerExec", i
        )
    for i in range(30):
        body = pick(
            rng,
            {
                "Driver": ["local"],
                "DriverOpts": [{"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}],
                "Labels": [{"a": "b"}],
            },
            rng.randint(0, 3),
        ) | ({"Name": f"sv{i}"} if rng.random() < 0.7 else {})
        n += _same(
            volume_state,
            respelled(rng, body, apispec.SCHEMAS["VolumeCreate"]),
            "VolumeCreate",
            i,
            twice_named=True,
        )
    for i in range(30):
        body = {
            "Name": f"sn{i}",
            "CheckDuplicate": True,
            **pick(
                rng,
                {
                    "Driver": ["bridge"],
                    "Internal": [True, False],
                    "Attachable": [True],
                    "EnableIPv6": [False],
                    "Labels": [{"x": "y"}],
                    "Options": [{"com.docker.network.bridge.enable_icc": "false"}],
                    "IPAM": [
                        {
                            "Driver": "default",
                            "Config": [{"Subnet": f"10.78.{i}.0/24", "Gateway": f"10.78.{i}.1"}],
                        }
                    ],
                },
                rng.randint(0, 6),
            ),
        }
        n += _same(
            network_state,
            respelled(rng, body, apispec.SCHEMAS["NetworkCreate"]),
            "NetworkCreate",
            i,
        )
    assert n >= 90, f"only {n} of 100 exec/volume/network bodies were accepted by dockerd"


UPDATE_VALUES = {
    "Memory": [96 << 20],
    "MemorySwap": [192 << 20, -1],
    "MemoryReservation": [32 << 20],
    "CpuShares": [256],
    "CpusetCpus": ["0"],
    "NanoCpus": [250_000_000],
    "PidsLimit": [64, 0, -1],
    "RestartPolicy": [{"Name": "on-failure", "MaximumRetryCount": 4}, {"Name": "unless-stopped"}],
    "BlkioWeight": [300],
    "KernelMemoryTCP": [0],
}
CONNECT_VALUES = {
    "Aliases": [["al1", "al2"], []],
    "Links": [[f"{VF}:lk"]],
    "IPAMConfig": [{"IPv4Address": "10.77.0.200"}, {}],
    "DriverOpts": [{"o": "1"}],
    "DNSNames": [["x"]],  # docker CLI 28's; dockerd 20.10 has no such field
    "GwPriority": [0],
}


def test_update_and_connect_bodies_store_the_same(dockerd):
    """Two twin containers: one gets the respelled body, the other its canonical
    form; their stored HostConfig (update) and endpoint (connect) must match."""
    raw, rng = Raw(dockerd.sock), random.Random(SEED + 2)

    def twin() -> str:
        status, data = raw.call(
            "POST",
            "/v1.41/containers/create",
            schema.dumps({"Image": IMG, "Cmd": "true", "HostConfig": {"NetworkMode": "none"}}),
        )
        assert status == 201, data
        return data["Id"]

    def updated(cid: str, body: bytes):
        status, data = raw.call("POST", f"/v1.41/containers/{cid}/update", body)
        if status != 200:  # refused: compare the reason, without the twin's id
            return status, json.dumps(data).replace(cid, "(id)")
        return status, stored_container(raw, cid)["HostConfig"]

    def connected(cid: str, body: bytes):
        status, data = raw.call("POST", f"/v1.41/networks/{NET}/connect", body)
        if status != 200:
            return status, json.dumps(data).replace(cid, "(id)")
        ep = stored_container(raw, cid)["Networks"][NET]
        ep["Aliases"] = [
            "(id)" if x == cid[:12] else x for x in ep["Aliases"] or []
        ]  # dockerd's own
        assert (
            raw.call("POST", f"/v1.41/networks/{NET}/disconnect", schema.dumps({"Container": cid}))[
                0
            ]
            == 200
        )
        return status, ep

    accepted = 0
    for i in range(30):
        body = respelled(
            rng, pick(rng, UPDATE_VALUES, rng.randint(1, 5)), apispec.SCHEMAS["ContainerUpdate"]
        )
        data = json.dumps(body).encode()
        canon = schema.dumps(
            schema.canonical(schema.loads(data), apispec.SCHEMAS["ContainerUpdate"])
        )
        got, want = updated(twin(), data), updated(twin(), canon)
        assert got == want, ("ContainerUpdate", i, body, got, want)
        accepted += got[0] == 200
    a, b = twin(), twin()
    for name in (a, b):  # a network-mode-none container cannot join a network
        raw.call("POST", "/v1.41/networks/none/disconnect", schema.dumps({"Container": name}))
    for i in range(20):
        endpoint = pick(rng, CONNECT_VALUES, rng.randint(0, 4))
        body = respelled(
            rng, {"Container": a, "EndpointConfig": endpoint}, apispec.SCHEMAS["NetworkConnect"]
        )
        data = json.dumps(body).encode()
        canon = schema.canonical(schema.loads(data), apispec.SCHEMAS["NetworkConnect"])
        got, want = connected(a, data), connected(b, schema.dumps({**canon, "Container": b}))
        assert got == want, ("NetworkConnect", i, body, got, want)
        accepted += got[0] == 200
    assert accepted >= 40, f"only {accepted} of 50 update/connect bodies were accepted by dockerd"


def _same(state, body: dict, op: str, i: int, twice_named: bool = False) -> int:
    data = json.dumps(body).encode()
    canon = schema.dumps(schema.canonical(schema.loads(data), apispec.SCHEMAS[op]))
    got, want = state(data), state(canon)  # each deletes what it made, so a name can repeat
    assert got == want, (op, i, body, got, want)
    return got[0] == 201


# --------------------------------------------------------------------------
# What dockerd does with the gaps the schema closes (recorded for the lead)
# --------------------------------------------------------------------------


def test_dockerd_reads_duplicates_last_and_folds_unicode_which_loads_refuses(dockerd):
    raw = Raw(dockerd.sock)
    base = f'"Image":"{IMG}","Cmd":"true"'
    cases = {
        # a later key wins, in any case
        f'{{{base},"HostConfig":{{"Privileged":false}},"hostconfig":{{"privileged":true}}}}': (
            "Privileged",
            True,
        ),
        # U+017F LATIN SMALL LETTER LONG S folds to 's'
        f'{{{base},"HostConfig":{{"\\u017fecurityopt":["no-new-privileges"]}}}}': (
            "SecurityOpt",
            ["no-new-privileges"],
        ),
        # the deprecated top-level HostConfig fields
        f'{{{base},"Privileged":true,"Binds":["/:/host"]}}': ("Binds", ["/:/host"]),
    }
    for body, (field, value) in cases.items():
        status, info = create(raw, body.encode())
        assert status == 201 and info["HostConfig"][field] == value, (body, info)
    with pytest.raises(schema.Malformed, match="twice"):
        schema.loads(next(iter(cases)).encode())
    with pytest.raises(schema.Malformed, match="non-ASCII"):
        schema.loads(list(cases)[1].encode())
    canon = schema.canonical(
        schema.loads(list(cases)[2].encode()), apispec.SCHEMAS["ContainerCreate"]
    )
    assert canon["HostConfig"] == {"Privileged": True, "Binds": ["/:/host"]}
    # a null Ulimit is a nil pointer in Go: dockerd stores it, and then its inspect
    # handler panics (the connection closes unanswered); canonical refuses it
    with pytest.raises(schema.Malformed, match=r"HostConfig.Ulimits\[0\]"):
        schema.canonical(
            schema.loads(f'{{{base},"HostConfig":{{"Ulimits":[null]}}}}'.encode()),
            apispec.SCHEMAS["ContainerCreate"],
        )
    raw.call("POST", "/v1.41/containers/prune")


def test_start_applies_a_host_config_body_under_api_1_23(dockerd):
    """For the lead: ``start`` with a body is refused from v1.24 on, but under
    v1.23 dockerd decodes it as a HostConfig and stores it, bypassing create."""
    raw = Raw(dockerd.sock)
    status, data = raw.call(
        "POST",
        "/v1.41/containers/create",
        schema.dumps({"Image": IMG, "Cmd": "true", "HostConfig": {"NetworkMode": "none"}}),
    )
    assert status == 201
    cid = data["Id"]
    evil = schema.dumps({"Privileged": True, "Binds": ["/:/host"], "NetworkMode": "none"})
    status, data = raw.call("POST", f"/v1.41/containers/{cid}/start", evil)
    assert status == 400 and "removed in v1.24" in data["message"]
    raw.call(
        "POST", f"/v1.23/containers/{cid}/start", evil
    )  # it may fail to run; the config is stored first
    host = raw.call("GET", f"/v1.41/containers/{cid}/json")[1]["HostConfig"]
    assert host["Privileged"] is True and host["Binds"] == ["/:/host"]
    assert raw.call("GET", "/version")[1]["MinAPIVersion"] == "1.12"
    assert raw.call("GET", "/v1.42/version")[0] == 400  # above the daemon's own version
    raw.call("DELETE", f"/v1.41/containers/{cid}?force=1")


def test_dockerd_reads_the_first_of_a_repeated_query_parameter(dockerd):
    """The old service read the last value; dockerd reads the first
    (r.Form.Get): the parser refuses a repetition, and the canonical query is
    read by dockerd as the parser read it."""
    raw = Raw(dockerd.sock)
    status, _ = raw.call("POST", f"/v1.41/images/{IMG}/tag?repo=first&repo=second&tag=t")
    assert status == 201
    assert raw.call("GET", "/v1.41/images/first:t/json")[0] == 200
    assert raw.call("GET", "/v1.41/images/second:t/json")[0] == 404
    spec = apispec.QUERIES["ImageTag"]
    with pytest.raises(schema.Malformed, match="'repo' given twice"):
        schema.parse_query("repo=first&repo=second&tag=t", spec)
    query = schema.build_query(schema.parse_query("tag=t2&repo=mine&force=0", spec), spec)
    assert raw.call("POST", f"/v1.41/images/{IMG}/tag?{query}")[0] == 201
    assert raw.call("GET", "/v1.41/images/mine:t2/json")[0] == 200
    for ref in ("first:t", "mine:t2"):
        raw.call("DELETE", f"/v1.41/images/{ref}")


# --------------------------------------------------------------------------
# What real clients send
# --------------------------------------------------------------------------


class Tap:
    """A unix socket in front of dockerd that records the request lines clients send."""

    def __init__(self, upstream: Path, path: Path):
        self.upstream, self.path, self.lines = str(upstream), path, []
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(path))
        self.srv.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.upstream)

        def back():
            while d := u.recv(65536):
                c.sendall(d)
            c.close()

        threading.Thread(target=back, daemon=True).start()
        while d := c.recv(65536):
            self.lines += re.findall(rb"^(?:GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.1\r$", d, re.M)
            u.sendall(d)
        u.shutdown(socket.SHUT_WR)

    def close(self):
        self.srv.close()


def test_cli_and_sdk_negotiate_api_1_41_with_dockerd_20_10(dockerd):
    import docker

    tap = Tap(dockerd.sock, dockerd.root / "tap.sock")
    try:
        r = dockerd.cli("-H", f"unix://{tap.path}", "ps", "-a", check=False)
        assert r.returncode == 0, r.stderr
        client = docker.DockerClient(base_url=f"unix://{tap.path}")
        client.containers.list(all=True)
        client.close()
    finally:
        tap.close()
    versions = {m.group(1).decode() for p in tap.lines if (m := re.match(rb"/v(\d+\.\d+)/", p))}
    assert versions == {"1.41"}, tap.lines
    assert schema.parse_query(
        "limit=-1&all=1&size=0&trunc_cmd=0", apispec.QUERIES["ContainerList"]
    ) == {
        "limit": -1,
        "all": True,
        "size": False,
    }
