"""Inventory of the test VM started by tests/vm/vm.py.

DS01_VM names the VM (default "ci"); the policy is tests/vm/policy.yaml unless
DS01_POLICY is set. DS01_VM_NODES (``cl2=ds01-node2,...``: VM name = Slurm
name) adds other VMs as the group ``ds01_gpu_nodes``, as inventory.py's
DS01_GPU_NODES does for real nodes (`tests/run cluster`).
"""

import os
from pathlib import Path

_repo = Path(__file__).resolve().parents[2]
_name = os.environ.get("DS01_VM", "ci")
_cache = Path(os.environ.get("DS01_VM_CACHE", _repo / ".cache/vm"))
_port_file = _cache / "run" / _name / "port"
if not _port_file.exists():
    raise SystemExit(f"tests/vm/inventory.py: VM {_name!r} is not up; run tests/vm/vm.py up --name {_name}")
os.environ.setdefault("DS01_POLICY", str(_repo / "tests/vm/policy.yaml"))



def _ssh(port_file: Path) -> dict:
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": int(port_file.read_text()),
        "ssh_user": "root",
        "ssh_key": str(_cache / "id_ed25519"),
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }


ds01_test_vm = [("ds01-test", _ssh(_port_file))]

_nodes = [e.split("=", 1) for e in os.environ.get("DS01_VM_NODES", "").split(",") if e]
for _vm, _ in _nodes:
    if not (_cache / "run" / _vm / "port").exists():
        raise SystemExit(f"tests/vm/inventory.py: VM {_vm!r} (DS01_VM_NODES) is not up")
if _nodes:
    ds01_gpu_nodes = [
        (slurm, {**_ssh(_cache / "run" / vm / "port"), "slurm_name": slurm}) for vm, slurm in _nodes
    ]
