"""``ds01 config docs``: the policy reference, generated from the model.

Every key of :class:`ds01.config.Policy` with its type, unit, default, meaning
(the field's comment in ``ds01/config.py``) and what enforces it. What
enforces a key is not something the model knows, so :data:`ENFORCERS` says it,
one entry per model field: a test fails when a field has no entry (a new key
must say who acts on it) or when the file an entry names no longer mentions
the key. A key that only labels or informs is an :class:`Info`, never shown as
enforced.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ds01 import config
from ds01.units import format_duration, format_size

REFERENCE_PATH = "docs/admin/policy-reference.md"


@dataclass(frozen=True)
class By:
    """The key is acted on by ``where`` (a repository file), ``how``."""

    where: str
    how: str


@dataclass(frozen=True)
class Info:
    """Nothing enforces the key: it labels, explains or is shown (``how``)."""

    how: str


_CHECK = "ds01/config.py"  # refused by the policy check (every deploy and tool loads through it)
_SYNC = "ds01/identity/sync.py"
_CLASSIFY = "ds01/identity/classify.py"
_DIR = "ds01/identity/directory.py"
_SSSD = "templates/identity/sssd.conf.j2"
_CREATE = "ds01/docker/create.py"
_ALLOC = "ds01/gpu/allocator.py"
_REAP = "ds01/gpu/reconciler.py"
_SLICES = "ds01/slices.py"
_AREAS = "ds01/storage/areas.py"
_DOCKER = "deploys/docker.py"
_REPART = "ds01/gpu/repartition.py"
_BACKUP_DEPLOY = "deploys/backup.py"
_RESTIC = "ds01/backup/restic.py"
_MAINT = "deploys/maintenance.py"
_MON_DEPLOY = "deploys/monitoring.py"
_MON_RENDER = "ds01/monitoring/render.py"
_SLURM_RENDER = "ds01/cluster/render.py"

ENFORCERS: dict[str, By | Info] = {
    # roles.<role>
    "Role.description": Info("a note for whoever reads the policy; no tool reads it"),
    "Role.priority": By("ds01/gpu/queue.py", "orders the GPU queue; also breaks ties between "
                        "naming rules and groups (`ds01/identity/classify.py`)"),
    "GpuLimits.quota": By(_ALLOC, "the allocator refuses an assignment past it"),
    "GpuLimits.max_units_per_container": By(_ALLOC, "the allocator refuses more units per "
                                            "container; the docker service passes the count"),
    "GpuLimits.allow_full_gpu": By(_ALLOC, "the allocator refuses a whole GPU without it"),
    "ContainerLimits.cpus": By(_CREATE, "docker create is capped to it"),
    "ContainerLimits.memory": By(_CREATE, "docker create is capped to it"),
    "ContainerLimits.swap": By(_CREATE, "docker create is capped to it"),
    "ContainerLimits.shm_size": By(_CREATE, "docker create is capped to it"),
    "ContainerLimits.pids": By(_CREATE, "docker create is capped to it"),
    "Lifecycle.max_containers": By(_CREATE, "the docker service refuses the next create"),
    "Lifecycle.max_runtime": By(_REAP, "the reaper warns, then stops a GPU container"),
    "Lifecycle.idle_timeout": By(_REAP, "the reaper warns, then stops an idle GPU container"),
    "Lifecycle.gpu_hold_after_stop": By(_ALLOC, "a stopped container's units are released "
                                        "after it"),
    "Lifecycle.remove_stopped_after": By("ds01/docker/cleanup.py", "`ds01 docker cleanup` "
                                         "removes stopped containers past it"),
    "SliceLimits.cpu_quota": By(_SLICES, "systemd CPUQuota= of the slice (deploys/slices.py)"),
    "SliceLimits.memory_max": By(_SLICES, "systemd MemoryMax= of the slice"),
    "SliceLimits.memory_high": By(_SLICES, "systemd MemoryHigh= of the slice"),
    "SliceLimits.tasks_max": By(_SLICES, "systemd TasksMax= of the slice"),
    "SliceLimits.io_weight": By(_SLICES, "systemd IOWeight= of the slice"),
    "IdlePolicy.gpu_util_percent": By(_REAP, "a reading below it is idle"),
    "IdlePolicy.cpu_percent": By(_REAP, "a reading below it is idle"),
    "IdlePolicy.network_bytes": By(_REAP, "a reading below it is idle"),
    "IdlePolicy.check_interval": By(_REAP, "time between readings"),
    "IdlePolicy.consecutive_checks": By(_REAP, "idle readings before the idle clock starts"),
    "IdlePolicy.warn_before_stop": By(_REAP, "the owner's notice before a stop"),
    # overrides.<user>
    "UserOverride.reason": Info("why the exception exists, for the admins; no tool reads it"),
    "UserOverride.gpu": By(_CHECK, "merged over the role by `Policy.limits_for`"),
    "UserOverride.container": By(_CHECK, "merged over the role by `Policy.limits_for`"),
    "UserOverride.lifecycle": By(_CHECK, "merged over the role by `Policy.limits_for`"),
    "UserOverride.user_slice": By(_CHECK, "merged over the role by `Policy.limits_for`"),
    "UserOverride.login": By(_CHECK, "merged over the role by `Policy.limits_for`"),
    # identity
    "Identity.default_role": By(_CLASSIFY, "the role of a user no rule places"),
    "Identity.directory_groups": By(_CLASSIFY, "a role from directory group membership"),
    "Identity.members": By(_CLASSIFY, "explicit roles; `ds01 users sync` writes the groups"),
    "Identity.archived": By(_CLASSIFY, "no role: removed from every role group"),
    "Identity.system_users": By(_CLASSIFY, "never classified, never removed"),
    "Identity.admin_account": By("ds01/identity/guard.py", "`ds01 admin-guard` keeps it in sudo"),
    "NamingRule.pattern": By(_CLASSIFY, "matched against the account name"),
    "NamingRule.role": By(_CLASSIFY, "the role a match gives"),
    "Directory.enabled": By(_SYNC, "off: `ds01 users sync` reads no directory"),
    "Directory.kind": By(_DIR, "the directory's schema (AD or RFC2307)"),
    "Directory.uri": By(_DIR, "the sync's LDAP connection; SSSD's too"),
    "Directory.start_tls": By(_DIR, "StartTLS before the bind; SSSD's too"),
    "Directory.ca_file": By(_DIR, "the CA the sync and SSSD verify the server with"),
    "Directory.bind_dn": By(_DIR, "the sync's bind account; SSSD's too"),
    "Directory.bind_password_file": By(_DIR, "read by the sync; deploys/sssd.py installs it"),
    "Directory.user_base_dn": By(_DIR, "where users are searched"),
    "Directory.group_base_dn": By(_DIR, "where groups are searched"),
    "Directory.user_filter": By(_DIR, "which entries are users"),
    "Directory.page_size": By(_DIR, "LDAP paged search size"),
    "Directory.timeout": By(_DIR, "LDAP connect and search timeout"),
    "Directory.name_style": By(_CLASSIFY, "how a directory account is named on Linux; SSSD's "
                               "use_fully_qualified_names"),
    "Directory.domain": By(_CLASSIFY, "the suffix dropped to compare names"),
    "Directory.allow_cleartext": By(_CHECK, "without it the policy check refuses ldap:// "
                                    "without StartTLS"),
    "DirectoryAttributes.account": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.principal": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.mail": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.display_name": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.uid_number": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.gid_number": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.member_of": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.last_logon": By(_DIR, "LDAP attribute read"),
    "DirectoryAttributes.account_control": By(_DIR, "LDAP attribute read (disabled accounts)"),
    "SyncPolicy.max_drop_fraction": By(_SYNC, "the sync refuses to remove anyone past it"),
    "SyncPolicy.log_file": By("ds01/identity/cli.py", "every change the sync makes"),
    "SyncPolicy.state_file": By(_SYNC, "the last good sync (drop baseline)"),
    "ReportPolicy.dir": By("ds01/identity/report.py", "where `ds01 users report` writes"),
    "ReportPolicy.stale_after": By("ds01/identity/report.py", "what the report calls stale"),
    "Sssd.enabled": By("deploys/sssd.py", "whether the deploy configures SSSD"),
    "Sssd.tls_reqcert": By(_SSSD, "SSSD's ldap_tls_reqcert"),
    "HomePolicy.root": By("deploys/privacy.py", "homes under it are made private"),
    "HomePolicy.mode": By("deploys/privacy.py", "the mode of every home"),
    "Privacy.unlistable": By("deploys/privacy.py", "mode o-r on these paths"),
    # storage
    "Storage.quota_filesystem": By("ds01/storage/quota.py", "where the ext4 quotas are set "
                                   "(deploys/storage.py)"),
    "Area.kind": By(_AREAS, "the area's ACL shape (deploys/storage.py)"),
    "Area.path": By(_AREAS, "the directory created and ACL'd"),
    "Area.link": By("deploys/storage.py", "the symlink users know"),
    "Area.group": By(_AREAS, "the owning group"),
    "Area.read": By(_AREAS, "read ACL entries; the docker service mounts read-only for them"),
    "Area.write": By(_AREAS, "write ACL entries; the docker service allows rw mounts"),
    "Area.maintainers": By(_AREAS, "named users' write ACL entries"),
    "Area.sticky": By(_AREAS, "the sticky bit"),
    "Area.quota": By("ds01/storage/quota.py", "ext4 user quota (hard block limit) per role"),
    "Project.members": By(_AREAS, "rwx ACL entries of the project directory"),
    "Project.quota": By(_CHECK, "the policy check refuses it: not applied in this version"),
    "Purge.after": By("ds01/storage/purge.py", "files unused this long are removed"),
    "Purge.warn_before": By("ds01/storage/purge.py", "login notice of files due"),
    # gpu
    "Gpu.backend": By("ds01/gpu/backend.py", "where the GPU layout is read from"),
    "Gpu.state_dir": By(_ALLOC, "the allocator's database"),
    "Gpu.runtime_dir": By("ds01/gpu/snapshot.py", "the world-readable status snapshot"),
    "Gpu.queue_reservation": By("ds01/gpu/queue.py", "how long the queue's head keeps a unit"),
    "Gpu.reconcile_interval": By(_REAP, "the reconcile timer (deploys/gpu.py)"),
    "Gpu.bare_metal_roles": By(_DOCKER, "group of /dev/nvidia* (modprobe and udev)"),
    "Gpu.history_retention": By("ds01/gpu/store.py", "events and ended queue entries pruned"),
    "Gpu.dcgm_job_map_dir": By("ds01/gpu/dcgm.py", "dcgm-exporter's job-mapping files per GPU"),
    "SimulatedGpu.name": By("ds01/gpu/simulated.py", "the GPU's model name"),
    "SimulatedGpu.serial": By("ds01/gpu/simulated.py", "the UUID is derived from it"),
    "SimulatedGpu.memory": By("ds01/gpu/simulated.py", "the GPU's memory"),
    "SimulatedGpu.mig_slices": By("ds01/gpu/simulated.py", "MIG compute slices"),
    "SimulatedGpu.memory_slices": By("ds01/gpu/simulated.py", "MIG memory slices"),
    "SimulatedGpu.mig": By("ds01/gpu/simulated.py", "the MIG instances"),
    # docker
    "Docker.real_socket": By("ds01/docker/service.py", "the engine's socket the service uses"),
    "Docker.user_socket": By("ds01/docker/service.py", "the socket users' docker talks to"),
    "Docker.admins_use_real_socket": By(_DOCKER, "group ds01-admin on the real socket"),
    "Docker.allowed_capabilities": By(_CREATE, "other --cap-add refused"),
    "Docker.log_max_size": By(_DOCKER, "dockerd log-opts max-size"),
    "Docker.log_max_files": By(_DOCKER, "dockerd log-opts max-file"),
    "Docker.shared_images": By("ds01/docker/images.py", "images everyone may run and build FROM"),
    "ImagePrune.unused_for": By("ds01/docker/prune.py", "`ds01 images prune` removes older"),
    "ImagePrune.keep_label": By("ds01/docker/prune.py", "images with it are never pruned"),
    "DockerService.header_timeout": By("ds01/docker/service.py", "slow request heads closed"),
    "DockerService.body_timeout": By("ds01/docker/service.py", "stalled bodies closed"),
    "DockerService.idle_timeout": By("ds01/docker/service.py", "idle connections closed"),
    "DockerService.max_connections_per_user": By("ds01/docker/service.py", "answered 429 past it"),
    # schedules
    "Schedules.users_sync": By("deploys/users.py", "cron of `ds01 users sync`"),
    "Schedules.users_report": By("deploys/users.py", "cron of `ds01 users report`"),
    "Schedules.admin_guard": By("deploys/privacy.py", "cron of `ds01 admin-guard`"),
    "Schedules.scratch_purge": By("deploys/storage.py", "cron of `ds01 storage purge`"),
    "Schedules.image_prune": By(_DOCKER, "cron of `ds01 images prune`"),
    "Schedules.container_cleanup": By(_DOCKER, "cron of `ds01 docker cleanup`"),
    "Schedules.usage_report": By("deploys/gpu.py", "cron of `ds01 usage --report`"),
    "Schedules.backup": By(_BACKUP_DEPLOY, "cron of `ds01 backup run`"),
    "Schedules.backup_check": By(_BACKUP_DEPLOY, "cron of `ds01 backup check`"),
    "Schedules.restore_drill": By(_BACKUP_DEPLOY, "cron of `ds01 backup drill`"),
    "Schedules.security_upgrades": By(_MAINT, "cron of `ds01 maintenance upgrade`"),
    "Schedules.autoclean": By(_MAINT, "cron of `apt-get autoclean`"),
    "Schedules.fstrim": By(_MAINT, "cron of `fstrim --all` (Debian's fstrim.timer off)"),
    "Schedules.logrotate": By(_MAINT, "cron of logrotate (Debian's logrotate.timer off)"),
    "Schedules.doctor": By(_MAINT, "cron of `ds01 doctor`"),
    # gpu.layout
    "GpuLayout.gpus": By(_REPART, "`ds01 gpu layout plan|apply` lays out these GPUs"),
    "GpuLayout.model": By(_REPART, "a GPU of another model is not touched (plan says so)"),
    "GpuLayout.mig": By(_REPART, "the GPU instances `ds01 gpu layout apply` creates"),
    # backup
    "Backup.repository": By(_RESTIC, "RESTIC_REPOSITORY of every restic run"),
    "Backup.password_file": By(_RESTIC, "RESTIC_PASSWORD_FILE (never on a command line)"),
    "Backup.env_file": By(_RESTIC, "credentials read into restic's environment"),
    "Backup.exclude": By(_RESTIC, "`restic backup --exclude`"),
    "Backup.exclude_if_present": By(_RESTIC, "`restic backup --exclude-if-present`"),
    "Backup.exclude_caches": By(_RESTIC, "`restic backup --exclude-caches`"),
    "Backup.check_subset": By(_RESTIC, "`restic check --read-data-subset`"),
    "Backup.drill_sample": By("ds01/backup/run.py", "files the restore drill compares"),
    "Backup.max_age": By("ds01/ops/doctor.py", "`ds01 doctor` warns past it"),
    "BackupSources.homes": By(_RESTIC, "a path of `restic backup`"),
    "BackupSources.shared_areas": By(_RESTIC, "paths of `restic backup` (scratch left out)"),
    "BackupSources.docker_volumes": By(_RESTIC, "a path of `restic backup`"),
    "BackupSources.etc_ds01": By(_RESTIC, "a path of `restic backup`"),
    "BackupSources.state": By(_RESTIC, "a path of `restic backup` (the database staged)"),
    "BackupSources.configs": By(_RESTIC, "paths of `restic backup`"),
    "BackupSources.extra": By(_RESTIC, "paths of `restic backup`"),
    "BackupRetention.keep_daily": By(_RESTIC, "`restic forget --keep-daily`"),
    "BackupRetention.keep_weekly": By(_RESTIC, "`restic forget --keep-weekly`"),
    "BackupRetention.keep_monthly": By(_RESTIC, "`restic forget --keep-monthly`"),
    # maintenance
    "Maintenance.security_upgrades": By(_MAINT, "unattended-upgrades installed and scheduled"),
    "Maintenance.allow_upgrades": By("ds01/ops/maintenance.py", "packages left out of the "
                                     "upgrade blacklist"),
    "Maintenance.journald_max_use": By(_MAINT, "journald SystemMaxUse= drop-in"),
    "Maintenance.journald_max_retention": By(_MAINT, "journald MaxRetentionSec= drop-in"),
    "Maintenance.logs_keep": By(_MAINT, "logrotate `rotate` of /var/log/ds01/*"),
    # monitoring
    "Monitoring.listen_address": By(_MON_DEPLOY, "where Prometheus, Alertmanager and the "
                                    "exporters listen"),
    "Monitoring.retention": By(_MON_DEPLOY, "Prometheus --storage.tsdb.retention.time"),
    "Monitoring.scrape_interval": By(_MON_RENDER, "prometheus.yml scrape_interval"),
    "Monitoring.evaluation_interval": By(_MON_RENDER, "prometheus.yml evaluation_interval"),
    "Monitoring.storage_interval": By(_MON_DEPLOY, "timer of the storage metrics"),
    "MonitoringPorts.prometheus": By(_MON_RENDER, "Prometheus' listen port"),
    "MonitoringPorts.alertmanager": By(_MON_RENDER, "Alertmanager's listen port"),
    "MonitoringPorts.node_exporter": By(_MON_RENDER, "the node exporter's listen port"),
    "MonitoringPorts.exporter": By(_MON_RENDER, "the DS01 exporter's listen port"),
    "AlertThresholds.queue_wait": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.job_late_after": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.job_late": By(_MON_RENDER, "alert rule threshold, per job"),
    "AlertThresholds.sync_stale_after": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.oom_kills": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.oom_window": By(_MON_RENDER, "alert rule window"),
    "AlertThresholds.filesystem_full_percent": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.quota_full_percent": By(_MON_RENDER, "alert rule threshold"),
    "AlertThresholds.service_down_for": By(_MON_RENDER, "alert rule `for:`"),
    "EmailReceiver.to": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "EmailReceiver.sender": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "EmailReceiver.smarthost": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "EmailReceiver.username": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "EmailReceiver.password_file": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "EmailReceiver.require_tls": By(_MON_RENDER, "Alertmanager e-mail receiver"),
    "WebhookReceiver.url": By(_MON_RENDER, "Alertmanager webhook receiver"),
    "WebhookReceiver.bearer_token_file": By(_MON_RENDER, "Alertmanager webhook receiver"),
    "Grafana.enabled": By(_MON_DEPLOY, "Grafana installed and provisioned"),
    "Grafana.apt_repository": By(_MON_DEPLOY, "the apt source Grafana comes from"),
    "Grafana.signing_key_url": By(_MON_DEPLOY, "the key that apt source is checked with"),
    "Grafana.port": By(_MON_RENDER, "Grafana's listen port"),
    # cluster
    "Cluster.name": By(_SLURM_RENDER, "slurm.conf ClusterName"),
    "Cluster.controller": By(_SLURM_RENDER, "slurm.conf SlurmctldHost"),
    "ClusterNode.address": By(_SLURM_RENDER, "slurm.conf NodeAddr"),
    "ClusterNode.reserved_memory": By("ds01/cluster/nodes.py", "slurm.conf RealMemory is the "
                                      "rest"),
    "NodeGpus.slurm": By(_SLURM_RENDER, "the GPUs in gres.conf"),
    "NodeGpus.interactive": By(_SLURM_RENDER, "GPUs left out of gres.conf for `ds01 gpu`"),
    "Partition.nodes": By(_SLURM_RENDER, "slurm.conf PartitionName Nodes="),
    "Partition.default": By(_SLURM_RENDER, "slurm.conf PartitionName Default="),
    "Partition.max_time": By(_SLURM_RENDER, "slurm.conf PartitionName MaxTime="),
    "Accounting.database": By(_SLURM_RENDER, "slurmdbd.conf StorageLoc"),
    # site
    "Site.name": Info("names the slices' descriptions and the simulated GPUs"),
    "Site.cpus": By(_CHECK, "the policy check refuses a limit above it"),
    "Site.memory": By(_CHECK, "the policy check refuses a limit above it"),
    "Policy.version": By(_CHECK, "the policy check refuses another version"),
}

# Where a section's keys sit in the file, and the heading of its table.
_SECTIONS = {
    "roles": "roles.ROLE",
    "overrides": "overrides.USER",
    "areas": "areas.AREA",
    "projects": "projects.PROJECT",
}


# --------------------------------------------------------------------------
# The meaning of a field: its comment in ds01/config.py
# --------------------------------------------------------------------------


def field_comments(source: str) -> dict[str, str]:
    """``"Class.field"`` -> the comment on the field's line, or the comment lines
    just above it, in ``source`` (the module's text)."""
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            text = comments.get(stmt.end_lineno or stmt.lineno, "")
            if not text:
                above, n = [], stmt.lineno - 1
                while n in comments and lines[n - 1].strip().startswith("#"):
                    above.insert(0, comments[n])
                    n -= 1
                text = " ".join(above)
            if text and not text.startswith(("type:", "fmt:")):
                out[f"{node.name}.{stmt.target.id}"] = text
    return out


# --------------------------------------------------------------------------
# Types, units and defaults
# --------------------------------------------------------------------------

_UNITS = {
    "parse_size": ("size", "bytes: `512m`, `8g`, `1.5t`"),
    "parse_duration": ("duration", "seconds: `90s`, `30m`, `12h`, `7d`"),
    "parse_percent": ("percent", "`150%` (100% is one CPU)"),
    "_abs_path": ("path", ""),
    "_cron": ("cron", "5 fields or `@daily`"),
    "_regex": ("regex", ""),
    "_mode": ("mode", "octal string: `'0700'`"),
}


def _unit_of(metadata: list[Any]) -> tuple[str, str] | None:
    for m in metadata:
        fn = getattr(m, "func", None)
        if fn is not None and fn.__name__ in _UNITS:
            return _UNITS[fn.__name__]
    return None


def _strip(ann: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(ann) is Annotated:
        base, *meta = typing.get_args(ann)
        return base, meta
    return ann, []


def type_name(ann: Any, metadata: list[Any] = ()) -> tuple[str, str]:
    """(type, unit) of an annotation as the policy file writes it."""
    ann, meta = _strip(ann)
    meta = [*metadata, *meta]
    unit = _unit_of(meta)
    if unit:
        return unit
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        name, unit = type_name(parts[0])
        return f"{name} or null", unit
    if origin is Literal:
        return " or ".join(f"`{a}`" for a in typing.get_args(ann)), ""
    if origin is list:
        name, unit = type_name(typing.get_args(ann)[0])
        return f"list of {name}", unit
    if origin is dict:
        k, v = typing.get_args(ann)
        kname, _ = type_name(k)
        vname, unit = type_name(v)
        return f"map {kname} → {vname}", unit
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section", ""
    patterns = [getattr(m, "pattern", None) for m in meta]
    patterns += [getattr(x, "pattern", None) for m in meta for x in getattr(m, "metadata", [])]
    if r"^[a-z][a-z0-9_]*$" in patterns:
        return "name", ""
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(ann, str(ann)), ""


def _default(info: FieldInfo, type_: str) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "null"
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if type_.startswith("size") and isinstance(value, int):
        return f"`{format_size(value)}`"
    if type_.startswith("duration") and isinstance(value, int):
        return f"`{format_duration(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == [] or value == {}:
        return "empty"
    return f"`{value}`"


# --------------------------------------------------------------------------
# Walking the model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    path: str  # as written in the file: roles.ROLE.gpu.quota
    field: str  # Class.field, the key of ENFORCERS
    type: str
    unit: str
    default: str
    meaning: str
    enforcer: By | Info | None


def _model_of(ann: Any) -> tuple[type[BaseModel] | None, str]:
    """The section model inside an annotation, and the path suffix it adds."""
    ann, _ = _strip(ann)
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        return _model_of(parts[0]) if len(parts) == 1 else (None, "")
    if origin is list:
        model, suffix = _model_of(typing.get_args(ann)[0])
        return model, "[]" + suffix
    if origin is dict:
        model, suffix = _model_of(typing.get_args(ann)[1])
        return model, ".*" + suffix
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, ""
    return None, ""


def walk(model: type[BaseModel] = config.Policy, prefix: str = "") -> list[Key]:
    """Every leaf key under ``model``, in the model's order."""
    comments = field_comments(inspect.getsource(config))
    return list(_walk(model, prefix, comments))


def _walk(model: type[BaseModel], prefix: str, comments: dict[str, str]):
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        sub, suffix = _model_of(info.annotation)
        if sub is not None and model is config.UserOverride:
            # A patch of a role section: the same keys, each optional.
            section = f"roles.ROLE.{name}"
            type_, unit = f"any keys of `{section}`", ""
        elif sub is not None:
            if suffix.startswith(".*"):
                suffix = "." + _SECTIONS.get(name, name.upper()).split(".")[-1] + suffix[2:]
            yield from _walk(sub, path + suffix, comments)
            continue
        else:
            type_, unit = type_name(info.annotation, info.metadata)
        key = f"{model.__name__}.{name}"
        yield Key(path, key, type_, unit, _default(info, type_),
                  comments.get(key, ""), ENFORCERS.get(key))  # fmt: skip


def model_fields() -> list[str]:
    """``Class.field`` of every field that holds a value (sections are walked into)."""
    return sorted({k.field for k in walk()})


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------

_HEADER = """\
# Policy reference

<!-- Generated by `ds01 config docs -o docs/admin/policy-reference.md` from
ds01/config.py and ds01/policy_docs.py; do not edit by hand. -->

Every key of `config/resource-allocation.yaml`, generated from the policy
model (`ds01/config.py`), so it cannot drift from what the tools read:
`tests/unit/test_policy_docs.py` fails when this page is stale. A key's
meaning is the comment on its field in the model; *enforced by* names the
deploy or tool that acts on it (and a test fails when that file stops
mentioning the key). Keys marked *not enforced* only label or inform.

Units: a **size** is written `512m`, `8g`, `1.5t` (bytes); a **duration**
`90s`, `30m`, `12h`, `7d` (seconds); a **percent** `150%`. Capitalised parts
of a path (`ROLE`, `USER`, `AREA`) are names you choose; `[]` is a list
item. Check a file with `ds01 config check FILE`; how to change the policy
safely is in [the runbook](runbook.md#change-the-policy).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _meaning_and_enforcer(k: Key) -> tuple[str, str]:
    """The model's comment is the meaning; where it has none, what the enforcer
    does with the key says it."""
    e = k.enforcer
    if isinstance(e, By):
        where = f"`{e.where}`"
        return (k.meaning, f"{where}: {e.how}") if k.meaning else (e.how, where)
    if isinstance(e, Info):
        return k.meaning or e.how, "*not enforced*" + (f": {e.how}" if k.meaning else "")
    return k.meaning, "**unknown**"


def render(keys: list[Key] | None = None) -> str:
    keys = walk() if keys is None else keys
    out = [_HEADER]
    section = None
    for k in keys:
        top = k.path.split(".")[0].split("[")[0] if "." in k.path else ""
        if top != section:
            section = top
            doc = _section_model(top).__dict__.get("__doc__") if top else ""
            out += ["", f"## `{top}`" if top else "## Top level", ""]
            if doc:
                out += [inspect.cleandoc(doc), ""]
            out += ["| key | type | default | meaning | enforced by |",
                    "| --- | --- | --- | --- | --- |"]  # fmt: skip
        type_ = k.type + (f" ({k.unit})" if k.unit else "")
        meaning, enforcer = _meaning_and_enforcer(k)
        out.append(
            f"| `{k.path}` | {_cell(type_)} | {k.default} | {_cell(meaning) or '-'} "
            f"| {_cell(enforcer)} |"
        )
    return "\n".join(out) + "\n"


def _section_model(top: str) -> type[BaseModel]:
    model, _ = _model_of(config.Policy.model_fields[top].annotation)
    return model or config.Policy


def write(path: str | Path) -> bool:
    """Write the reference to ``path``; True when it changed."""
    p = Path(path)
    text = render()
    if p.exists() and p.read_text() == text:
        return False
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return True
