"""slurm.conf, gres.conf, cgroup.conf and slurmdbd.conf for a one-node and a
ten-node cluster, against the expected files under expected/<case>/.

The expected files were written by hand from Slurm's documentation and
checked line by line (device minors, billing weights, GRES counts); a change
in the rendering must show up here as a reviewed diff of those files.
"""

from __future__ import annotations

import pytest
from cases import HERE, case

from ds01.cluster import render

FILES = {
    "slurm.conf": lambda p, f: render.slurm_conf(p, f),
    "gres.conf": lambda p, f: render.gres_conf(p, f),
    "cgroup.conf": lambda p, f: render.cgroup_conf(),
    "slurmdbd.conf": lambda p, f: render.slurmdbd_conf(p),
}


@pytest.mark.parametrize("name", ["one-node", "ten-nodes"])
@pytest.mark.parametrize("filename", sorted(FILES))
def test_rendered_file_is_the_expected_one(name, filename):
    policy, facts = case(name)
    expected = (HERE / "expected" / name / filename).read_text()
    assert FILES[filename](policy, facts) == expected


def test_a_node_without_facts_is_not_rendered_from_guesses():
    policy, facts = case("ten-nodes")
    del facts["h100-02"]
    with pytest.raises(ValueError, match="no facts for cluster node.*h100-02"):
        render.slurm_conf(policy, facts)


def test_interactive_gpu_never_reaches_slurm():
    policy, facts = case("one-node")
    text = render.gres_conf(policy, facts)
    assert "/dev/nvidia3" not in text and "/dev/nvidia2," in text


def test_durations_in_slurm_format():
    assert render.duration(7 * 86400) == "7-00:00:00"
    assert render.duration(3600 + 61) == "0-01:01:01"
    assert render.duration(None) == "UNLIMITED"
