"""Every rule of ds01.docker.policy, allowed and denied (the table in docs/docker.md)."""

from __future__ import annotations

import json

import pytest
from docker_world import ADMIN, AH, ALICE, BOB, CAROL, NOBODY, POLICY, decide_as, filters_of

from ds01.docker.policy import (
    CTYPE,
    GPU,
    MANAGED,
    OWNER,
    RUN_AS,
    Allow,
    Caller,
    Deny,
    Facts,
    GpuRequest,
    Refused,
    Request,
    apply_gpu,
    decide,
    filter_response,
    parse_filters,
    route,
)
from ds01.names import user_slice

G = 1024**3
OK = "allow"

# (caller, method, path, query, expected: OK or an HTTP status, words in the message)
TABLE = [
    # --- reachability and roles
    (ALICE, "GET", "/_ping", None, OK, ""),
    (NOBODY, "GET", "/_ping", None, OK, ""),
    (NOBODY, "GET", "/version", None, OK, ""),
    (NOBODY, "GET", "/containers/json", None, 403, "no DS01 role"),
    (NOBODY, "POST", "/containers/create", None, 403, "no DS01 role"),
    (ALICE, "GET", "/v1.47/info", None, OK, ""),
    (ALICE, "GET", "/nonsense", None, 403, "not available"),
    (ALICE, "POST", "/containers/a1/json", None, 403, "not available"),  # wrong method
    # --- one container: owner only
    *[
        (ALICE, m, f"/containers/a1/{op}", None, OK, "")
        for m, op in [
            ("GET", "json"),
            ("GET", "logs"),
            ("GET", "top"),
            ("GET", "stats"),
            ("GET", "export"),
            ("GET", "changes"),
            ("POST", "stop"),
            ("POST", "kill"),
            ("POST", "restart"),
            ("POST", "attach"),
            ("POST", "wait"),
            ("POST", "start"),
            ("POST", "rename"),
            ("POST", "pause"),
            ("POST", "resize"),
            ("GET", "archive"),
        ]
    ],
    *[
        (ALICE, m, f"/containers/b1/{op}", None, 403, "belongs to 654321@example.lan")
        for m, op in [
            ("GET", "json"),
            ("GET", "logs"),
            ("GET", "top"),
            ("GET", "stats"),
            ("GET", "export"),
            ("GET", "changes"),
            ("POST", "stop"),
            ("POST", "kill"),
            ("POST", "restart"),
            ("POST", "attach"),
            ("POST", "wait"),
            ("POST", "start"),
            ("POST", "rename"),
            ("POST", "pause"),
            ("POST", "resize"),
            ("GET", "archive"),
            ("PUT", "archive"),
            ("HEAD", "archive"),
        ]
    ],
    (ALICE, "DELETE", "/containers/a1", None, OK, ""),
    (ALICE, "DELETE", "/containers/b1", None, 403, "belongs to"),
    (ALICE, "GET", "/containers/orphan/json", None, 403, "an admin manages it"),
    (ALICE, "GET", "/containers/ghost/json", None, 404, "No such container: ghost"),
    (ADMIN, "GET", "/containers/b1/logs", None, OK, ""),
    (ADMIN, "DELETE", "/containers/orphan", None, OK, ""),
    (ALICE, "GET", "/containers/a-bind/archive", None, 403, "docker cp"),
    (ALICE, "PUT", "/containers/a-bind/archive", None, 403, "docker cp"),
    (ALICE, "POST", "/containers/a-gpu/rename", {"name": "x"}, 403, "cannot be renamed"),
    # --- exec instances follow their container
    (ALICE, "POST", "/exec/ex-a/start", None, OK, ""),
    (ALICE, "GET", "/exec/ex-a/json", None, OK, ""),
    (ALICE, "POST", "/exec/ex-b/start", None, 403, "not yours"),
    (ALICE, "POST", "/exec/ex-b/resize", None, 403, "not yours"),
    (ALICE, "POST", "/exec/ghost/start", None, 404, "No such exec"),
    # --- prune: admins only
    *[
        (ALICE, "POST", p, None, 403, "admins only")
        for p in (
            "/containers/prune",
            "/images/prune",
            "/build/prune",
            "/volumes/prune",
            "/networks/prune",
        )
    ],
    *[
        (ADMIN, "POST", p, None, OK, "")
        for p in (
            "/containers/prune",
            "/images/prune",
            "/build/prune",
            "/volumes/prune",
            "/networks/prune",
        )
    ],
    (ALICE, "GET", "/system/df", None, 403, "admins only"),
    (ALICE, "POST", "/plugins/pull", None, 403, "admins only"),
    (ALICE, "POST", "/swarm/init", None, 403, "admins only"),
    (ALICE, "POST", "/grpc", None, 403, "admins only"),
    (ALICE, "GET", "/secrets", None, 403, "admins only"),
    (ADMIN, "POST", "/swarm/init", None, OK, ""),
    # --- images
    (ALICE, "GET", "/images/debian:bookworm/json", None, OK, ""),
    (ALICE, "GET", "/images/alice/img:latest/json", None, OK, ""),
    (ALICE, "GET", "/images/bob/img:latest/json", None, 403, "built by 654321@example.lan"),
    (ALICE, "GET", "/images/bob/img:latest/history", None, 403, "built by"),
    (ALICE, "GET", "/images/bob/img:latest/get", None, 403, "built by"),
    (ALICE, "POST", "/images/bob/img:latest/push", None, 403, "built by"),
    (ALICE, "GET", "/images/nothing:1/json", None, 404, "No such image"),
    (ALICE, "DELETE", "/images/alice/img:latest", None, OK, ""),
    (ALICE, "DELETE", "/images/bob/img:latest", None, 403, "only remove images you built"),
    (ALICE, "DELETE", "/images/debian:bookworm", None, 403, "shared base image"),
    (ADMIN, "DELETE", "/images/debian:bookworm", None, OK, ""),
    (ALICE, "POST", "/images/alice/img:latest/tag", {"repo": "alice/img", "tag": "v2"}, OK, ""),
    (
        ALICE,
        "POST",
        "/images/debian:bookworm/tag",
        {"repo": "mine"},
        403,
        "only tag images you built",
    ),
    (ALICE, "POST", "/images/alice/img:latest/tag", {"repo": "bob/img"}, 403, "taken by"),
    (ALICE, "GET", "/images/get", {"names": ["alice/img:latest", "debian:bookworm"]}, OK, ""),
    (
        ALICE,
        "GET",
        "/images/get",
        {"names": ["alice/img:latest", "bob/img:latest"]},
        403,
        "built by",
    ),
    # pulled and loaded images carry no owner: pull and load are the admins'
    (ALICE, "POST", "/images/create", {"fromImage": "debian", "tag": "bookworm"}, 403, "admins"),
    (ADMIN, "POST", "/images/create", {"fromImage": "debian", "tag": "bookworm"}, OK, ""),
    (ALICE, "POST", "/images/load", None, 403, "admins only"),
    (ADMIN, "POST", "/images/load", None, OK, ""),
    (ALICE, "GET", "/images/left/over:1/json", None, 403, "no owner on DS01"),
    (ALICE, "GET", "/images/admin/base:1/json", None, OK, ""),
    (ALICE, "GET", "/images/alice/inherits:1/json", None, OK, ""),
    (BOB, "GET", "/images/alice/inherits:1/json", None, 403, "built by"),
    (ALICE, "POST", "/build", {"t": "debian:mine"}, 403, "shared base image name"),
    (ALICE, "POST", "/build", {"t": "left/over:1"}, 403, "names an image of the admins"),
    (ALICE, "POST", "/images/alice/img:latest/tag", {"repo": "python", "tag": "3"}, 403, "shared base"),
    (ADMIN, "POST", "/build", {"t": "debian:mine"}, OK, ""),
    (ALICE, "POST", "/build", {"t": "docker.io/library/debian:x"}, 403, "shared base image name"),
    (ALICE, "POST", "/build", {"t": "docker.io/ds01/base"}, 403, "shared base image name"),
    (ALICE, "POST", "/images/alice/img:latest/tag", {"repo": "docker.io/python"}, 403, "shared"),
    (ALICE, "POST", "/images/create", {"fromSrc": "http://127.0.0.1/x.tar"}, 403, "from a URL"),
    (ALICE, "GET", "/images/search", {"term": "x"}, OK, ""),
    (ALICE, "POST", "/build", {"remote": "http://127.0.0.1:8080/ctx.tar"}, 403, "remote URL"),
    (ALICE, "POST", "/build", {"networkmode": "host"}, 403, "network mode"),
    (ALICE, "POST", "/build", {"t": "bob/img"}, 403, "taken by"),
    (ALICE, "POST", "/build", {"labels": "{not json"}, 400, "invalid JSON"),
    (ALICE, "POST", "/build", {"securityopt": "seccomp=unconfined"}, 403, "--security-opt"),
    (ALICE, "POST", "/build", {"ulimits": '[{"Name":"nofile","Hard":9,"Soft":9}]'}, 403, "ulimit"),
    (ALICE, "POST", "/build", {"t": "mine:1", "q": "1"}, OK, ""),
    (ALICE, "POST", "/build", {"t": "mine:1", "nonsense": "1"}, 400, "unknown parameter"),
    (ALICE, "GET", "/containers/json", {"all": ["1", "0"]}, 400, "twice"),
    (ALICE, "POST", "/commit", {"container": ["a1", "b1"]}, 400, "twice"),
    # --- volumes and networks
    (ALICE, "GET", "/volumes/avol", None, OK, ""),
    (ALICE, "GET", "/volumes/bvol", None, 403, "belongs to"),
    (ALICE, "DELETE", "/volumes/bvol", None, 403, "belongs to"),
    (ALICE, "DELETE", "/volumes/avol", None, OK, ""),
    (ALICE, "PUT", "/volumes/avol", None, 403, "admins only"),
    (ALICE, "GET", "/networks/anet", None, OK, ""),
    (ALICE, "GET", "/networks/bridge", None, OK, ""),
    (ALICE, "GET", "/networks/bnet", None, 403, "not yours"),
    (ALICE, "DELETE", "/networks/bnet", None, 403, "belongs to"),
    (ALICE, "DELETE", "/networks/bridge", None, 403, "an admin manages it"),
    (ALICE, "DELETE", "/networks/anet", None, OK, ""),
    # --- commit
    (ALICE, "POST", "/commit", {"container": "b1", "repo": "x"}, 403, "belongs to"),
    (ALICE, "POST", "/commit", {"container": "a1", "repo": "bob/img"}, 403, "taken by"),
]


@pytest.mark.parametrize(
    "caller,method,path,query,expected,words",
    TABLE,
    ids=[f"{c.name.split('@')[0]}-{m}-{p}" for c, m, p, *_ in TABLE],
)
def test_table(caller, method, path, query, expected, words):
    body = {} if route(method, path) and route(method, path).body == "json" else None
    d = decide_as(caller, method, path, query, body)
    if expected == OK:
        assert isinstance(d, Allow), d
    else:
        assert isinstance(d, Deny), d
        assert d.status == expected
        assert words in d.message


# --------------------------------------------------------------------------
# Visibility: lists and events
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/containers/json", "/events", "/volumes"])
def test_user_lists_are_filtered_to_their_own(path):
    d = decide_as(ALICE, "GET", path, {"filters": json.dumps({"status": ["running"]})})
    f = filters_of(d)
    assert f["label"] == [f"{OWNER}={ALICE.name}"]
    assert f["status"] == ["running"]


def test_list_filter_in_map_form_is_understood_and_spoofing_cannot_widen_it():
    q = {"filters": json.dumps({"label": {f"{OWNER}={BOB.name}": True}})}
    f = filters_of(decide_as(ALICE, "GET", "/containers/json", q))
    # Docker ANDs label filters: asking for bob's as well yields nothing, never bob's.
    assert f["label"] == [f"{OWNER}={BOB.name}", f"{OWNER}={ALICE.name}"]


def test_admin_lists_are_not_filtered():
    assert decide_as(ADMIN, "GET", "/containers/json").query is None
    assert decide_as(ADMIN, "GET", "/images/json").filter is None


@pytest.mark.parametrize("raw", ["{nope", "[1,2]", json.dumps({"label": 5})])
def test_malformed_filters_are_refused(raw):
    d = decide_as(ALICE, "GET", "/containers/json", {"filters": raw})
    assert isinstance(d, Deny) and d.status == 400


def test_parse_filters_both_shapes():
    assert parse_filters({"a": {"x": True, "y": False}}) == {"a": ["x"]}
    assert parse_filters({"a": ["x"]}) == {"a": ["x"]}
    assert parse_filters(None) == {}


def test_image_and_network_lists_keep_own_and_shared():
    images = [
        {"Id": "1", "Labels": {OWNER: ALICE.name}},
        {"Id": "2", "Labels": {OWNER: BOB.name}},
        {"Id": "3", "Labels": None, "RepoTags": ["debian:bookworm"]},  # shared by name
        {"Id": "4", "RepoTags": ["left/over:1"]},  # nobody's: the admins'
        {"Id": "5", "RepoTags": ["<none>:<none>"]},  # a build's intermediate
        {"Id": "6", "Labels": {"ds01.shared": "true", "ds01.role": "admin"}},
        {"Id": "7", "Labels": {OWNER: BOB.name, "ds01.shared": "true", "ds01.role": "student"}},
    ]
    d = decide_as(ALICE, "GET", "/images/json")
    assert d.filter == "images"
    assert [i["Id"] for i in filter_response(d, images, ALICE, POLICY)] == ["1", "3", "6"]
    nets = [
        {"Name": "bridge"},
        {"Name": "anet", "Labels": {OWNER: ALICE.name}},
        {"Name": "bnet", "Labels": {OWNER: BOB.name}},
        {"Name": "none"},
    ]
    d = decide_as(ALICE, "GET", "/networks")
    assert d.filter == "networks"
    assert [n["Name"] for n in filter_response(d, nets, ALICE, POLICY)] == [
        "bridge",
        "anet",
        "none",
    ]
    with pytest.raises(ValueError):
        filter_response(decide_as(ALICE, "GET", "/images/json"), {"not": "a list"}, ALICE, POLICY)


def test_builtin_network_inspect_shows_only_the_callers_containers():
    d = decide_as(ALICE, "GET", "/networks/bridge")
    assert isinstance(d, Allow) and d.filter == "network"
    answer = {"Name": "bridge", "Containers": {"a1": {"Name": "a1"}, "b1": {"Name": "b1"}}}
    assert filter_response(d, answer, ALICE, POLICY)["Containers"] == {"a1": {"Name": "a1"}}
    assert decide_as(ADMIN, "GET", "/networks/bridge").filter is None


# --------------------------------------------------------------------------
# Create: rewriting, labels, limits
# --------------------------------------------------------------------------


def create(caller=ALICE, body=None, query=None, owned=0, **host):
    b = {"Image": "debian:bookworm", **(body or {})}
    if host:
        b["HostConfig"] = host
    return decide_as(caller, "POST", "/containers/create", query, b, owned=owned)


def test_create_is_rewritten_to_role_limits_and_slice():
    d = create()
    assert isinstance(d, Allow), d
    h = d.body["HostConfig"]
    c = POLICY.roles["student"].container
    assert h["NanoCpus"] == int(c.cpus * 1e9) and h["CpuQuota"] == 0
    assert h["Memory"] == c.memory == 32 * G
    assert h["MemorySwap"] == c.memory  # swap 0m: no swap
    assert h["ShmSize"] == c.shm_size and h["PidsLimit"] == c.pids
    assert h["CgroupParent"] == user_slice("student", ALICE.name)
    assert d.body["Env"] == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert d.gpu is None


def test_create_keeps_smaller_requests_and_clamps_larger_ones():
    h = create(NanoCpus=2 * 10**9, Memory=4 * G, PidsLimit=100, ShmSize=G).body["HostConfig"]
    assert (h["NanoCpus"], h["Memory"], h["PidsLimit"], h["ShmSize"]) == (2 * 10**9, 4 * G, 100, G)
    h = create(NanoCpus=500 * 10**9, Memory=900 * G, PidsLimit=-1, MemorySwap=-1).body["HostConfig"]
    assert (h["NanoCpus"], h["Memory"], h["PidsLimit"]) == (32 * 10**9, 32 * G, 4096)
    assert h["MemorySwap"] == 32 * G
    h = create(CpuQuota=400000, CpuPeriod=100000).body["HostConfig"]
    assert (h["NanoCpus"], h["CpuQuota"], h["CpuPeriod"]) == (4 * 10**9, 0, 0)


def test_create_uses_the_users_override_and_role():
    h = create(CAROL).body["HostConfig"]
    assert h["Memory"] == 64 * G and h["CgroupParent"] == user_slice("researcher", CAROL.name)


def test_ownership_labels_are_overwritten_and_type_recorded():
    spoof = {
        OWNER: BOB.name,
        MANAGED: "false",
        "ds01.role": "admin",
        CTYPE: "x",
        GPU: "GPU-1",
        "team": "vision",
    }
    labels = create(body={"Labels": spoof}).body["Labels"]
    assert labels[OWNER] == ALICE.name and labels["ds01.role"] == "student"
    assert labels[MANAGED] == "true" and labels[CTYPE] == "docker"
    assert GPU not in labels and labels["team"] == "vision"


@pytest.mark.parametrize(
    "labels,kind",
    [
        ({"devcontainer.local_folder": "/home/x/p"}, "devcontainer"),
        ({"devcontainer.config_file": "/x/.devcontainer/devcontainer.json"}, "devcontainer"),
        ({"com.docker.compose.project": "p", "com.docker.compose.service": "s"}, "compose"),
        ({}, "docker"),
    ],
)
def test_container_type_detected(labels, kind):
    assert create(body={"Labels": labels}).body["Labels"][CTYPE] == kind


def test_most_containers_per_user():
    assert isinstance(create(owned=2), Allow)
    d = create(owned=3)
    assert isinstance(d, Deny) and "the most your role (student) may have is 3" in d.message
    assert isinstance(create(ADMIN, owned=500), Allow)  # admins: no limit


@pytest.mark.parametrize(
    "host,words",
    [
        ({"Privileged": True}, "privileged"),
        ({"CapAdd": ["SYS_ADMIN"]}, "capability SYS_ADMIN"),
        ({"CapAdd": ["ALL"]}, "capability ALL"),
        ({"CapAdd": ["CAP_NET_ADMIN"]}, "capability CAP_NET_ADMIN"),
        (
            {"Devices": [{"PathOnHost": "/dev/nvidia0", "PathInContainer": "/dev/nvidia0"}]},
            "--device",
        ),
        ({"DeviceCgroupRules": ["c 195:* rwm"]}, "device cgroup"),
        ({"PidMode": "host"}, "process namespace"),
        ({"IpcMode": "host"}, "IPC"),
        ({"UsernsMode": "host"}, "user namespace"),
        ({"UTSMode": "host"}, "UTS"),
        ({"CgroupnsMode": "host"}, "cgroup namespace"),
        ({"NetworkMode": "host"}, "host's network"),
        ({"SecurityOpt": ["seccomp=unconfined"]}, "security option"),
        ({"SecurityOpt": ["apparmor=unconfined"]}, "security option"),
        # present at all, not truthy: an empty list unmasks /proc (systempaths=unconfined)
        ({"MaskedPaths": []}, "masked"),
        ({"ReadonlyPaths": []}, "read-only /proc"),
        ({"MaskedPaths": ["/proc/kcore"]}, "masked"),
        ({"Privileged": 1}, "privileged"),
        ({"Ulimits": [{"Name": "rtprio", "Soft": 99, "Hard": 99}]}, "--ulimit rtprio"),
        ({"Ulimits": [{"Name": "nofile", "Soft": -1, "Hard": -1}]}, "--ulimit nofile"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 4096}]}, None),
        ({"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "80"}]}}, "below 1024"),
        ({"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "1000-1100"}]}}, "below 1024"),
        ({"PortBindings": {"8888/tcp": [{"HostIp": "", "HostPort": "8888"}]}}, None),
        ({"PortBindings": {"8888/tcp": [{"HostIp": "", "HostPort": ""}]}}, None),
        ({"Binds": [f"{AH}/proj:/w:rshared"]}, "propagation"),
        ({"Binds": [f"{AH}/proj:/w:ro,slave"]}, "propagation"),
        ({"Binds": [f"{AH}/proj:/w:ro"]}, None),
        ({"Sysctls": {"kernel.shmmax": "1"}}, "sysctl kernel.shmmax"),
        ({"Runtime": "kata"}, "runtime"),
        (
            {"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "udp://127.0.0.1:514"}}},
            "log",
        ),
        ({"OomKillDisable": True}, "OOM"),
        ({"OomScoreAdj": -500}, "OOM"),
        ({"CpuRealtimeRuntime": 1000}, "real-time"),
        ({"PidMode": "container:b1"}, "belongs to"),
        ({"NetworkMode": "container:b1"}, "belongs to"),
        ({"NetworkMode": "bnet"}, "belongs to"),
        ({"VolumesFrom": ["b1:ro"]}, "belongs to"),
        ({"Links": ["/b1:db"]}, "belongs to"),
        ({"DeviceRequests": [{"Driver": "foo", "Count": 1}]}, "driver 'foo'"),
        (
            {"DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]},
            "--gpus all",
        ),
        ({"Binds": ["onlysource"]}, "malformed bind"),
        ({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/x"}]}, "mount type"),
        (
            {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": "x",
                        "Target": "/x",
                        "VolumeOptions": {
                            "DriverConfig": {
                                "Name": "local",
                                "Options": {"type": "none", "o": "bind", "device": "/etc"},
                            }
                        },
                    }
                ]
            },
            "driver options",
        ),
    ],
)
def test_create_refusals(host, words):
    d = create(**host)
    if words is None:
        assert isinstance(d, Allow), d
    else:
        assert isinstance(d, Deny), d
        assert words in d.message, d.message


def test_allowed_capabilities_pass_and_admin_may_do_more():
    assert isinstance(create(CapAdd=["NET_BIND_SERVICE", "cap_kill"]), Allow)
    assert isinstance(create(ADMIN, Privileged=True, CapAdd=["SYS_ADMIN"], PidMode="host"), Allow)
    assert isinstance(create(SecurityOpt=["no-new-privileges:true"]), Allow)
    assert isinstance(create(Sysctls={"net.ipv4.ip_forward": "1"}), Allow)
    assert isinstance(create(NetworkMode="anet"), Allow)
    assert isinstance(create(PidMode="container:a1"), Allow)


@pytest.mark.parametrize("body", [[1, 2], "x", 5])
def test_malformed_bodies_are_refused(body):
    d = decide_as(ALICE, "POST", "/containers/create", None, body)
    assert isinstance(d, Deny) and d.status == 400


@pytest.mark.parametrize(
    "host",
    [
        {"Binds": [5]},
        {"Binds": "x:/y"},
        {"Memory": "lots"},
        {"Memory": True},
        {"CapAdd": "ALL"},
        {"Mounts": ["x"]},
        {"DeviceRequests": {"Count": 1}},
        {"NetworkMode": 7},
    ],
)
def test_malformed_fields_are_refused(host):
    d = create(**host)
    assert isinstance(d, Deny) and d.status == 400, d


def test_no_image_is_refused_and_others_images_cannot_be_run():
    d = decide_as(ALICE, "POST", "/containers/create", None, {})
    assert isinstance(d, Deny) and "no image" in d.message
    d = create(body={"Image": "bob/img:latest"})
    assert isinstance(d, Deny) and "built by" in d.message
    assert isinstance(create(body={"Image": "alice/img:latest"}), Allow)
    assert isinstance(create(body={"Image": "not-pulled-yet:1"}), Allow)  # the daemon answers 404


# --------------------------------------------------------------------------
# Bind mounts, the docker socket, running as another uid
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src,ok,ro",
    [
        (f"{AH}/proj", True, False),
        (AH, True, False),
        ("/scratch/123456", True, False),
        (f"{AH}/link-to-scratch", True, False),  # resolves into an area the role may write
        ("/collab/team", True, False),
        ("/data/imagenet", True, True),  # readable, not writable: forced read-only
        ("/srv/ds01/data/imagenet", True, True),
        ("/projects/p1", False, None),  # no role may read the projects root
        (f"{AH}/link-to-etc", False, None),  # symlink out of the home: judged by its real path
        (BOB.home, False, None),
        (f"{BOB.home}/secret", False, None),
        ("/home", False, None),
        ("/etc", False, None),
        ("/", False, None),
        (f"{AH}/missing", False, None),
        (f"{AH}/../654321@example.lan", False, None),
        ("relative/path", None, None),  # a named volume, not a bind
    ],
)
def test_bind_sources(src, ok, ro):
    d = create(Binds=[f"{src}:/mnt"])
    if ok is None:
        assert isinstance(d, Allow) and d.body["HostConfig"]["Mounts"][0]["Source"] == src
        return
    assert isinstance(d, Allow) is ok, d
    if ok:
        assert d.body["HostConfig"]["Binds"] == [f"{src}:/mnt" + (":ro" if ro else "")]
    dm = create(Mounts=[{"Type": "bind", "Source": src, "Target": "/mnt"}])
    assert isinstance(dm, Allow) is ok, dm
    if ok:
        assert bool(dm.body["HostConfig"]["Mounts"][0].get("ReadOnly")) is ro


@pytest.mark.parametrize(
    "src",
    ["/run/docker.sock", "/var/run/docker.sock", "/var/run", "/run/ds01", f"{AH}/docker.sock"],
)
def test_docker_socket_never_mounts_even_for_admins(src):
    for who in (ALICE, ADMIN):
        d = create(who, Binds=[f"{src}:/var/run/docker.sock"])
        assert isinstance(d, Deny) and "docker socket" in d.message, (who, d)


def test_readonly_area_stays_readonly_even_when_asked_rw():
    b = create(Binds=["/data/imagenet:/d:rw,z"]).body["HostConfig"]["Binds"]
    assert b == ["/data/imagenet:/d:z,ro"]


def test_bind_container_runs_as_the_caller():
    d = create(Binds=[f"{AH}/proj:/w"])
    assert d.body["User"] == "2001:2001"
    assert "no-new-privileges" in d.body["HostConfig"]["SecurityOpt"]
    assert d.body["Labels"][RUN_AS] == "2001"
    assert create(body={"User": "2001"}, Binds=[f"{AH}/proj:/w"]).body["User"] == "2001:2001"
    assert create(body={"User": ALICE.name}, Binds=[f"{AH}/proj:/w"]).body["User"] == "2001:2001"
    assert (
        create(body={"User": "2001:ds01-student"}, Binds=[f"{AH}/proj:/w"]).body["User"]
        == "2001:ds01-student"
    )
    for user, words in [
        ("root", "run as you"),
        ("0", "run as you"),
        ("2002", "run as you"),
        ("2001:0", "not in group 0"),
    ]:
        d = create(body={"User": user}, Binds=[f"{AH}/proj:/w"])
        assert isinstance(d, Deny) and words in d.message, (user, d)
    d = create(Binds=[f"{AH}/proj:/w"], CapAdd=["CHOWN"])
    assert isinstance(d, Deny) and "no added capabilities" in d.message
    d = create(Binds=[f"{AH}/proj:/w"], GroupAdd=["0"])
    assert isinstance(d, Deny) and "--group-add" in d.message
    assert isinstance(create(Binds=[f"{AH}/proj:/w"], GroupAdd=["docker-users"]), Allow)


def test_volumes_from_a_bind_container_runs_as_the_caller_too():
    d = create(VolumesFrom=["a-bind"])
    assert d.body["User"] == "2001:2001"
    d = create(VolumesFrom=["a1"])
    assert "User" not in d.body  # a container without binds may run as root inside


def test_container_without_binds_may_run_as_root_inside():
    d = create(body={"User": "root"}, CapAdd=["CHOWN"])
    assert isinstance(d, Allow) and d.body["User"] == "root"


def test_named_volumes_are_owned_and_labelled_on_first_use():
    d = create(Binds=["newvol:/v:ro,nocopy", "avol:/a"])
    mounts = d.body["HostConfig"]["Mounts"]
    assert mounts[0] == {
        "Type": "volume",
        "Source": "newvol",
        "Target": "/v",
        "ReadOnly": True,
        "VolumeOptions": {
            "Labels": {OWNER: ALICE.name, MANAGED: "true", "ds01.role": "student"},
            "NoCopy": True,
        },
    }
    assert d.body["HostConfig"]["Binds"] == []
    assert isinstance(create(Binds=["bvol:/b"]), Deny)
    assert isinstance(create(Mounts=[{"Type": "volume", "Source": "bvol", "Target": "/b"}]), Deny)
    m = create(
        Mounts=[
            {
                "Type": "volume",
                "Source": "n2",
                "Target": "/b",
                "VolumeOptions": {"Labels": {OWNER: BOB.name}},
            }
        ]
    )
    assert m.body["HostConfig"]["Mounts"][0]["VolumeOptions"]["Labels"][OWNER] == ALICE.name


def test_exec_rules():
    ok = decide_as(ALICE, "POST", "/containers/a1/exec", None, {"Cmd": ["sh"], "User": "root"})
    assert isinstance(ok, Allow)
    d = decide_as(ALICE, "POST", "/containers/a1/exec", None, {"Cmd": ["sh"], "Privileged": True})
    assert isinstance(d, Deny) and "privileged exec" in d.message
    d = decide_as(ALICE, "POST", "/containers/a-bind/exec", None, {"Cmd": ["sh"], "User": "root"})
    assert isinstance(d, Deny) and "exec as another user" in d.message
    for user in ("", "2001", "2001:2001", ALICE.name):
        d = decide_as(ALICE, "POST", "/containers/a-bind/exec", None, {"Cmd": ["sh"], "User": user})
        assert isinstance(d, Allow), user
    d = decide_as(ALICE, "POST", "/containers/b1/exec", None, {"Cmd": ["sh"]})
    assert isinstance(d, Deny) and "belongs to" in d.message


def test_update_is_held_to_role_limits():
    def upd(body, ref="a1"):
        return decide_as(ALICE, "POST", f"/containers/{ref}/update", None, body)

    # what `docker update --cpus 2` sends: every Resources key, most zero
    cli = {
        "NanoCpus": 2 * 10**9,
        "Memory": 0,
        "Devices": None,
        "Ulimits": None,
        "BlkioWeightDevice": [],
        "RestartPolicy": {"Name": "", "MaximumRetryCount": 0},
    }
    assert isinstance(upd(cli), Allow)
    assert isinstance(upd({"Memory": 8 * G, "MemorySwap": 8 * G}), Allow)
    for body, words in [
        ({"NanoCpus": 64 * 10**9}, "--cpus"),
        ({"Memory": 100 * G}, "--memory"),
        ({"PidsLimit": -1}, "--pids-limit"),
        ({"MemorySwap": -1}, "swap"),
        ({"CpuQuota": 6_400_000, "CpuPeriod": 100_000}, "--cpus"),
        ({"Devices": [{"PathOnHost": "/dev/sda"}]}, "Devices"),
        ({"DeviceRequests": [{"Count": 1}]}, "DeviceRequests"),
    ]:
        d = upd(body)
        assert isinstance(d, Deny) and words in d.message, (body, d)
    d = upd({"RestartPolicy": {"Name": "always"}}, "a-gpu")
    assert isinstance(d, Deny) and "restart policy" in d.message


# --------------------------------------------------------------------------
# GPUs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host,env,want",
    [
        (
            {"DeviceRequests": [{"Driver": "nvidia", "Count": 1, "Capabilities": [["gpu"]]}]},
            [],
            GpuRequest(1, None),
        ),
        (
            {"DeviceRequests": [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]},
            [],
            GpuRequest(2, None),
        ),
        (
            {
                "DeviceRequests": [
                    {"Driver": "nvidia", "DeviceIDs": ["1g.5gb"], "Capabilities": [["gpu"]]}
                ]
            },
            [],
            GpuRequest(1, "1g.5gb"),
        ),
        (
            {"DeviceRequests": [{"Driver": "nvidia", "DeviceIDs": ["0", "1"]}]},
            [],
            GpuRequest(2, None),
        ),
        ({}, ["NVIDIA_VISIBLE_DEVICES=0"], GpuRequest(1, None)),
        ({}, ["NVIDIA_VISIBLE_DEVICES=void"], None),
        ({}, ["NVIDIA_VISIBLE_DEVICES="], None),
        ({}, ["CUDA_VISIBLE_DEVICES=0"], None),
    ],
)
def test_gpu_requests_are_recognised(host, env, want):
    d = create(body={"Env": env}, **host)
    assert isinstance(d, Allow), d
    assert d.gpu == want
    assert "DeviceRequests" not in d.body["HostConfig"]  # only apply_gpu sets devices
    assert d.body["Env"][-1] == "NVIDIA_VISIBLE_DEVICES=void"
    if want:
        assert d.query["name"].startswith("123456-gpu-")


def test_gpu_env_all_and_restart_policies_are_refused():
    d = create(body={"Env": ["NVIDIA_VISIBLE_DEVICES=all"]})
    assert isinstance(d, Deny) and "NVIDIA_VISIBLE_DEVICES=all" in d.message
    d = create(DeviceRequests=[{"Driver": "nvidia", "Count": 1}], RestartPolicy={"Name": "always"})
    assert isinstance(d, Deny) and "--restart always" in d.message


def test_gpu_create_keeps_a_given_name():
    d = create(query={"name": "train"}, DeviceRequests=[{"Driver": "nvidia", "Count": 1}])
    assert d.query["name"] == "train"


def test_apply_gpu_gives_exactly_the_assigned_units():
    body = create(DeviceRequests=[{"Driver": "nvidia", "Count": 1}]).body
    out = apply_gpu(body, ["MIG-aaa"], device_requests=True)
    assert out["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", "DeviceIDs": ["MIG-aaa"], "Capabilities": [["gpu"]]}
    ]
    assert out["Env"].count("NVIDIA_VISIBLE_DEVICES=MIG-aaa") == 1
    assert not any(e == "NVIDIA_VISIBLE_DEVICES=void" for e in out["Env"])
    assert out["Labels"][GPU] == "MIG-aaa"
    sim = apply_gpu(body, ["GPU-1", "GPU-2"], device_requests=False)
    assert "DeviceRequests" not in sim["HostConfig"] and sim["Labels"][GPU] == "GPU-1,GPU-2"


# --------------------------------------------------------------------------
# Build, commit, import, volumes, networks: labels and options
# --------------------------------------------------------------------------


def test_build_labels_and_cgroup_parent():
    q = {"t": "alice/img", "labels": json.dumps({OWNER: BOB.name, "v": "1"})}
    d = decide_as(ALICE, "POST", "/build", q)
    labels = d.query["labels"]
    assert labels[OWNER] == ALICE.name and labels["v"] == "1"
    assert d.query["cgroupparent"] == user_slice("student", ALICE.name)


def test_commit_and_import_label_the_new_image():
    d = decide_as(
        ALICE,
        "POST",
        "/commit",
        {"container": "a1", "repo": "alice/snap", "changes": [f"LABEL {OWNER}=bob", "ENV A=1"]},
        {"Labels": {OWNER: "bob"}},
    )
    assert d.body["Labels"][OWNER] == ALICE.name
    assert d.query["changes"] == ["ENV A=1", f'LABEL {OWNER}="{ALICE.name}"']
    d = decide_as(ALICE, "POST", "/images/create", {"fromSrc": "-", "repo": "alice/imp"})
    assert d.query["changes"][-1].startswith(f'LABEL {OWNER}="{ALICE.name}"')


def test_volume_and_network_create():
    d = decide_as(ALICE, "POST", "/volumes/create", None, {"Name": "v", "Labels": {OWNER: "bob"}})
    assert d.body["Labels"][OWNER] == ALICE.name
    for body, words in [
        ({"Driver": "nfs"}, "driver"),
        ({"DriverOpts": {"type": "none", "o": "bind", "device": "/"}}, "bind any"),
        ({"ClusterVolumeSpec": {"Group": "x"}}, "cluster"),
    ]:
        d = decide_as(ALICE, "POST", "/volumes/create", None, body)
        assert isinstance(d, Deny) and words in d.message
    d = decide_as(ALICE, "POST", "/networks/create", None, {"Name": "n", "Labels": {OWNER: "bob"}})
    assert d.body["Labels"][OWNER] == ALICE.name
    for body in (
        {"Driver": "macvlan"},
        {"Options": {"com.docker.network.bridge.name": "eth0"}},
        {"ConfigFrom": {"Network": "x"}},
    ):
        assert isinstance(decide_as(ALICE, "POST", "/networks/create", None, body), Deny)
    assert isinstance(
        decide_as(ADMIN, "POST", "/networks/create", None, {"Driver": "macvlan"}), Allow
    )


def test_network_connect_needs_own_network_and_container():
    def connect(net, ctr):
        return decide_as(ALICE, "POST", f"/networks/{net}/connect", None, {"Container": ctr})

    assert isinstance(connect("anet", "a1"), Allow)
    assert isinstance(connect("bridge", "a1"), Allow)
    assert isinstance(connect("bnet", "a1"), Deny)
    assert isinstance(connect("anet", "b1"), Deny)
    assert isinstance(connect("host", "a1"), Deny)


def test_missing_facts_fail_closed():
    d = decide(Request("GET", "/containers/a1/json", {}), ALICE, POLICY, Facts())
    assert isinstance(d, Deny) and d.status == 500
    d = decide(
        Request("POST", "/containers/create", {}, {"Image": "x"}),
        ALICE,
        POLICY,
        Facts(targets={("image", "x"): None}),
    )
    assert isinstance(d, Deny) and "not counted" in d.message


def test_route_strips_version_and_decodes_refs():
    r = route("GET", "/v1.47/images/registry.example.lan%2Fteam%2Fimg:1/json")
    assert r.endpoint == "image.read" and r.ref == "registry.example.lan/team/img:1"
    assert route("DELETE", "/v1.41/images/a/b:c").ref == "a/b:c"
    assert route("POST", "/containers/x/start").endpoint == "container.start"
    for bad in ("/containers/x/../y/json", "/containers/x%00/json", "/containers/%zz/json"):
        with pytest.raises(Refused):
            route("GET", bad)
    assert route("GET", "/containers/a%2Fb/json") is None  # dockerd: no such route either


@pytest.mark.parametrize("version", ["/v1.23", "/v1.39", "/v0.9"])
def test_old_api_versions_are_refused(version):
    d = decide_as(ALICE, "POST", f"{version}/containers/a1/start")
    assert isinstance(d, Deny) and d.status == 400 and "too old" in d.message


def test_current_and_unversioned_paths_are_accepted():
    for path in ("/v1.40/containers/a1/json", "/v1.41/containers/a1/json", "/containers/a1/json"):
        assert isinstance(decide_as(ALICE, "GET", path), Allow)


def test_gpu_container_restart_is_refused_and_hooks_follow_the_decision():
    d = decide_as(ALICE, "POST", "/containers/a-gpu/restart")
    assert isinstance(d, Deny) and d.status == 409 and "docker stop" in d.message
    assert decide_as(ALICE, "POST", "/containers/a-gpu/start").gpu_hook == "allocate"
    assert decide_as(ALICE, "DELETE", "/containers/a-gpu").gpu_hook == "forget"
    assert decide_as(ALICE, "POST", "/containers/a1/start").gpu_hook is None


@pytest.mark.parametrize(
    "body,ok",
    [
        ({"PidsLimit": 0}, False),  # 0 and -1 remove the limit
        ({"PidsLimit": -1}, False),
        ({"PidsLimit": 100}, True),
        ({"Memory": -1}, False),
        ({"MemorySwap": -1}, False),
        ({"CpuQuota": -1}, False),
        ({"Devices": [{"PathOnHost": "/dev/sda"}]}, False),
        ({"Devices": [], "KernelMemory": 0, "CgroupParent": ""}, True),  # the CLI's zero values
        ({"CgroupParent": "/"}, False),
    ],
)
def test_update_can_neither_raise_nor_remove_a_limit(body, ok):
    d = decide_as(ALICE, "POST", "/containers/a1/update", body=body)
    assert isinstance(d, Allow if ok else Deny), d


def test_root_is_admin():
    root = Caller(0, 0, "root", "/root", None)
    assert isinstance(decide_as(root, "POST", "/images/prune"), Allow)


def test_cpus_are_capped_at_what_the_host_has():
    r = Request("POST", "/containers/create", {}, {"Image": "debian:bookworm"})
    f = Facts(targets={("image", "debian:bookworm"): None}, owned_containers=0, host_cpus=2)
    assert decide(r, ALICE, POLICY, f).body["HostConfig"]["NanoCpus"] == 2 * 10**9
