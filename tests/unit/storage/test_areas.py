"""The area plan: which ACL every area directory gets, from the policy alone."""

import pytest
import yaml

from ds01.config import PolicyError, parse_policy
from ds01.storage import areas


def _with_storage(policy_text, mutate):
    data = yaml.safe_load(policy_text)
    mutate(data["storage"])
    return parse_policy(yaml.safe_dump(data), "policy.yaml")


def _by_path(policy):
    return {d.path: d for d in areas.plan(policy)}


def test_readonly_area_everyone_reads_admins_write(policy):
    d = _by_path(policy)["/srv/ds01/data"]
    assert d.group == "ds01-admin"
    assert d.access == {
        "user:": "rwx", "group:": "rwx",  # ds01-admin owns it and the admin role writes
        "group:ds01-student": "r-x", "group:ds01-researcher": "r-x", "group:ds01-faculty": "r-x",
        "other:": "---",
    }  # fmt: skip
    assert d.default == d.access and d.setgid and not d.sticky


def test_collaborative_area_roles_write_by_default_acl_and_sticky(policy):
    d = _by_path(policy)["/srv/ds01/collab"]
    assert all(d.default[f"group:ds01-{r}"] == "rwx" for r in ("student", "faculty", "admin"))
    assert d.default["group:"] == "rwx"  # ds01-researcher, the owning group, writes too
    assert d.setgid and d.sticky


def test_scratch_root_is_traverse_only_without_default_acl(policy):
    d = _by_path(policy)["/srv/ds01/scratch"]
    assert {v for k, v in d.access.items() if k.startswith("group")} == {"--x"}
    assert d.default == {} and not d.setgid and d.sticky


def test_maintainers_write_readonly_area(policy_text):
    p = _with_storage(
        policy_text, lambda s: s["areas"]["data"].update(maintainers=["j.doe@example.lan"])
    )
    d = _by_path(p)["/srv/ds01/data"]
    assert d.access["user:j.doe@example.lan"] == "rwx"
    assert d.default["user:j.doe@example.lan"] == "rwx"


def test_projects_members_only(policy_text):
    def add(s):
        s["areas"]["projects"]["projects"] = {
            "nlp": {"members": ["j.doe@example.lan", "123456@example.lan"]},
        }

    p = _with_storage(policy_text, add)
    plans = _by_path(p)
    root, nlp = plans["/srv/ds01/projects"], plans["/srv/ds01/projects/nlp"]
    assert root.access["user:123456@example.lan"] == "--x"  # reach the project, list nothing
    assert nlp.access == {
        "user:": "rwx",
        "group:": "---",
        "user:j.doe@example.lan": "rwx",
        "user:123456@example.lan": "rwx",
        "other:": "---",
    }
    assert nlp.default == nlp.access


def test_principals_and_dropping_missing_users(policy_text):
    p = _with_storage(policy_text, lambda s: s["areas"]["data"].update(maintainers=["ghost.user"]))
    users, groups = areas.principals(areas.plan(p))
    assert users == ["ghost.user"]
    assert "ds01-student" in groups and "ds01-admin" in groups
    d = areas.without_users(_by_path(p)["/srv/ds01/data"], {"ghost.user"})
    assert "user:ghost.user" not in d.access and "user:ghost.user" not in d.default


def test_user_dirs_only_for_write_roles_and_safe_names(policy):
    assert areas.user_dirs(policy, "123456@example.lan", "student") == [
        "/srv/ds01/scratch/123456@example.lan"
    ]
    scratch = areas.scratch_areas(policy)[0]
    for bad in ("../etc", "a/b", "..", ""):
        with pytest.raises(ValueError):
            areas.user_dir(scratch, bad)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda s: s["areas"]["collab"].update(quota={"student": "10g"}),
            "set 'quota' on one area only",
        ),
        (lambda s: s.update(quota_filesystem="/mnt/other"), "is not under quota_filesystem"),
        (
            lambda s: s["areas"]["collab"].update(purge={"after": "1d", "warn_before": "1h"}),
            "only a scratch area is purged",
        ),
    ],
)
def test_storage_contradictions_are_rejected_with_a_line(policy_text, mutate, message):
    with pytest.raises(PolicyError) as e:
        _with_storage(policy_text, mutate)
    assert message in str(e.value)
    assert all(p.line > 1 for p in e.value.problems)


def test_project_quota_is_refused_not_silently_ignored(policy_text):
    def add(s):
        s["areas"]["projects"]["projects"] = {"nlp": {"members": ["j.doe"], "quota": "10g"}}

    with pytest.raises(PolicyError, match="does not apply yet"):
        _with_storage(policy_text, add)
