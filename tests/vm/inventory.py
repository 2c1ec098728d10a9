"""Inventory of the test VM started by tests/vm/vm.py.

DS01_VM names the VM (default "ci"); the policy is tests/vm/policy.yaml unless
DS01_POLICY is set.
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

ds01_test_vm = [
    (
        "ds01-test",
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": int(_port_file.read_text()),
            "ssh_user": "root",
            "ssh_key": str(_cache / "id_ed25519"),
            "ssh_strict_host_key_checking": "off",
            "ssh_known_hosts_file": "/dev/null",
        },
    )
]
