"""The policy model: one typed view of ``config/resource-allocation.yaml``.

Deploys (on the controller) and runtime tools (on the server) read the policy
through :func:`load_policy` only. Loading is strict: unknown keys, wrong types,
bad units and contradictions are all collected and raised together as a
:class:`PolicyError`, each as ``FILE:LINE: key.path: what is wrong``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ds01.units import parse_duration, parse_percent, parse_size

DEFAULT_POLICY_PATH = "/etc/ds01/resource-allocation.yaml"

# --------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------

Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[int, BeforeValidator(parse_duration)]
Percent = Annotated[int, BeforeValidator(parse_percent)]


def _abs_path(v: str) -> str:
    if not v.startswith("/") or "//" in v or v != v.rstrip("/") or "/../" in v + "/":
        raise ValueError(f"{v!r} must be a normalised absolute path such as '/srv/ds01/data'")
    return v


def _cron(v: str) -> str:
    fields = v.split()
    if v.startswith("@") and v in {"@hourly", "@daily", "@weekly", "@monthly", "@reboot"}:
        return v
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields):
        raise ValueError(f"{v!r} is not a 5-field cron schedule such as '*/15 * * * *'")
    return v


def _regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"bad regular expression {v!r}: {e}") from None
    return v


def _mode(v: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3,4}", v):
        raise ValueError(f"bad file mode {v!r}: write it as an octal string such as '0700'")
    return v.rjust(4, "0")


AbsPath = Annotated[str, AfterValidator(_abs_path)]
Cron = Annotated[str, AfterValidator(_cron)]
Regex = Annotated[str, AfterValidator(_regex)]
Mode = Annotated[str, AfterValidator(_mode)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------
# Roles and their limits
# --------------------------------------------------------------------------


class GpuLimits(Strict):
    """Fair share of the GPUs, in GPU-equivalents (a full GPU is 1.0)."""

    quota: float | None = Field(ge=0)  # null: no limit
    max_units_per_container: int = Field(ge=0)
    allow_full_gpu: bool


class ContainerLimits(Strict):
    """What one container of the role gets (docker create is rewritten to this)."""

    cpus: float = Field(gt=0)
    memory: Size
    swap: Size  # on top of memory; '0m' disables swap
    shm_size: Size
    pids: int = Field(gt=0)


class Lifecycle(Strict):
    max_containers: int | None = Field(ge=0)  # null: no limit
    max_runtime: Duration | None  # null: may run forever
    idle_timeout: Duration | None  # null: never reaped for idleness
    gpu_hold_after_stop: Duration  # a stopped container keeps its GPU this long
    remove_stopped_after: Duration | None  # a stopped container is removed after this


class SliceLimits(Strict):
    """systemd resource controls of a slice; null means 'infinity'."""

    cpu_quota: Percent | None  # CPUQuota: 100% is one CPU
    memory_max: Size | None
    memory_high: Size | None
    tasks_max: int | None = Field(gt=0)
    io_weight: int | None = Field(default=None, ge=1, le=10000)


class IdlePolicy(Strict):
    """A GPU container is idle when all readings stay below these for the window."""

    gpu_util_percent: int = Field(ge=0, le=100)
    cpu_percent: float = Field(ge=0)
    network_bytes: Size  # per check interval
    check_interval: Duration
    consecutive_checks: int = Field(ge=1)
    warn_before_stop: Duration


class Role(Strict):
    description: str
    priority: int  # GPU queue: higher is served first
    gpu: GpuLimits
    container: ContainerLimits
    lifecycle: Lifecycle
    user_slice: SliceLimits  # everything one user runs in containers, together
    login: SliceLimits  # one user's processes outside containers
    idle: IdlePolicy


def _patch_of(model: type[Strict]) -> type[Strict]:
    """The same model with every field optional: a per-user override of a section."""
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if info.metadata:
            ann = Annotated[(ann, *info.metadata)]  # keep the unit parsers and bounds
        fields[name] = (ann | None, None)
    return create_model(f"{model.__name__}Override", __base__=Strict, **fields)


class UserOverride(Strict):
    """Per-user exceptions, merged over the user's role (only the keys given)."""

    reason: str
    gpu: _patch_of(GpuLimits) | None = None  # type: ignore[valid-type]
    container: _patch_of(ContainerLimits) | None = None  # type: ignore[valid-type]
    lifecycle: _patch_of(Lifecycle) | None = None  # type: ignore[valid-type]
    user_slice: _patch_of(SliceLimits) | None = None  # type: ignore[valid-type]
    login: _patch_of(SliceLimits) | None = None  # type: ignore[valid-type]


# --------------------------------------------------------------------------
# Identity: who is in which role
# --------------------------------------------------------------------------


class DirectoryAttributes(Strict):
    account: str = "sAMAccountName"
    principal: str = "userPrincipalName"
    mail: str = "mail"
    display_name: str = "displayName"
    uid_number: str = "uidNumber"
    gid_number: str = "gidNumber"
    member_of: str = "memberOf"
    last_logon: str = "lastLogonTimestamp"
    account_control: str = "userAccountControl"


def account_key(name: str, domain: str) -> str:
    """One key per account, whatever the spelling: ``C.Rivera@example.lan`` and
    ``c.rivera`` -> ``c.rivera`` (only ``domain``'s suffix is dropped)."""
    user, at, dom = name.rpartition("@")
    if at and dom.casefold() == domain.casefold():
        name = user
    return name.casefold()


class Directory(Strict):
    """Where users and groups are read from (AD, or an RFC2307 LDAP server)."""

    enabled: bool
    kind: Literal["ad", "rfc2307"]
    uri: str = Field(pattern=r"^ldaps?://[^\s]+$")
    start_tls: bool
    ca_file: AbsPath | None
    bind_dn: str | None
    bind_password_file: AbsPath  # root-only file on the server, never in the repo
    user_base_dn: str
    group_base_dn: str
    user_filter: str
    page_size: int = Field(ge=1, le=1000)
    timeout: Duration
    attributes: DirectoryAttributes
    # How directory accounts appear as Linux names: 'j.doe' or 'j.doe@example.lan'.
    name_style: Literal["plain", "qualified"]
    domain: str
    # ldap:// without StartTLS sends the bind password and every answer in
    # cleartext; only an explicit `allow_cleartext: true` accepts that.
    allow_cleartext: bool = False

    @model_validator(mode="after")
    def _no_cleartext(self) -> Directory:
        if self.uri.startswith("ldap://") and not self.start_tls and not self.allow_cleartext:
            raise ValueError(
                f"uri {self.uri} without start_tls would bind and read in cleartext: use "
                "ldaps://, or set start_tls: true; allow_cleartext: true accepts it knowingly"
            )
        return self


class NamingRule(Strict):
    pattern: Regex  # matched against the plain account name (no @domain)
    role: Name


class SyncPolicy(Strict):
    # Refuse to remove anyone when the directory's user count drops by more than this.
    max_drop_fraction: float = Field(ge=0, le=1)
    log_file: AbsPath
    # Users seen by the last good sync and the directory's size then (the drop baseline).
    state_file: AbsPath = "/var/lib/ds01/identity/state.json"


class ReportPolicy(Strict):
    """``ds01 users report``: the weekly staleness report (the tool never deletes)."""

    dir: AbsPath = "/var/lib/ds01/reports"
    # No login and no file change for this long -> candidate for deletion.
    stale_after: Duration = 180 * 86400


class Sssd(Strict):
    """Optional SSSD set-up by deploys/sssd.py (leave off where IT owns the AD join)."""

    enabled: bool = False
    # TLS certificate checking of SSSD's LDAP connection: demand on a real server.
    tls_reqcert: Literal["demand", "hard", "allow", "never"] = "demand"


class HomePolicy(Strict):
    root: AbsPath
    mode: Mode


class Privacy(Strict):
    """System paths users may traverse but not list (mode o-r)."""

    unlistable: list[AbsPath]


class Identity(Strict):
    directory: Directory
    default_role: Name
    naming_rules: list[NamingRule]
    directory_groups: dict[str, Name]  # group CN -> role
    members: dict[Name, list[str]]  # explicit role lists: always win
    archived: list[str]  # no role, no access; home kept for the admin
    system_users: list[str]  # never classified (service and admin accounts)
    admin_account: str  # always keeps sudo
    sync: SyncPolicy
    home: HomePolicy
    privacy: Privacy
    report: ReportPolicy = ReportPolicy()
    sssd: Sssd = Sssd()


# --------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------


class Purge(Strict):
    after: Duration  # unused (atime and mtime) for this long -> removed
    warn_before: Duration


class Project(Strict):
    members: list[str]
    quota: Size | None = None


class Area(Strict):
    kind: Literal["readonly", "collaborative", "projects", "scratch"]
    path: AbsPath  # where the area physically lives
    link: AbsPath | None  # the short path users know
    group: str  # owning group
    read: list[Name]  # roles that may read
    write: list[Name]  # roles that may write
    maintainers: list[str] = []  # users who may write besides the write roles
    sticky: bool  # only a file's owner may delete it
    quota: dict[Name, Size] = {}  # per role, per user (ext4 user/project quota)
    purge: Purge | None = None
    projects: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.]*$")], Project] = {}


class Storage(Strict):
    quota_filesystem: AbsPath | None  # mount point with usrquota/prjquota
    areas: dict[Name, Area]

    @model_validator(mode="after")
    def _quotas_fit_the_filesystem(self) -> Storage:
        # ext4 user quotas count a user's files on the whole filesystem, so one
        # per-role figure per filesystem: it must live on the quota filesystem.
        with_quota = [n for n, a in self.areas.items() if a.quota]
        with_projects = [
            n for n, a in self.areas.items() if any(p.quota for p in a.projects.values())
        ]
        fs = self.quota_filesystem
        for name in with_quota + with_projects:
            path = self.areas[name].path
            if fs is None or not (path + "/").startswith(fs + "/"):
                raise ValueError(
                    f"area '{name}' sets quotas but {path} is not under quota_filesystem ({fs}); "
                    "move the area or set quota_filesystem to its mount point"
                )
        if with_projects:
            raise ValueError(
                f"area(s) {', '.join(with_projects)} set a project quota, which this version does "
                "not apply yet; remove projects.<name>.quota rather than rely on it"
            )
        if len(with_quota) > 1:
            raise ValueError(
                f"areas {', '.join(with_quota)} all set per-user quotas, but an ext4 user quota "
                "covers the whole filesystem: set 'quota' on one area only"
            )
        kinds = [n for n, a in self.areas.items() if a.kind == "scratch"]
        for name, area in self.areas.items():
            if area.purge is not None and area.kind != "scratch":
                raise ValueError(f"area '{name}' sets purge but only a scratch area is purged")
            if area.projects and area.kind != "projects":
                raise ValueError(f"area '{name}' lists projects but is not of kind 'projects'")
        if len(kinds) > 1:
            raise ValueError(f"areas {', '.join(kinds)} are all scratch areas; keep one")
        return self


# --------------------------------------------------------------------------
# GPUs, docker, schedules
# --------------------------------------------------------------------------


class SimulatedGpu(Strict):
    name: str
    # The board's stable identity (as a real GPU's serial number): its UUID is
    # derived from it, so removing or reordering GPUs renames no other one.
    # Required when more than one GPU is simulated.
    serial: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] | None = None
    memory: Size
    mig_slices: int = Field(ge=1)  # compute slices of a MIG-capable GPU (7 on A100/H100)
    memory_slices: int = Field(default=8, ge=1)  # memory slices (8 on A100/H100/H200)
    mig: list[Annotated[str, Field(pattern=r"^[1-9]g\.\d+gb$")]] | None  # null: MIG off

    @model_validator(mode="after")
    def _profiles_fit(self) -> SimulatedGpu:
        used = sum(int(p.split("g.")[0]) for p in self.mig or [])
        if used > self.mig_slices:
            raise ValueError(
                f"MIG profiles {self.mig} need {used} compute slices; the GPU has "
                f"mig_slices = {self.mig_slices}"
            )
        return self


# -- issue 11: the declarative MIG layout -----------------------------------


class GpuLayout(Strict):
    """The partitioning ``ds01 gpu layout apply`` gives some GPUs."""

    gpus: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)  # indexes, as nvidia-smi's
    model: str  # the GPUs' name as NVML gives it ("NVIDIA A100-SXM4-40GB")
    # GPU-instance profiles, one compute instance each; null: the whole GPU (MIG off)
    mig: list[str] | None

    @model_validator(mode="after")
    def _fits(self) -> GpuLayout:
        from ds01.gpu.profiles import place

        place(self.model, self.mig or [])  # LayoutInvalid is a ValueError: FILE:LINE
        return self


class Gpu(Strict):
    backend: Literal["auto", "nvml", "simulated"]
    simulated: list[SimulatedGpu]
    state_dir: AbsPath
    # tmpfs directory for the world-readable status snapshot (rewritten on every decision)
    runtime_dir: AbsPath = "/run/ds01-gpu"
    queue_reservation: Duration  # a released unit is held for the queue's head this long
    reconcile_interval: Duration
    # Users who may open /dev/nvidia* outside containers (besides root).
    bare_metal_roles: list[Name]
    # How long the allocator keeps its event log and ended queue entries.
    history_retention: Duration = 30 * 86400
    # The desired partitioning (issue 11); GPUs not listed are left as they are.
    layout: list[GpuLayout] = []
    # Where the allocator writes dcgm-exporter's job-mapping files (its
    # --hpc-job-mapping-dir), so DCGM's metrics carry the holder; null: none.
    dcgm_job_map_dir: AbsPath | None = None

    @model_validator(mode="after")
    def _serials(self) -> Gpu:
        seen: dict[int, int] = {}
        for i, entry in enumerate(self.layout):
            for index in entry.gpus:
                if index in seen:
                    raise ValueError(
                        f"layout[{i}]: GPU {index} is already laid out by layout[{seen[index]}]"
                    )
                seen[index] = i
        serials = [g.serial for g in self.simulated]
        if len(serials) > 1:
            for i, serial in enumerate(serials):
                if serial is None:
                    raise ValueError(
                        f"simulated[{i}].serial is missing: with several simulated GPUs each "
                        "needs a serial (its UUID is derived from it, not from its position)"
                    )
                if serials.index(serial) != i:
                    raise ValueError(f"simulated[{i}].serial {serial!r} is used twice")
        return self


class ImagePrune(Strict):
    unused_for: Duration
    keep_label: str


class DockerService(Strict):
    """Limits of the access service itself (one user must not starve the rest)."""

    header_timeout: Duration = 10  # a request head must arrive within this
    body_timeout: Duration = 60  # the longest pause inside a request body
    idle_timeout: Duration = 60  # a kept-alive connection with no request is closed
    max_connections_per_user: int = Field(default=64, ge=1)  # open at once, per uid


class Docker(Strict):
    real_socket: AbsPath
    user_socket: AbsPath
    admins_use_real_socket: bool
    allowed_capabilities: list[Annotated[str, Field(pattern=r"^[A-Z_]+$")]]
    log_max_size: Size
    log_max_files: int = Field(ge=1)
    image_prune: ImagePrune
    # Image names (repo:tag, shell wildcards) every user may run and build FROM;
    # only admins may change what they name. Other images are their owner's.
    shared_images: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/:@*?-]*$")]] = []
    service: DockerService = DockerService()


class Schedules(Strict):
    """Cron schedules of the recurring jobs (all run `ds01 ...` on the server)."""

    users_sync: Cron
    users_report: Cron
    admin_guard: Cron
    scratch_purge: Cron
    image_prune: Cron
    container_cleanup: Cron = "20 * * * *"  # stopped containers past remove_stopped_after
    usage_report: Cron = "30 0 1 * *"  # issue 11: last month's GPU usage, /var/lib/ds01/reports
    # issue 12: backups and their checks (run only where the policy has a backup section)
    backup: Cron = "15 2 * * *"
    backup_check: Cron = "45 4 * * 0"  # restic check --read-data-subset (backup.check_subset)
    restore_drill: Cron = "0 5 1 * *"  # restores a sample of the latest snapshot and compares
    # issue 12: maintenance, logs and the daily self-check (deploys/maintenance.py)
    security_upgrades: Cron = "0 3 * * *"  # apt-get update, then unattended-upgrade
    autoclean: Cron = "30 5 * * 0"  # apt-get autoclean
    fstrim: Cron = "0 6 * * 0"  # fstrim --all on the filesystems that support it
    logrotate: Cron = "0 0 * * *"
    doctor: Cron = "0 7 * * *"  # ds01 doctor --quiet: its result is the job's


# --------------------------------------------------------------------------
# issue 12: backups (restic; ds01/backup/, deploys/backup.py)
# --------------------------------------------------------------------------


def _repository(v: str) -> str:
    if v.startswith("/"):
        return _abs_path(v)
    if not re.fullmatch(r"(sftp|rest|s3|b2|azure|gs|swift|rclone):\S+", v):
        raise ValueError(f"{v!r}: a restic repository is an absolute path or a URL such as "
                         "'sftp:backup@host:/srv/restic', 'rest:https://host:8000/ds01', 's3:...'")
    if re.search(r"://[^/@]*:[^/@]*@", v):
        raise ValueError("the repository URL holds a password: put it in backup.env_file")
    return v


class BackupRetention(Strict):
    """`restic forget --prune` after each backup keeps this many of each."""

    keep_daily: int = Field(ge=0)
    keep_weekly: int = Field(ge=0)
    keep_monthly: int = Field(ge=0)


class BackupSources(Strict):
    """What is backed up; the allocator database always goes in through
    SQLite's online backup (a consistent copy), never as the live file."""

    homes: bool = True
    shared_areas: bool = True  # every storage area except the scratch
    docker_volumes: bool = True  # /var/lib/docker/volumes
    etc_ds01: bool = True
    state: bool = True  # /var/lib/ds01 (job records, reports, notices, allocator copy)
    configs: list[AbsPath] = [  # what the deploys render outside /etc/ds01
        "/etc/cron.d", "/etc/systemd/system", "/etc/sudoers.d", "/etc/profile.d",
        "/etc/modprobe.d", "/etc/docker", "/etc/sssd", "/etc/security/limits.d",
    ]  # fmt: skip
    extra: list[AbsPath] = []


class Backup(Strict):
    """Present: backed up (deploys/backup.py); absent: nothing is (doctor says so)."""

    repository: Annotated[str, AfterValidator(_repository)]
    password_file: AbsPath = "/etc/ds01/backup/password"  # root 0600; created if absent
    env_file: AbsPath | None = None  # root 0600: AWS_ACCESS_KEY_ID=..., RESTIC_REST_PASSWORD=...
    sources: BackupSources = BackupSources()
    exclude: list[str] = [".cache", "__pycache__", "node_modules"]
    exclude_if_present: list[str] = [".ds01-nobackup"]  # a user's mark: skip this directory
    exclude_caches: bool = True  # directories with a CACHEDIR.TAG
    retention: BackupRetention
    check_subset: Annotated[str, Field(pattern=r"^([0-9]{1,2}(\.[0-9]+)?%|[0-9]+/[0-9]+)$")] = "5%"
    drill_sample: int = Field(default=20, ge=1)  # files the monthly restore drill checks
    max_age: Duration = 2 * 86400  # older last success: ds01 doctor and the exporter warn


class Maintenance(Strict):
    """Unattended security upgrades (never a reboot) and the logs' limits."""

    security_upgrades: bool = True
    # held back from automatic upgrades unless named here (ds01/ops/maintenance.py HELD)
    allow_upgrades: list[Literal["nvidia", "docker", "kernel"]] = []
    journald_max_use: Size = 1 << 30  # SystemMaxUse
    journald_max_retention: Duration = 30 * 86400  # MaxRetentionSec
    logs_keep: int = Field(default=8, ge=1)  # weekly rotations of /var/log/ds01/* kept


class Site(Strict):
    name: str
    cpus: int = Field(gt=0)  # the server's capacity: no limit may exceed it
    memory: Size


# --------------------------------------------------------------------------
# Monitoring (issue 13): Prometheus, node exporter, Alertmanager, the exporter
# --------------------------------------------------------------------------


class MonitoringPorts(Strict):
    prometheus: int = Field(default=9090, ge=1, le=65535)
    alertmanager: int = Field(default=9093, ge=1, le=65535)
    node_exporter: int = Field(default=9100, ge=1, le=65535)
    exporter: int = Field(default=9901, ge=1, le=65535)  # the DS01 exporter


class EmailReceiver(Strict):
    """Alerts by e-mail (Alertmanager's email_config)."""

    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    smarthost: str = Field(pattern=r"^[A-Za-z0-9.-]+:\d+$")  # host:port of the mail relay
    username: str | None = None
    # Root-only file with the relay password (group prometheus may read it).
    password_file: AbsPath | None = None
    require_tls: bool = True


class WebhookReceiver(Strict):
    """Alerts as JSON POSTs (Alertmanager's webhook_config)."""

    url: str = Field(pattern=r"^https?://[^\s]+$")
    bearer_token_file: AbsPath | None = None  # root-only file with the token


class AlertThresholds(Strict):
    """When the alert rules fire (the GPU idle rule is each role's ``idle``)."""

    queue_wait: Duration = 3600  # the queue's oldest entry has waited this long
    job_late_after: Duration = 2 * 86400  # no success of a scheduled job for this long
    job_late: dict[Name, Duration] = {}  # per job key, overriding job_late_after
    sync_stale_after: Duration = 3 * 3600  # no successful directory sync for this long
    oom_kills: int = Field(default=3, ge=1)  # OOM kills of one user's containers...
    oom_window: Duration = 3600  # ...within this window
    filesystem_full_percent: int = Field(default=90, ge=1, le=100)
    quota_full_percent: int = Field(default=90, ge=1, le=100)
    service_down_for: Duration = 120  # a DS01 service or target down this long


class Grafana(Strict):
    """Grafana is not in Debian: with ``enabled`` the deploy adds Grafana's own
    apt repository, which the policy must name (no default is built in)."""

    enabled: bool = False
    # The rest of the sources.list line after the URL's "deb": "URL SUITE COMPONENT".
    apt_repository: str | None = Field(default=None, pattern=r"^https://\S+ \S+ \S+$")
    signing_key_url: str | None = Field(default=None, pattern=r"^https://\S+$")
    port: int = Field(default=3000, ge=1, le=65535)

    @model_validator(mode="after")
    def _source_given(self) -> Grafana:
        if self.enabled and (self.apt_repository is None or self.signing_key_url is None):
            raise ValueError(
                "enabled needs apt_repository and signing_key_url: Grafana comes from its "
                "vendor's apt repository, which the policy must name"
            )
        return self


class Monitoring(Strict):
    """Prometheus, node exporter and Alertmanager (Debian's) and the DS01 exporter."""

    # Every component listens here; reach them through an SSH tunnel (docs/monitoring.md).
    listen_address: str = Field(default="127.0.0.1", pattern=r"^[0-9a-fA-F.:]+$")
    retention: Duration = 30 * 86400
    scrape_interval: Duration = 30
    evaluation_interval: Duration = 30
    storage_interval: Duration = 900  # how often storage use per user is measured (repquota)
    ports: MonitoringPorts = MonitoringPorts()
    alerts: AlertThresholds = AlertThresholds()
    email: EmailReceiver | None = None
    webhook: WebhookReceiver | None = None
    grafana: Grafana = Grafana()


# Cluster (issue 14): Slurm on the GPU nodes, generated from this policy
# --------------------------------------------------------------------------

HostName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]


class NodeGpus(Strict):
    """Which GPUs of a node (by NVML index) Slurm schedules and which the
    interactive allocator (ds01 gpu) hands out; a GPU is never in both."""

    slurm: list[Annotated[int, Field(ge=0)]] | Literal["all"] = "all"
    interactive: list[Annotated[int, Field(ge=0)]] = []

    def slurm_owns(self, index: int) -> bool:
        """Whether GPU ``index`` is Slurm's: the one decision both sides read
        (``ds01.cluster.nodes.slurm_gpus`` puts it in gres.conf, the
        interactive allocator leaves it out), so they cannot disagree."""
        return (self.slurm == "all" or index in self.slurm) and index not in self.interactive


class ClusterNode(Strict):
    address: str | None = None  # how the other nodes reach it (default: its name)
    gpus: NodeGpus = NodeGpus()
    # Memory left to the operating system and the daemons (RealMemory is the rest).
    reserved_memory: Size = 4 * 1024**3


class Partition(Strict):
    nodes: list[HostName]
    default: bool = False
    max_time: Duration | None = None  # null: the QOS (the role's max_runtime) decides


class Accounting(Strict):
    """slurmdbd's MariaDB database, on the controller. slurmdbd (user slurm)
    reaches it over MariaDB's Unix socket with unix_socket authentication,
    so there is no database password to keep anywhere."""

    database: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] = "slurm_acct_db"


class Cluster(Strict):
    """Optional: without this section DS01 is one server, exactly as before."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    controller: HostName  # runs slurmctld and slurmdbd (the DS01 head)
    nodes: dict[HostName, ClusterNode]  # the compute nodes (slurmd)
    partitions: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Partition]
    accounting: Accounting = Accounting()

    def compute_only(self, name: str) -> bool:
        """Whether host ``name`` (its Slurm name) is a compute node and not the
        head: it gets identity and Slurm only, and SSH only into jobs."""
        return name in self.nodes and name != self.controller

    @model_validator(mode="after")
    def _one_default(self) -> Cluster:
        defaults = [n for n, p in self.partitions.items() if p.default]
        if len(defaults) > 1:
            raise ValueError(f"partitions {', '.join(defaults)} are all default; keep one")
        return self


class Policy(Strict):
    version: Literal[1]
    site: Site
    roles: dict[Name, Role]
    overrides: dict[str, UserOverride]
    identity: Identity
    storage: Storage
    gpu: Gpu
    docker: Docker
    schedules: Schedules
    backup: Backup | None = None  # issue 12: none = no backups (ds01 doctor warns)
    maintenance: Maintenance = Maintenance()  # issue 12
    monitoring: Monitoring = Monitoring()
    cluster: Cluster | None = None  # issue 14: Slurm on several GPU nodes

    def slurm_gpu_on_head(self, index: int) -> bool:
        """Whether GPU ``index`` of the DS01 head (the cluster's controller,
        where the interactive allocator runs) is Slurm's; never without a
        cluster, or where the head is no compute node."""
        node = self.cluster.nodes.get(self.cluster.controller) if self.cluster else None
        return node is not None and node.gpus.slurm_owns(index)

    def override_for(self, user: str) -> UserOverride | None:
        """The override of ``user`` whatever the spelling: ``c.rivera`` in the
        policy is ``c.rivera@example.lan`` on the server (name_style: qualified)."""
        key = account_key(user, self.identity.directory.domain)
        for name, ov in self.overrides.items():
            if account_key(name, self.identity.directory.domain) == key:
                return ov
        return None

    def limits_for(self, role: str, user: str | None = None) -> Role:
        """The effective limits of ``user`` in ``role``: the role, then their override."""
        base = self.roles[role]
        ov = self.override_for(user) if user else None
        if ov is None:
            return base
        update = {}
        for section in ("gpu", "container", "lifecycle", "user_slice", "login"):
            patch = getattr(ov, section)
            if patch is not None:
                given = patch.model_dump(exclude_unset=True)
                update[section] = getattr(base, section).model_copy(update=given)
        return base.model_copy(update=update)


# --------------------------------------------------------------------------
# Loading with line numbers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


class PolicyError(Exception):
    """The policy file is invalid; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


Loc = tuple[str | int, ...]


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int], dupes: list[tuple[Loc, int]]):
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            k = key.value
            if k in seen:
                dupes.append((path + (k,), key.start_mark.line + 1))
            seen.add(k)
            lines[path + (k,)] = key.start_mark.line + 1
            _walk(value, path + (k,), lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, dupes)


def _line_of(lines: dict[Loc, int], loc: Loc) -> int:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _pydantic_problems(err: ValidationError, data: Any) -> Iterator[tuple[Loc, str]]:
    for e in err.errors():
        # Drop the type tags pydantic adds for unions ('float', 'function-before[...]').
        loc: list[str | int] = []
        node = data
        for part in e["loc"]:
            if isinstance(node, dict) and part in node:
                node = node[part]
                loc.append(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
                loc.append(part)
            elif e["type"] == "extra_forbidden" and part == e["loc"][-1]:
                loc.append(part)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"].endswith("_type") or e["type"].endswith("_parsing"):
            msg = f"{msg[0].lower()}{msg[1:]}, got {e['input']!r}"
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and where it is nested)"
        elif e["type"] == "missing":
            msg = f"missing required key '{e['loc'][-1]}'"
            loc.append(e["loc"][-1])
            yield tuple(loc[:-1]) + (loc[-1],), msg
            continue
        yield tuple(loc), msg


def _semantic_problems(data: dict) -> Iterator[tuple[Loc, str]]:
    """Contradictions between sections, checked on the raw data so that they are
    reported together with type errors elsewhere in the file."""

    def d(x: Any) -> dict:
        return x if isinstance(x, dict) else {}

    def lst(x: Any) -> list:
        return x if isinstance(x, list) else []

    roles = set(d(data.get("roles")))
    ident = d(data.get("identity"))

    def check_role(loc: Loc, value: Any) -> Iterator[tuple[Loc, str]]:
        if isinstance(value, str) and roles and value not in roles:
            yield loc, f"role '{value}' is not defined under 'roles' ({', '.join(sorted(roles))})"

    yield from check_role(("identity", "default_role"), ident.get("default_role"))
    for i, rule in enumerate(lst(ident.get("naming_rules"))):
        yield from check_role(("identity", "naming_rules", i, "role"), d(rule).get("role"))
    for grp, role in d(ident.get("directory_groups")).items():
        yield from check_role(("identity", "directory_groups", grp), role)

    placed: dict[str, Loc] = {}
    for role, users in d(ident.get("members")).items():
        yield from check_role(("identity", "members", role), role)
        for i, user in enumerate(lst(users)):
            loc = ("identity", "members", role, i)
            if user in placed:
                other = placed[user]
                yield loc, (
                    f"user '{user}' is listed in two roles: '{other[2]}' and '{role}'; "
                    "keep one"
                )
            else:
                placed[user] = loc
    for key in ("archived", "system_users"):
        for i, user in enumerate(lst(ident.get(key))):
            if user in placed:
                yield ("identity", key, i), (
                    f"user '{user}' is in identity.{key} and in role "
                    f"'{placed[user][2]}'; a user is one or the other"
                )

    for name, area in d(d(data.get("storage")).get("areas")).items():
        area = d(area)
        for key in ("read", "write"):
            for i, role in enumerate(lst(area.get(key))):
                yield from check_role(("storage", "areas", name, key, i), role)
        for role in d(area.get("quota")):
            yield from check_role(("storage", "areas", name, "quota", role), role)
    for i, role in enumerate(lst(d(data.get("gpu")).get("bare_metal_roles"))):
        yield from check_role(("gpu", "bare_metal_roles", i), role)
    for user in d(data.get("overrides")):
        if user in d(ident).get("archived", []):
            yield ("overrides", user), f"user '{user}' is archived; remove the override"
    yield from _cluster_problems(d(data.get("cluster")))


def _cluster_problems(cluster: dict) -> Iterator[tuple[Loc, str]]:
    """A GPU in Slurm's and the interactive allocator's hands, partitions of
    unknown nodes (issue 14)."""
    nodes = cluster.get("nodes") if isinstance(cluster.get("nodes"), dict) else {}
    for name, node in nodes.items():
        gpus = node.get("gpus") if isinstance(node, dict) else None
        if not isinstance(gpus, dict):
            continue
        slurm, inter = gpus.get("slurm", "all"), gpus.get("interactive", [])
        if not isinstance(inter, list):
            continue
        for i, index in enumerate(inter):
            if slurm == "all" or (isinstance(slurm, list) and index in slurm):
                yield ("cluster", "nodes", name, "gpus", "interactive", i), (
                    f"GPU {index} of node '{name}' is also Slurm's "
                    f"(gpus.slurm: {slurm}); a GPU belongs to Slurm or to the interactive "
                    "allocator, never both: list Slurm's GPUs explicitly"
                )
    parts = cluster.get("partitions") if isinstance(cluster.get("partitions"), dict) else {}
    for pname, part in parts.items():
        members = part.get("nodes") if isinstance(part, dict) else None
        for i, node in enumerate(members if isinstance(members, list) else []):
            if isinstance(node, str) and nodes and node not in nodes:
                yield ("cluster", "partitions", pname, "nodes", i), (
                    f"node '{node}' is not defined under cluster.nodes "
                    f"({', '.join(sorted(nodes))})"
                )


def _valid(model: type[Strict], raw: Any) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # reported by the whole-file validation


def _limit_problems(data: dict, policy: Policy | None) -> Iterator[tuple[Loc, str]]:
    """Per-container limits above the per-user aggregate, limits above the server.

    Each role is checked on its own so that a typo in one role does not hide a
    contradiction in another."""
    site = _valid(Site, data.get("site"))
    raw_roles = data.get("roles") if isinstance(data.get("roles"), dict) else {}
    checks: list[tuple[Loc, Role]] = []
    for name, raw in raw_roles.items():
        role = _valid(Role, raw)
        if role is not None:
            checks.append((("roles", name), role))
    if policy is not None:
        members = {u: r for r, us in policy.identity.members.items() for u in us}
        for user in policy.overrides:
            role_name = members.get(user, policy.identity.default_role)
            if role_name in policy.roles:
                checks.append((("overrides", user), policy.limits_for(role_name, user)))
    for loc, role in checks:
        c, s = role.container, role.user_slice
        for sec in ("user_slice", "login"):
            lim: SliceLimits = getattr(role, sec)
            if site is None:
                break
            site_pct = site.cpus * 100
            if lim.cpu_quota is not None and lim.cpu_quota > site_pct:
                yield loc + (sec, "cpu_quota"), (
                    f"{lim.cpu_quota}% is more than the server has "
                    f"(site.cpus = {site.cpus}, i.e. {site_pct}%)"
                )
            if lim.memory_max is not None and lim.memory_max > site.memory:
                yield loc + (sec, "memory_max"), "is more memory than the server has (site.memory)"
            if (
                lim.memory_high is not None
                and lim.memory_max is not None
                and lim.memory_high > lim.memory_max
            ):
                yield loc + (sec, "memory_high"), "is above memory_max; it must be at or below it"
        if s.cpu_quota is not None and c.cpus * 100 > s.cpu_quota:
            yield loc + ("container", "cpus"), (
                f"{c.cpus:g} CPUs per container is above the per-user aggregate "
                f"user_slice.cpu_quota {s.cpu_quota}%"
            )
        if s.memory_max is not None and c.memory > s.memory_max:
            yield loc + ("container", "memory"), (
                "per-container memory is above the per-user aggregate user_slice.memory_max"
            )
        if s.tasks_max is not None and c.pids > s.tasks_max:
            yield loc + ("container", "pids"), (
                "per-container pids is above the per-user aggregate user_slice.tasks_max"
            )
        g = role.gpu
        if g.quota is not None and g.max_units_per_container > 0 and g.quota <= 0:
            yield loc + ("gpu", "quota"), "is 0 but max_units_per_container allows GPUs"


# libyaml's safe loader where PyYAML has it (its wheels do): the same documents,
# the same marks, and on a slow CPU seconds less for every command that reads the policy.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_policy(text: str, filename: str = "<policy>") -> Policy:
    """Validate policy text; raise :class:`PolicyError` listing every problem."""
    try:
        # One parse: the nodes give the lines, the same nodes give the data.
        loader = _YAML_LOADER(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise PolicyError([Problem(filename, line, "(yaml)", str(e).replace("\n", " "))]) from None
    if not isinstance(data, dict):
        raise PolicyError([Problem(filename, 1, "(top)", "the policy must be a YAML mapping")])
    lines: dict[Loc, int] = {}
    dupes: list[tuple[Loc, int]] = []
    _walk(root, (), lines, dupes)

    found: list[tuple[Loc, str]] = [(loc, "duplicate key (the later one would win)")
                                     for loc, _ in dupes]
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as err:
        found.extend(_pydantic_problems(err, data))
    found.extend(_semantic_problems(data))
    found.extend(_limit_problems(data, policy))
    if found:
        problems = [
            Problem(filename, _line_of(lines, loc), _dotted(loc), msg) for loc, msg in found
        ]
        dupe_lines = {_dotted(loc): line for loc, line in dupes}
        problems = [
            Problem(p.file, dupe_lines.get(p.path, p.line), p.path, p.message)
            if p.message.startswith("duplicate key")
            else p
            for p in problems
        ]
        problems.sort(key=lambda p: (p.line, p.path))
        raise PolicyError(problems)
    assert policy is not None
    return policy


def source_lines(text: str) -> dict[Loc, int]:
    """Key path -> line in policy text (``("overrides", "c.rivera")`` -> 12)."""
    lines: dict[Loc, int] = {}
    _walk(yaml.compose(text, Loader=_YAML_LOADER), (), lines, [])
    return lines


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    return _line_of(lines, loc)


def load_policy(path: str | Path = DEFAULT_POLICY_PATH) -> Policy:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PolicyError([Problem(str(p), 0, "(file)", f"cannot read: {e.strerror}")]) from None
    return parse_policy(text, str(path))
