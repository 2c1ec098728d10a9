"""The Docker API as dockerd 20.10 reads it: body schemas and query parameters.

Transcribed from moby v20.10.24 (commit 5d6db842238e3c4f5f9fb9ad70ea46b35227d084,
the version Debian 12 ships as docker.io 20.10.24+dfsg1, API 1.41):
api/types/container/{config,host_config}.go, api/types/mount, api/types/network,
api/types/blkiodev, api/types/strslice, api/types/volume, api/types/configs.go
(ExecConfig), api/types/types.go (ExecStartCheck, NetworkCreateRequest,
NetworkConnect/Disconnect), runconfig/config_unix.go (the create wrapper),
vendor go-connections/nat (PortSet, PortMap) and go-units (Ulimit); the query
parameters from api/server/router/*/ (what r.Form.Get, r.Form["x"],
httputils.BoolValue and strconv read). Operation names are the swagger
operationIds of API 1.41.

Field names are the json tag where there is one (``CpuShares``, ``Dns``,
``HostIp``, ``AuxiliaryAddresses``), else the Go field name; embedded structs
(Resources in HostConfig and UpdateConfig, Config in the create wrapper,
NetworkCreate in NetworkCreateRequest) are flattened as Go promotes them.

Dropped keys were found by capturing what the docker CLI 28.2 and the docker
SDK 7.2.0 send to this dockerd (both negotiate API 1.41): keys dockerd 20.10
has no field for, so removing them changes nothing dockerd does. An unknown key
whose value is ``null`` is dropped too (the SDK sends
``"NetworkingConfig": {"<network>": null}``): Go stores nothing for it.
"""

from __future__ import annotations

from ds01.docker.schema import (
    BOOL,
    BOOL_EMPTY_DEFAULT,
    INT,
    JSON,
    LIST,
    PARSEBOOL,
    STR,
    Array,
    Bool,
    GoType,
    Int,
    List,
    Map,
    Ptr,
    QuerySpec,
    Str,
    StrSlice,
    Struct,
)

S, B = Str(), Bool()
I64, INT_, U16, U32, U64, UINT = (
    Int("int64", 64),
    Int("int", 64),  # Go's int on amd64
    Int("uint16", 16, signed=False),
    Int("uint32", 32, signed=False),
    Int("uint64", 64, signed=False),
    Int("uint", 64, signed=False),
)
STRINGS = List(S)
LABELS = Map(S)
EMPTY = Struct("struct{}", {})

# --- container.Config -------------------------------------------------------

HEALTH = Struct(
    "HealthConfig",
    {"Test": STRINGS, "Interval": I64, "Timeout": I64, "StartPeriod": I64, "Retries": INT_},
)
PORT_SET = Map(EMPTY)  # nat.PortSet: map[Port]struct{}
CONFIG_FIELDS: dict[str, GoType] = {
    "Hostname": S,
    "Domainname": S,
    "User": S,
    "AttachStdin": B,
    "AttachStdout": B,
    "AttachStderr": B,
    "ExposedPorts": PORT_SET,
    "Tty": B,
    "OpenStdin": B,
    "StdinOnce": B,
    "Env": STRINGS,
    "Cmd": StrSlice(),
    "Healthcheck": HEALTH,
    "ArgsEscaped": B,
    "Image": S,
    "Volumes": Map(EMPTY),
    "WorkingDir": S,
    "Entrypoint": StrSlice(),
    "NetworkDisabled": B,
    "MacAddress": S,
    "OnBuild": STRINGS,
    "Labels": LABELS,
    "StopSignal": S,
    "StopTimeout": INT_,
    "Shell": StrSlice(),
}
CONFIG = Struct("container.Config", CONFIG_FIELDS)

# --- container.Resources, HostConfig ----------------------------------------

WEIGHT_DEVICE = Struct("blkiodev.WeightDevice", {"Path": S, "Weight": U16})
THROTTLE_DEVICE = Struct("blkiodev.ThrottleDevice", {"Path": S, "Rate": U64})
DEVICE_MAPPING = Struct(
    "container.DeviceMapping", {"PathOnHost": S, "PathInContainer": S, "CgroupPermissions": S}
)
DEVICE_REQUEST = Struct(
    "container.DeviceRequest",
    {
        "Driver": S,
        "Count": INT_,
        "DeviceIDs": STRINGS,
        "Capabilities": List(STRINGS),
        "Options": LABELS,
    },
)
ULIMIT = Struct("units.Ulimit", {"Name": S, "Hard": I64, "Soft": I64})
RESOURCES_FIELDS: dict[str, GoType] = {
    "CpuShares": I64,
    "Memory": I64,
    "NanoCpus": I64,
    "CgroupParent": S,
    "BlkioWeight": U16,
    "BlkioWeightDevice": List(Ptr(WEIGHT_DEVICE)),
    "BlkioDeviceReadBps": List(Ptr(THROTTLE_DEVICE)),
    "BlkioDeviceWriteBps": List(Ptr(THROTTLE_DEVICE)),
    "BlkioDeviceReadIOps": List(Ptr(THROTTLE_DEVICE)),
    "BlkioDeviceWriteIOps": List(Ptr(THROTTLE_DEVICE)),
    "CpuPeriod": I64,
    "CpuQuota": I64,
    "CpuRealtimePeriod": I64,
    "CpuRealtimeRuntime": I64,
    "CpusetCpus": S,
    "CpusetMems": S,
    "Devices": List(DEVICE_MAPPING),
    "DeviceCgroupRules": STRINGS,
    "DeviceRequests": List(DEVICE_REQUEST),
    "KernelMemory": I64,
    "KernelMemoryTCP": I64,
    "MemoryReservation": I64,
    "MemorySwap": I64,
    "MemorySwappiness": I64,
    "OomKillDisable": B,
    "PidsLimit": I64,
    "Ulimits": List(Ptr(ULIMIT)),
    "CpuCount": I64,
    "CpuPercent": I64,
    "IOMaximumIOps": U64,
    "IOMaximumBandwidth": U64,
}
RESTART_POLICY = Struct("container.RestartPolicy", {"Name": S, "MaximumRetryCount": INT_})
LOG_CONFIG = Struct("container.LogConfig", {"Type": S, "Config": LABELS})
PORT_BINDING = Struct("nat.PortBinding", {"HostIp": S, "HostPort": S})
MOUNT = Struct(
    "mount.Mount",
    {
        "Type": S,
        "Source": S,
        "Target": S,
        "ReadOnly": B,
        "Consistency": S,
        "BindOptions": Struct("mount.BindOptions", {"Propagation": S, "NonRecursive": B}),
        "VolumeOptions": Struct(
            "mount.VolumeOptions",
            {
                "NoCopy": B,
                "Labels": LABELS,
                "DriverConfig": Struct("mount.Driver", {"Name": S, "Options": LABELS}),
            },
        ),
        "TmpfsOptions": Struct("mount.TmpfsOptions", {"SizeBytes": I64, "Mode": U32}),
    },
)
HOST_CONFIG_FIELDS: dict[str, GoType] = {
    "Binds": STRINGS,
    "ContainerIDFile": S,
    "LogConfig": LOG_CONFIG,
    "NetworkMode": S,
    "PortBindings": Map(List(PORT_BINDING)),  # nat.PortMap
    "RestartPolicy": RESTART_POLICY,
    "AutoRemove": B,
    "VolumeDriver": S,
    "VolumesFrom": STRINGS,
    "CapAdd": StrSlice(),
    "CapDrop": StrSlice(),
    "CgroupnsMode": S,
    "Dns": STRINGS,
    "DnsOptions": STRINGS,
    "DnsSearch": STRINGS,
    "ExtraHosts": STRINGS,
    "GroupAdd": STRINGS,
    "IpcMode": S,
    "Cgroup": S,
    "Links": STRINGS,
    "OomScoreAdj": INT_,
    "PidMode": S,
    "Privileged": B,
    "PublishAllPorts": B,
    "ReadonlyRootfs": B,
    "SecurityOpt": STRINGS,
    "StorageOpt": LABELS,
    "Tmpfs": LABELS,
    "UTSMode": S,
    "UsernsMode": S,
    "ShmSize": I64,
    "Sysctls": LABELS,
    "Runtime": S,
    "ConsoleSize": Array(UINT, 2),
    "Isolation": S,
    **RESOURCES_FIELDS,
    "Mounts": List(MOUNT),
    "MaskedPaths": STRINGS,
    "ReadonlyPaths": STRINGS,
    "Init": B,
}
HOST_CONFIG = Struct("container.HostConfig", HOST_CONFIG_FIELDS)

# --- networking ---------------------------------------------------------------

ENDPOINT_SETTINGS = Struct(
    "network.EndpointSettings",
    {
        "IPAMConfig": Struct(
            "network.EndpointIPAMConfig",
            {"IPv4Address": S, "IPv6Address": S, "LinkLocalIPs": STRINGS},
        ),
        "Links": STRINGS,
        "Aliases": STRINGS,
        "NetworkID": S,
        "EndpointID": S,
        "Gateway": S,
        "IPAddress": S,
        "IPPrefixLen": INT_,
        "IPv6Gateway": S,
        "GlobalIPv6Address": S,
        "GlobalIPv6PrefixLen": INT_,
        "MacAddress": S,
        "DriverOpts": LABELS,
    },
    # docker CLI 28 at API 1.41: fields of API 1.45 / 1.48
    dropped=frozenset({"DNSNames", "GwPriority"}),
)
NETWORKING_CONFIG = Struct(
    "network.NetworkingConfig", {"EndpointsConfig": Map(Ptr(ENDPOINT_SETTINGS))}
)

# --- the create wrapper (runconfig.ContainerConfigWrapper) ---------------------

# getHostConfig: without a "HostConfig" object, HostConfig fields given at the
# top level are the host config; with one, only these five are taken from the
# top level, and only where the inner value is zero. "Cpuset" fills CpusetCpus.
_MERGED_FROM_TOP = ("Memory", "MemorySwap", "CpuShares", "CpusetCpus", "VolumeDriver")


def _host_config_of_wrapper(out: dict, given: frozenset[str]) -> dict:
    top = {k: out.pop(k) for k in list(out) if k in HOST_CONFIG_FIELDS}
    cpuset = out.pop("Cpuset", "")
    host = out.get("HostConfig")
    if host is None:
        # any top-level HostConfig key, even a null one, makes Go allocate the
        # embedded struct: an empty HostConfig, which dockerd fills with defaults
        host = top if given & HOST_CONFIG_FIELDS.keys() else None
    else:
        host = dict(host)
        for key in _MERGED_FROM_TOP:
            if top.get(key) and not host.get(key):
                host[key] = top[key]
    if host is not None:
        if cpuset and not host.get("CpusetCpus"):
            host["CpusetCpus"] = cpuset
        out["HostConfig"] = host
    return out


if _both := CONFIG_FIELDS.keys() & HOST_CONFIG_FIELDS.keys():  # Go would read neither
    raise AssertionError(f"Config and HostConfig share {sorted(_both)}")

CONTAINER_CREATE = Struct(
    "runconfig.ContainerConfigWrapper",
    {
        **CONFIG_FIELDS,
        "HostConfig": HOST_CONFIG,
        "Cpuset": S,
        "NetworkingConfig": NETWORKING_CONFIG,
        **HOST_CONFIG_FIELDS,  # the embedded, deprecated *HostConfig
    },
    finish=_host_config_of_wrapper,
)

# --- the other bodies ------------------------------------------------------------

SCHEMAS: dict[str, Struct] = {
    "ContainerCreate": CONTAINER_CREATE,
    "ContainerUpdate": Struct(
        "container.UpdateConfig", {**RESOURCES_FIELDS, "RestartPolicy": RESTART_POLICY}
    ),
    "ContainerExec": Struct(
        "types.ExecConfig",
        {
            "User": S,
            "Privileged": B,
            "Tty": B,
            "AttachStdin": B,
            "AttachStderr": B,
            "AttachStdout": B,
            "Detach": B,
            "DetachKeys": S,
            "Env": STRINGS,
            "WorkingDir": S,
            "Cmd": STRINGS,  # a plain []string here, not a StrSlice
        },
        dropped=frozenset({"Container"}),  # the SDK sends the container id
    ),
    "ExecStart": Struct("types.ExecStartCheck", {"Detach": B, "Tty": B}),
    "VolumeCreate": Struct(
        "volume.VolumeCreateBody", {"Driver": S, "DriverOpts": LABELS, "Labels": LABELS, "Name": S}
    ),
    "NetworkCreate": Struct(
        "types.NetworkCreateRequest",
        {
            "CheckDuplicate": B,
            "Driver": S,
            "Scope": S,
            "EnableIPv6": B,
            "IPAM": Struct(
                "network.IPAM",
                {
                    "Driver": S,
                    "Options": LABELS,
                    "Config": List(
                        Struct(
                            "network.IPAMConfig",
                            {"Subnet": S, "IPRange": S, "Gateway": S, "AuxiliaryAddresses": LABELS},
                        )
                    ),
                },
            ),
            "Internal": B,
            "Attachable": B,
            "Ingress": B,
            "ConfigOnly": B,
            "ConfigFrom": Struct("network.ConfigReference", {"Network": S}),
            "Options": LABELS,
            "Labels": LABELS,
            "Name": S,
        },
    ),
    "NetworkConnect": Struct(
        "types.NetworkConnect", {"Container": S, "EndpointConfig": ENDPOINT_SETTINGS}
    ),
    "NetworkDisconnect": Struct("types.NetworkDisconnect", {"Container": S, "Force": B}),
    # dockerd decodes the whole create wrapper and keeps only the Config; the
    # service accepts the Config alone (the CLI and the SDK send nothing else).
    "ImageCommit": CONFIG,
}


def schema_table() -> dict[str, dict[str, list[str]]]:
    """For docs/docker.md: per schema, the accepted key paths (``[]`` marks a
    list element, ``{}`` a map value), the dropped ones; every other key is
    refused."""
    table = {}
    for op, struct in SCHEMAS.items():
        accepted: list[str] = []
        dropped: list[str] = []
        _walk(struct, "", accepted, dropped)
        table[op] = {"accepted": accepted, "dropped": dropped, "refused": ["any other key"]}
    return table


def _walk(t: GoType, path: str, accepted: list[str], dropped: list[str]) -> None:
    if isinstance(t, Struct):
        for name, sub in t.fields.items():
            p = f"{path}.{name}" if path else name
            accepted.append(p)
            _walk(sub, p, accepted, dropped)
        dropped += [f"{path}.{d}" if path else d for d in sorted(t.dropped)]
    elif isinstance(t, Ptr):
        _walk(t.elem, path, accepted, dropped)
    elif isinstance(t, List):
        _walk(t.elem, f"{path}[]", accepted, dropped)
    elif isinstance(t, Map):
        _walk(t.elem, f"{path}{{}}", accepted, dropped)


# --------------------------------------------------------------------------
# Query parameters, by operationId
# --------------------------------------------------------------------------

_FILTERS = {"filters": JSON}


def _q(op: str, route: str, params: dict[str, str] | None = None, dropped: str = "") -> QuerySpec:
    method, path = route.split()
    return QuerySpec(op, method, path, params or {}, frozenset(dropped.split()))


_LOGS = {
    "follow": BOOL,
    "stdout": BOOL,
    "stderr": BOOL,
    "since": STR,
    "until": STR,
    "timestamps": BOOL,
    "tail": STR,
    "details": BOOL,
}
_ATTACH = {
    "detachKeys": STR,
    "logs": BOOL,
    "stream": BOOL,
    "stdin": BOOL,
    "stdout": BOOL,
    "stderr": BOOL,
}
_BUILD = {
    "dockerfile": STR,
    "t": LIST,
    "extrahosts": LIST,
    "remote": STR,
    "q": BOOL,
    "nocache": BOOL,
    "cachefrom": JSON,
    "pull": BOOL,
    "rm": BOOL_EMPTY_DEFAULT,  # empty or absent: remove intermediates
    "forcerm": BOOL,
    "memory": INT,
    "memswap": INT,
    "cpushares": INT,
    "cpusetcpus": STR,
    "cpusetmems": STR,
    "cpuperiod": INT,
    "cpuquota": INT,
    "buildargs": JSON,
    "shmsize": INT,
    "squash": BOOL,
    "labels": JSON,
    "networkmode": STR,
    "platform": STR,
    "target": STR,
    "outputs": JSON,
    "securityopt": LIST,
    "session": STR,
    "buildid": STR,
    "version": STR,
    "ulimits": JSON,
    "isolation": STR,
    "cgroupparent": STR,
}

QUERIES: dict[str, QuerySpec] = {
    q.operation: q
    for q in [
        _q("SystemPing", "GET /_ping"),
        _q("SystemPingHead", "HEAD /_ping"),
        _q("SystemVersion", "GET /version"),
        _q("SystemInfo", "GET /info"),
        _q("SystemEvents", "GET /events", {"since": STR, "until": STR, **_FILTERS}),
        _q("SystemDataUsage", "GET /system/df"),
        _q("SystemAuth", "POST /auth"),
        _q("DistributionInspect", "GET /distribution/{name}/json"),
        _q("Session", "POST /session"),
        # the SDK sends trunc_cmd, which dockerd has not read since API 1.12
        _q(
            "ContainerList",
            "GET /containers/json",
            {"all": BOOL, "limit": INT, "size": BOOL, "since": STR, "before": STR, **_FILTERS},
            dropped="trunc_cmd",
        ),
        _q("ContainerCreate", "POST /containers/create", {"name": STR, "platform": STR}),
        _q("ContainerPrune", "POST /containers/prune", _FILTERS),
        _q("ContainerInspect", "GET /containers/{id}/json", {"size": BOOL}),
        _q("ContainerTop", "GET /containers/{id}/top", {"ps_args": STR}),
        _q("ContainerLogs", "GET /containers/{id}/logs", _LOGS),
        _q("ContainerChanges", "GET /containers/{id}/changes"),
        _q("ContainerExport", "GET /containers/{id}/export"),
        _q("ContainerStats", "GET /containers/{id}/stats", {"stream": BOOL, "one-shot": BOOL}),
        _q(
            "ContainerAttachWebsocket",
            "GET /containers/{id}/attach/ws",
            {"detachKeys": STR, "logs": BOOL, "stream": BOOL},
        ),
        _q("ContainerResize", "POST /containers/{id}/resize", {"h": INT, "w": INT}),
        _q("ContainerStop", "POST /containers/{id}/stop", {"t": INT}),
        _q("ContainerRestart", "POST /containers/{id}/restart", {"t": INT}),
        _q("ContainerKill", "POST /containers/{id}/kill", {"signal": STR}),
        _q("ContainerPause", "POST /containers/{id}/pause"),
        _q("ContainerUnpause", "POST /containers/{id}/unpause"),
        _q("ContainerAttach", "POST /containers/{id}/attach", _ATTACH),
        _q("ContainerWait", "POST /containers/{id}/wait", {"condition": STR}),
        _q(
            "ContainerStart",
            "POST /containers/{id}/start",
            {"checkpoint": STR, "checkpoint-dir": STR},
        ),
        _q("ContainerUpdate", "POST /containers/{id}/update"),
        _q("ContainerRename", "POST /containers/{id}/rename", {"name": STR}),
        _q("ContainerExec", "POST /containers/{id}/exec"),
        _q("ContainerArchiveInfo", "HEAD /containers/{id}/archive", {"path": STR}),
        _q("ContainerArchive", "GET /containers/{id}/archive", {"path": STR}),
        _q(
            "PutContainerArchive",
            "PUT /containers/{id}/archive",
            {"path": STR, "noOverwriteDirNonDir": BOOL, "copyUIDGID": BOOL},
        ),
        _q("ContainerDelete", "DELETE /containers/{id}", {"v": BOOL, "force": BOOL, "link": BOOL}),
        _q("ExecStart", "POST /exec/{id}/start"),
        _q("ExecResize", "POST /exec/{id}/resize", {"h": INT, "w": INT}),
        _q("ExecInspect", "GET /exec/{id}/json"),
        # the SDK sends only_ids (client-side only); "filter" is read below API 1.41 only
        _q("ImageList", "GET /images/json", {"all": BOOL, **_FILTERS}, dropped="only_ids"),
        _q("ImageBuild", "POST /build", _BUILD),
        _q("BuildPrune", "POST /build/prune", {"keep-storage": INT, "all": BOOL, **_FILTERS}),
        _q("BuildCancel", "POST /build/cancel", {"id": STR}),
        _q(
            "ImageCreate",
            "POST /images/create",
            {
                "fromImage": STR,
                "fromSrc": STR,
                "repo": STR,
                "tag": STR,
                "message": STR,
                "platform": STR,
                "changes": LIST,
            },
        ),
        _q("ImageLoad", "POST /images/load", {"quiet": BOOL}),
        _q("ImageGetAll", "GET /images/get", {"names": LIST}),
        _q("ImageSearch", "GET /images/search", {"term": STR, "limit": INT, **_FILTERS}),
        _q("ImagePrune", "POST /images/prune", _FILTERS),
        _q(
            "ImageCommit",
            "POST /commit",
            {
                "container": STR,
                "repo": STR,
                "tag": STR,
                "comment": STR,
                "author": STR,
                "pause": BOOL_EMPTY_DEFAULT,  # empty or absent: pause
                "changes": LIST,
            },
        ),
        _q("ImageInspect", "GET /images/{name}/json"),
        _q("ImageHistory", "GET /images/{name}/history"),
        _q("ImageGet", "GET /images/{name}/get"),
        _q("ImagePush", "POST /images/{name}/push", {"tag": STR}),
        # the SDK sends force, which dockerd 20.10 does not read
        _q("ImageTag", "POST /images/{name}/tag", {"repo": STR, "tag": STR}, dropped="force"),
        _q("ImageDelete", "DELETE /images/{name}", {"force": BOOL, "noprune": BOOL}),
        _q("NetworkList", "GET /networks", _FILTERS),
        _q("NetworkCreate", "POST /networks/create"),
        _q("NetworkPrune", "POST /networks/prune", _FILTERS),
        _q("NetworkInspect", "GET /networks/{id}", {"verbose": PARSEBOOL, "scope": STR}),
        _q("NetworkConnect", "POST /networks/{id}/connect"),
        _q("NetworkDisconnect", "POST /networks/{id}/disconnect"),
        _q("NetworkDelete", "DELETE /networks/{id}"),
        _q("VolumeList", "GET /volumes", _FILTERS),
        _q("VolumeCreate", "POST /volumes/create"),
        _q("VolumePrune", "POST /volumes/prune", _FILTERS),
        _q("VolumeInspect", "GET /volumes/{name}"),
        _q("VolumeDelete", "DELETE /volumes/{name}", {"force": BOOL}),
    ]
}

# Which operation each (method, swagger path template) is: the routes of
# ds01.docker.policy.ROUTES, named as API 1.41's swagger names them.
OPERATIONS: dict[tuple[str, str], str] = {(q.method, q.path): q.operation for q in QUERIES.values()}
