"""ds01.docker.schema: requests read as dockerd 20.10 reads them, and no looser.

Every field the rules in ds01/docker/policy.py restrict is tried in another
spelling (Go matches keys case-insensitively, so the service must too) and
given twice (Go lets the later one win, so the service refuses it)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ds01.docker import apispec
from ds01.docker.schema import Malformed, build_query, canonical, dumps, loads, parse_query

S = apispec.SCHEMAS

# (schema, canonical key path, a value the rules care about)
RESTRICTED = [
    ("ContainerCreate", ("Image",), "ds01-test/debian:bookworm"),
    ("ContainerCreate", ("User",), "0:0"),
    ("ContainerCreate", ("Env",), ["NVIDIA_VISIBLE_DEVICES=all"]),
    ("ContainerCreate", ("Labels",), {"ds01.user": "j.doe"}),
    ("ContainerCreate", ("HostConfig", "Privileged"), True),
    ("ContainerCreate", ("HostConfig", "CapAdd"), ["SYS_ADMIN"]),
    ("ContainerCreate", ("HostConfig", "Binds"), ["/:/host"]),
    (
        "ContainerCreate",
        ("HostConfig", "Mounts"),
        [{"Type": "bind", "Source": "/", "Target": "/h"}],
    ),
    ("ContainerCreate", ("HostConfig", "Mounts", 0, "Type"), "bind"),
    ("ContainerCreate", ("HostConfig", "Mounts", 0, "Source"), "/"),
    ("ContainerCreate", ("HostConfig", "Mounts", 0, "ReadOnly"), False),
    ("ContainerCreate", ("HostConfig", "Mounts", 0, "BindOptions", "Propagation"), "rshared"),
    (
        "ContainerCreate",
        ("HostConfig", "Mounts", 0, "VolumeOptions", "DriverConfig", "Name"),
        "local",
    ),
    ("ContainerCreate", ("HostConfig", "Mounts", 0, "VolumeOptions", "Labels"), {"ds01.user": "x"}),
    ("ContainerCreate", ("HostConfig", "PidMode"), "host"),
    ("ContainerCreate", ("HostConfig", "NetworkMode"), "host"),
    ("ContainerCreate", ("HostConfig", "IpcMode"), "host"),
    ("ContainerCreate", ("HostConfig", "UTSMode"), "host"),
    ("ContainerCreate", ("HostConfig", "UsernsMode"), "host"),
    ("ContainerCreate", ("HostConfig", "CgroupnsMode"), "host"),
    (
        "ContainerCreate",
        ("HostConfig", "Devices"),
        [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}],
    ),
    ("ContainerCreate", ("HostConfig", "Devices", 0, "PathOnHost"), "/dev/sda"),
    ("ContainerCreate", ("HostConfig", "DeviceCgroupRules"), ["a *:* rwm"]),
    ("ContainerCreate", ("HostConfig", "SecurityOpt"), ["seccomp=unconfined"]),
    ("ContainerCreate", ("HostConfig", "ReadonlyPaths"), []),
    ("ContainerCreate", ("HostConfig", "MaskedPaths"), []),
    ("ContainerCreate", ("HostConfig", "Sysctls"), {"kernel.shm_rmid_forced": "1"}),
    ("ContainerCreate", ("HostConfig", "Runtime"), "nvidia"),
    ("ContainerCreate", ("HostConfig", "CgroupParent"), "system.slice"),
    (
        "ContainerCreate",
        ("HostConfig", "DeviceRequests"),
        [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}],
    ),
    ("ContainerCreate", ("HostConfig", "DeviceRequests", 0, "DeviceIDs"), ["GPU-0"]),
    ("ContainerCreate", ("HostConfig", "DeviceRequests", 0, "Count"), -1),
    ("ContainerCreate", ("HostConfig", "VolumesFrom"), ["other"]),
    ("ContainerCreate", ("HostConfig", "Links"), ["other:o"]),
    ("ContainerCreate", ("HostConfig", "GroupAdd"), ["0"]),
    ("ContainerCreate", ("HostConfig", "PidsLimit"), 0),
    (
        "ContainerCreate",
        ("HostConfig", "Ulimits"),
        [{"Name": "nofile", "Soft": 1 << 20, "Hard": 1 << 20}],
    ),
    ("ContainerCreate", ("HostConfig", "Ulimits", 0, "Hard"), 1 << 20),
    (
        "ContainerCreate",
        ("HostConfig", "PortBindings"),
        {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]},
    ),
    ("ContainerCreate", ("HostConfig", "PortBindings", "80/tcp", 0, "HostPort"), "22"),
    ("ContainerCreate", ("HostConfig", "Memory"), 1 << 40),
    ("ContainerCreate", ("HostConfig", "MemorySwap"), -1),
    ("ContainerCreate", ("HostConfig", "NanoCpus"), 64 * 10**9),
    ("ContainerCreate", ("HostConfig", "CpuQuota"), 10**7),
    ("ContainerCreate", ("HostConfig", "CpuPeriod"), 1000),
    ("ContainerCreate", ("HostConfig", "CpuRealtimeRuntime"), 950000),
    ("ContainerCreate", ("HostConfig", "ShmSize"), 1 << 40),
    ("ContainerCreate", ("HostConfig", "OomKillDisable"), True),
    ("ContainerCreate", ("HostConfig", "OomScoreAdj"), -1000),
    ("ContainerCreate", ("HostConfig", "LogConfig", "Type"), "syslog"),
    ("ContainerCreate", ("HostConfig", "RestartPolicy", "Name"), "always"),
    ("ContainerCreate", ("NetworkingConfig", "EndpointsConfig"), {"host": {}}),
    ("ContainerCreate", ("NetworkingConfig", "EndpointsConfig", "other", "Links"), ["x:y"]),
    ("ContainerExec", ("Privileged",), True),
    ("ContainerExec", ("User",), "0"),
    ("ContainerExec", ("Env",), ["LD_PRELOAD=/x"]),
    ("ContainerExec", ("Cmd",), ["sh"]),
    ("ExecStart", ("Detach",), True),
    ("ContainerUpdate", ("PidsLimit",), 0),
    ("ContainerUpdate", ("Memory",), 1 << 40),
    ("ContainerUpdate", ("MemorySwap",), -1),
    ("ContainerUpdate", ("NanoCpus",), 64 * 10**9),
    ("ContainerUpdate", ("CpuQuota",), -1),
    ("ContainerUpdate", ("CpusetCpus",), "0-63"),
    ("ContainerUpdate", ("RestartPolicy", "Name"), "always"),
    ("ContainerUpdate", ("Devices",), [{"PathOnHost": "/dev/sda"}]),
    ("ContainerUpdate", ("CgroupParent",), "system.slice"),
    ("VolumeCreate", ("Driver",), "local"),
    ("VolumeCreate", ("DriverOpts",), {"type": "none", "o": "bind", "device": "/"}),
    ("VolumeCreate", ("Labels",), {"ds01.user": "x"}),
    ("VolumeCreate", ("Name",), "v"),
    ("NetworkCreate", ("Driver",), "macvlan"),
    ("NetworkCreate", ("Options",), {"parent": "eth0"}),
    ("NetworkCreate", ("ConfigFrom", "Network"), "x"),
    ("NetworkCreate", ("ConfigOnly",), True),
    ("NetworkCreate", ("Ingress",), True),
    ("NetworkCreate", ("Labels",), {"ds01.user": "x"}),
    ("NetworkCreate", ("IPAM", "Driver"), "x"),
    ("NetworkCreate", ("IPAM", "Config", 0, "Subnet"), "10.0.0.0/8"),
    ("NetworkConnect", ("Container",), "other"),
    ("NetworkConnect", ("EndpointConfig", "Links"), ["x:y"]),
    ("NetworkConnect", ("EndpointConfig", "IPAMConfig", "IPv4Address"), "10.0.0.1"),
    ("NetworkDisconnect", ("Container",), "other"),
    ("NetworkDisconnect", ("Force",), True),
    ("ImageCommit", ("User",), "0"),
    ("ImageCommit", ("Labels",), {"ds01.user": "x"}),
]
IDS = [f"{op}:{'.'.join(map(str, path))}" for op, path, _ in RESTRICTED]


def _is_struct_key(op: str, path: tuple, i: int) -> bool:
    """Whether path[i] names a struct field (spelled freely) rather than a map key."""
    t = S[op]
    for seg in path[:i]:
        t = t.elem if isinstance(seg, int) or isinstance(t, apispec.Map) else t.fields[seg]
        t = t.elem if isinstance(t, apispec.Ptr) else t
    return isinstance(t, apispec.Struct)


def _wrap(op: str, path: tuple, text: str, spell, start: int, stop: int) -> str:
    """``text`` (JSON) placed under the segments ``path[start:stop]``, struct keys
    spelled by ``spell`` (list indexes get empty objects before them)."""
    for i in range(stop - 1, start - 1, -1):
        seg = path[i]
        if isinstance(seg, int):
            text = "[" + "{}," * seg + text + "]"
        else:
            key = spell(seg) if _is_struct_key(op, path, i) else seg
            text = "{" + json.dumps(key) + ":" + text + "}"
    return text


def _build(op: str, path: tuple, leaf: str, spell) -> str:
    return _wrap(op, path, leaf, spell, 0, len(path))


def _at(value, path: tuple):
    for seg in path:
        value = value[seg]
    return value


SPELLINGS = [str.lower, str.upper, str.swapcase, lambda k: k[0].lower() + k[1:]]


@pytest.mark.parametrize(("op", "path", "value"), RESTRICTED, ids=IDS)
def test_a_restricted_field_is_read_in_any_ascii_case(op, path, value):
    for spell in SPELLINGS:
        body = loads(_build(op, path, json.dumps(value), spell).encode())
        out = canonical(body, S[op])
        want = [value] if path[-1] in ("Cmd",) and isinstance(value, str) else value
        assert _at(out, path) == want, (spell, out)


@pytest.mark.parametrize(("op", "path", "value"), RESTRICTED, ids=IDS)
def test_a_restricted_field_given_twice_is_refused(op, path, value):
    """The innermost struct key given twice (a null first, then the value, as an
    attacker would to hide it from a first-wins reader), in several spellings:
    Go would keep the later one; loads and canonical refuse."""
    last = max(
        i for i, seg in enumerate(path) if isinstance(seg, str) and _is_struct_key(op, path, i)
    )
    key = path[last]
    inner = _wrap(op, path, json.dumps(value), str.lower, last + 1, len(path))
    for first, second in (
        (key, key.lower()),
        (key.upper(), key),
        (key, key),
        (key.lower(), key.lower()),
    ):
        pair = "{" + json.dumps(first) + ":null," + json.dumps(second) + ":" + inner + "}"
        with pytest.raises(Malformed) as e:
            loads(_wrap(op, path, pair, str, 0, last).encode())
        where = "".join(f"[{seg}]" if isinstance(seg, int) else f".{seg}" for seg in path[:last])
        assert e.value.message.startswith(f"{where.lstrip('.') or '(body)'}: "), e.value.message
        assert "twice" in e.value.message
        if first != second:  # a structure built by hand (not through loads) is refused too
            obj = json.loads(_wrap(op, path, "{}", str, 0, last))
            _at(obj, path[:last]).update({first: None, second: json.loads(inner)})
            with pytest.raises(Malformed, match="twice"):
                canonical(obj, S[op])


@pytest.mark.parametrize("fold", ["\u017f", "\u212a"])
def test_keys_go_would_fold_from_unicode_are_refused(fold):
    # U+017F folds to 's' and U+212A (Kelvin) to 'k' in Go's EqualFold
    for key in ("SecurityOpt", "PidMode", "Links"):
        spelled = (
            key.replace("s", fold).replace("S", fold)
            if fold == "\u017f"
            else key.replace("k", fold).replace("K", fold)
        )
        if spelled == key:
            continue
        with pytest.raises(Malformed, match="non-ASCII"):
            loads(json.dumps({"HostConfig": {spelled: None}}).encode())


def test_the_deprecated_top_level_host_config_is_read_as_go_reads_it():
    create = S["ContainerCreate"]
    # no HostConfig object: the top-level fields are the host config
    assert canonical(loads(b'{"privileged":true,"binds":["/:/h"]}'), create) == {
        "HostConfig": {"Privileged": True, "Binds": ["/:/h"]}
    }
    # with one: only Memory, MemorySwap, CpuShares, CpusetCpus, VolumeDriver fill zero inner values
    body = (
        b'{"Privileged":true,"Memory":5,"CpuShares":7,"HostConfig":{"CpuShares":9},"cpuset":"0-1"}'
    )
    assert canonical(loads(body), create) == {
        "HostConfig": {"CpuShares": 9, "Memory": 5, "CpusetCpus": "0-1"}
    }
    # a null top-level field still makes Go allocate an (empty) HostConfig
    assert canonical(loads(b'{"Image":"x","Privileged":null}'), create) == {
        "Image": "x",
        "HostConfig": {},
    }
    assert canonical(loads(b'{"Image":"x","HostConfig":null}'), create) == {"Image": "x"}


def test_values_are_typed_as_go_decodes_them():
    host = S["ContainerCreate"].fields["HostConfig"]
    ok = {
        '{"CapAdd":"NET_ADMIN"}': {"CapAdd": ["NET_ADMIN"]},  # StrSlice: a string is one element
        '{"Binds":["/a:/a",null]}': {"Binds": ["/a:/a", ""]},  # null element: the zero value
        '{"Memory":null,"Init":null}': {},  # null: the zero value, dropped
        '{"ConsoleSize":[24]}': {"ConsoleSize": [24, 0]},
        '{"PortBindings":{"80/tcp":null}}': {"PortBindings": {"80/tcp": []}},
        '{"Sysctls":{"a":null}}': {"Sysctls": {"a": ""}},
        '{"BlkioWeight":65535,"PidsLimit":-9223372036854775808}': {
            "BlkioWeight": 65535,
            "PidsLimit": -(1 << 63),
        },
    }
    for text, want in ok.items():
        assert canonical(loads(text.encode()), host) == want, text
    bad = {
        '{"Privileged":"true"}': "HostConfig.Privileged: expected bool, got string",
        '{"Privileged":1}': "expected bool",
        '{"Memory":1.0}': "HostConfig.Memory: expected int64, got float",
        '{"Memory":1e3}': "expected int64",
        '{"Memory":9223372036854775808}': "out of range for int64",
        '{"BlkioWeight":65536}': "out of range for uint16",
        '{"BlkioWeight":-1}': "out of range for uint16",
        '{"Binds":"/:/h"}': "HostConfig.Binds: expected []string, got string",
        '{"Binds":["/a:/a",1]}': r"HostConfig.Binds[1]: expected string",
        '{"CapAdd":[1]}': r"HostConfig.CapAdd[0]",
        '{"Ulimits":[null]}': r"HostConfig.Ulimits[0]: null is not a units.Ulimit",
        '{"Mounts":[{"Type":"bind","Bogus":1}]}': r"HostConfig.Mounts[0].Bogus: unknown field of mount.Mount",
        '{"ConsoleSize":[1,2,3]}': "more than 2",
        '{"PortBindings":{"80/tcp":[1]}}': "HostConfig.PortBindings.80/tcp[0]: expected nat.PortBinding, got int",
        '{"Sysctls":{"a":1}}': "HostConfig.Sysctls.a: expected string",
        '{"LogConfig":[]}': "expected container.LogConfig, got array",
        '{"Annotations":{}}': "HostConfig.Annotations: unknown field",
    }
    for text, message in bad.items():
        with pytest.raises(Malformed) as e:
            canonical(loads(text.encode()), host, "HostConfig")
        assert message in e.value.message, (text, e.value.message)


def test_port_and_volume_sets_are_empty_objects():
    config = S["ImageCommit"]
    assert canonical(loads(b'{"ExposedPorts":{"80/tcp":{},"53/udp":null}}'), config) == {
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}}
    }
    for text in (b'{"ExposedPorts":{"80/tcp":true}}', b'{"Volumes":{"/v":{"x":1}}}'):
        with pytest.raises(Malformed):
            canonical(loads(text), config)


def test_dropped_keys_are_only_those_the_table_names():
    connect = S["NetworkConnect"]
    body = loads(
        b'{"Container":"c","EndpointConfig":{"Aliases":["a"],"DNSNames":["x"],"gwpriority":3}}'
    )
    assert canonical(body, connect) == {"Container": "c", "EndpointConfig": {"Aliases": ["a"]}}
    # the SDK's exec body names the container; dockerd 20.10 has no such field
    assert canonical(loads(b'{"Container":"c","Cmd":["true"]}'), S["ContainerExec"]) == {
        "Cmd": ["true"]
    }
    # the SDK's NetworkingConfig {"<network>": null}: an unknown key with a null value
    assert canonical(
        loads(b'{"Image":"x","NetworkingConfig":{"n3":null}}'), S["ContainerCreate"]
    ) == {
        "Image": "x",
        "NetworkingConfig": {},
    }
    with pytest.raises(Malformed, match="NetworkingConfig.n3: unknown field"):
        canonical(loads(b'{"NetworkingConfig":{"n3":{}}}'), S["ContainerCreate"])
    with pytest.raises(Malformed, match="Cmd: expected \\[\\]string"):  # exec's Cmd is no StrSlice
        canonical(loads(b'{"Cmd":"true"}'), S["ContainerExec"])
    with pytest.raises(Malformed, match="HostConfig: unknown field of container.Config"):
        canonical(loads(b'{"HostConfig":{}}'), S["ImageCommit"])


def test_the_rules_table_lists_accepted_and_dropped_keys():
    table = apispec.schema_table()
    assert set(table) == set(S)
    create = table["ContainerCreate"]
    for path in (
        "HostConfig.Privileged",
        "HostConfig.Mounts[].BindOptions.Propagation",
        "Privileged",
        "NetworkingConfig.EndpointsConfig{}.IPAMConfig.IPv4Address",
        "HostConfig.PortBindings{}[].HostPort",
    ):
        assert path in create["accepted"], path
    assert "NetworkingConfig.EndpointsConfig{}.DNSNames" in create["dropped"]
    assert table["ContainerExec"]["dropped"] == ["Container"]


def test_loads_refuses_what_go_and_the_service_could_read_differently():
    bad = {
        b'{"a":1,"A":2}': "(body): 'A': key given twice (also as 'a')",
        b'{"HostConfig":{"Binds":[{"x":1,"x":2}]}}': "HostConfig.Binds[0]: 'x': key given twice",
        b'{"Labels":{"k":"1","K":"2"}}': "Labels: 'K': key given twice",
        b'{"\xc5\xbftopsignal":"x"}': "non-ASCII",
        b"[NaN]": "NaN is not JSON",
        b'{"a":Infinity}': "Infinity is not JSON",
        b'{"a":-Infinity}': "-Infinity is not JSON",
        b"[1e400]": "out of range",
        b'{"a":"\\ud800"}': "a: lone UTF-16 surrogate",
        b'{"\\udc00":1}': "non-ASCII",
        b"\xef\xbb\xbf{}": "invalid JSON",  # a BOM: Go refuses it too
        b'{"a":"\xff"}': "not UTF-8",
        b'{"a":1} {"b":2}': "invalid JSON",  # Go's Decoder would read the first only
        b"": "invalid JSON",
        b"[" * 65 + b"]" * 65: "nested deeper than 64",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000: "nested deeper than 64",
        b"[" * 1_000_000: "nested deeper than 64",
        b"1" * 5000: "invalid JSON",  # beyond Python's integer digit limit
    }
    for raw, message in bad.items():
        with pytest.raises(Malformed) as e:
            loads(raw)
        assert message in e.value.message, (raw[:40], e.value.message)
    assert loads(b'{"a":"[[[[","b":"\\"{{"}', max_depth=1) == {"a": "[[[[", "b": '"{{'}
    assert loads(b"[" * 64 + b"]" * 64) is not None
    assert isinstance(Malformed("x"), ValueError)


def test_dumps_is_what_the_service_sends():
    assert dumps({"a": ["é", 1, True, None]}) == b'{"a":["\\u00e9",1,true,null]}'


Q = apispec.QUERIES


def test_query_parameters_as_the_routers_read_them():
    assert parse_query(
        "container=c1&repo=r&tag=t&pause=&changes=A&changes=B", Q["ImageCommit"]
    ) == {
        "container": "c1",
        "repo": "r",
        "tag": "t",
        "changes": ["A", "B"],
    }
    assert parse_query("pause=0", Q["ImageCommit"]) == {"pause": False}
    assert parse_query("stream=", Q["ContainerStats"]) == {"stream": False}  # given: BoolValue("")
    for v, want in {
        "1": True,
        "True": True,
        " yes ": True,
        "x": True,
        "0": False,
        "no": False,
        "FALSE": False,
        "none": False,
        "": False,
        "\xa00\t": False,  # Go's TrimSpace trims U+00A0 ...
        "\x1c0": True,  # ... but not U+001C, which Python's strip() would
    }.items():
        assert parse_query(f"force={quote(v)}", Q["ContainerDelete"]) == {"force": want}, v
    assert parse_query(
        "t=a%2Fb&t=c+d&labels=%7B%22k%22%3A%22v%22%7D&rm=&memory=-5", Q["ImageBuild"]
    ) == {
        "t": ["a/b", "c d"],
        "labels": {"k": "v"},
        "memory": -5,
    }
    assert parse_query("names=a&names=b&&", Q["ImageGetAll"]) == {"names": ["a", "b"]}
    assert parse_query("verbose=T&scope=local", Q["NetworkInspect"]) == {
        "verbose": True,
        "scope": "local",
    }
    assert parse_query("only_ids=0&all=1", Q["ImageList"]) == {"all": True}  # the SDK's only_ids
    assert parse_query("tag=2&repo=cm&force=0", Q["ImageTag"]) == {"tag": "2", "repo": "cm"}


@pytest.mark.parametrize(
    ("op", "raw", "message"),
    [
        ("ImageCommit", "container=mine&container=theirs", "'container' given twice"),
        ("ImageTag", "repo=a&tag=x&repo=b", "'repo' given twice"),
        ("ImageBuild", "networkmode=none&networkmode=host", "'networkmode' given twice"),
        ("ImageBuild", "remote=a&remote=b", "'remote' given twice"),
        ("ImageBuild", "rm=&rm=1", "'rm' given twice"),
        ("ImageBuild", "memory=&memory=1", "'memory' given twice"),
        ("ImageCreate", "fromSrc=-&fromSrc=http://x", "'fromSrc' given twice"),
        ("ImageCreate", "repo=a&repo=b", "'repo' given twice"),
        ("ContainerList", "filters=%7B%7D&filters=%7B%7D", "'filters' given twice"),
        ("ContainerList", "bogus=1", "unknown parameter 'bogus' for ContainerList"),
        ("ContainerList", "All=1", "unknown parameter 'All'"),  # Go's form keys are exact
        ("ContainerList", "all=1;size=1", "';'"),
        ("ContainerList", "all=%zz", "invalid percent-escape"),
        ("ContainerList", "all=%4", "invalid percent-escape"),
        ("ContainerList", "all=%ff", "not UTF-8"),
        ("ContainerList", "limit=1.5", "not an integer"),
        ("ContainerList", "limit=1_0", "not an integer"),
        ("ContainerList", "limit= 1", "not an integer"),
        ("ContainerList", 'filters={"label":["a"],"LABEL":["b"]}', "twice"),
        ("ContainerList", "filters=%5B", "invalid JSON"),
        ("NetworkInspect", "verbose=yes", "not a boolean"),
        ("ContainerCreate", "name=a&name=b", "'name' given twice"),
    ],
)
def test_query_refusals(op, raw, message):
    with pytest.raises(Malformed) as e:
        parse_query(raw, Q[op])
    assert message in e.value.message


def test_build_query_writes_only_the_parsed_form():
    spec = Q["ImageBuild"]
    parsed = parse_query("t=a&t=b&q=yes&rm=0&buildargs=%7B%22A%22%3A%221%22%7D&cpuquota=%2B7", spec)
    assert (
        build_query(parsed, spec) == "t=a&t=b&q=1&rm=0&buildargs=%7B%22A%22%3A%221%22%7D&cpuquota=7"
    )
    assert parse_query(build_query(parsed, spec), spec) == parsed
    assert build_query({}, spec) == ""
    with pytest.raises(AssertionError):  # a decision may only write what the operation reads
        build_query({"bogus": "1"}, spec)
    with pytest.raises(AssertionError):
        build_query({"q": "1"}, spec)


def test_every_route_has_its_operations_query_and_body_schema():
    from ds01.docker.routes import ROUTES

    for spec in ROUTES:
        if spec.endpoint == "admin" and spec.op not in Q:
            continue  # admins' routes beyond the table (swarm, plugins): their query kept as given
        q = Q[spec.op]
        assert q.method in spec.methods, (spec.op, q.method)
        concrete = q.path.replace("{id}", "c1").replace("{name}", "img")
        assert spec.pattern.match(concrete), (spec.op, q.path)
        assert (spec.body == "json") == (spec.op in apispec.SCHEMAS), spec.op
    for (method, path), op in apispec.OPERATIONS.items():
        assert (Q[op].method, Q[op].path) == (method, path)
