import shutil
import subprocess

import pytest

from ds01.names import role_group, role_slice, slice_cgroup_path, systemd_escape, user_slice

NAMES = ["j.doe", "123456@example.lan", "a-b.c", ".hidden", "x_y:z", "ümlaut", "j.doe@example.lan"]


@pytest.mark.skipif(not shutil.which("systemd-escape"), reason="needs systemd-escape to compare")
@pytest.mark.parametrize("name", NAMES)
def test_escape_matches_systemd(name):
    want = subprocess.run(["systemd-escape", name], capture_output=True, text=True).stdout.strip()
    assert systemd_escape(name) == want


def test_slice_names_nest_only_where_meant():
    s = user_slice("student", "123456@example.lan")
    assert s == "ds01-student-123456\\x40example.lan.slice"
    assert slice_cgroup_path(s) == "ds01.slice/ds01-student.slice/" + s
    # a dash in a user name must not create another level
    assert slice_cgroup_path(user_slice("researcher", "a-b")).count("/") == 2


def test_role_vocabulary():
    assert role_group("faculty") == "ds01-faculty"
    assert role_slice("faculty") == "ds01-faculty.slice"
