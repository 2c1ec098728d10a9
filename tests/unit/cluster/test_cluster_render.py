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


def test_node_facts_from_slurmd_c_and_the_layout_fact():
    from ds01.cluster.nodes import node_facts, parse_slurmd_c

    hw = parse_slurmd_c("NodeName=ds01 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 "
                        "ThreadsPerCore=2 RealMemory=515890\nUpTime=1-00:00:00")
    _, facts = case("one-node")
    got = node_facts(hw, facts["ds01"].layout.to_json(), nvml_plugin=False)
    assert got == facts["ds01"]


def test_simulated_gpus_get_device_files_for_slurmd():
    policy, facts = case("one-node")
    node = render.cluster_nodes(policy.cluster, facts)[0]
    lines = render.simulated_device_nodes(node.gres).splitlines()
    assert "c /dev/nvidia0 0666 root root - 195:0" in lines
    assert "c /dev/nvidia-caps/nvidia-cap282 0666 root root - 511:282" in lines
    assert lines.index("d /dev/nvidia-caps 0755 root root -") < lines.index(
        "c /dev/nvidia-caps/nvidia-cap282 0666 root root - 511:282")
    assert not any("/dev/nvidia3" in ln for ln in lines)  # the interactive GPU is not Slurm's
    assert sum("/dev/nvidia2 " in ln for ln in lines) == 1  # the MIG GPU's node once
