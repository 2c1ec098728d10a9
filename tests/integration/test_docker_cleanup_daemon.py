"""`ds01 docker cleanup` against a real dockerd: stopped containers past their
role's limit go, running ones and fresh ones stay, the owner is told first."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

ALICE = 61001
IMG = "ds01-test/debian:bookworm"
DAY = 86400


def test_cleanup_removes_only_stopped_containers_past_the_limit(env, tmp_path):
    import docker

    from ds01.docker.cleanup import cleanup

    for args in (["--name", "gone", IMG, "true"], ["-d", "--name", "runs", IMG, "sleep", "100"]):
        r = env.as_user(ALICE, "run", *args)
        assert r.returncode == 0, r.stderr
    r = env.as_user(ALICE, "create", "--name", "never", IMG, "true")
    assert r.returncode == 0, r.stderr
    env.dockerd.cli("create", "--name", "admins", IMG, "true")  # no owner: the admins'
    api = docker.APIClient(base_url=f"unix://{env.dockerd.sock}")
    limit = env.policy.roles["student"].lifecycle.remove_stopped_after

    p, errors = cleanup(api, env.policy, time.time() + limit - DAY / 2, notice_dir=None)
    assert not p.remove and not errors
    assert sorted(c.name for c, _ in p.notices["123456@example.lan"]) == ["gone", "never"]

    p, errors = cleanup(api, env.policy, time.time() + limit + 60, dry_run=True)
    assert sorted(c.name for c, _ in p.remove) == ["gone", "never"]
    assert env.dockerd.cli("inspect", "gone", check=False).returncode == 0  # dry run

    p, errors = cleanup(api, env.policy, time.time() + limit + 60, notice_dir=None)
    assert not errors
    left = set(env.dockerd.cli("ps", "-a", "--format", "{{.Names}}").stdout.split())
    assert {"runs", "admins"} <= left and not {"gone", "never"} & left
