"""The production DS01 server.

Set the host and SSH settings in the environment, or in a git-ignored
``local_inventory.py`` beside this file that defines the same names:

    DS01_HOST=ds01.example.lan DS01_SSH_USER=datasciencelab \
        pyinfra inventory.py deploys/all.py

DS01_SSH_PORT (default 22) and DS01_SSH_KEY (a private key file) are optional.
The test VM has its own inventory: tests/vm/inventory.py.

Groups: ``ds01_servers`` is the DS01 head. With a Slurm cluster (the policy's
``cluster`` section, docs/cluster.md), DS01_GPU_NODES names the other GPU
nodes, ``gpu02,gpu03=10.0.0.13`` (a name, optionally ``=`` the address to
reach it by), reached with the same SSH settings: the group ``ds01_gpu_nodes``.
Without it the inventory is the single server, as before.
"""

import os
from pathlib import Path

_settings = {k: v for k, v in os.environ.items() if k.startswith("DS01_")}
_local = Path(__file__).with_name("local_inventory.py")
if _local.exists():
    _ns: dict = {}
    exec(_local.read_text(), _ns)
    _settings.update({k: str(v) for k, v in _ns.items() if k.startswith("DS01_")})

if "DS01_HOST" not in _settings:
    raise SystemExit(
        "inventory.py: set DS01_HOST (and DS01_SSH_USER, DS01_SSH_PORT, DS01_SSH_KEY) in the "
        "environment or in local_inventory.py; see README.md 'Deploying to the server'"
    )

ds01_servers = [
    (
        _settings["DS01_HOST"],
        {
            "ssh_user": _settings.get("DS01_SSH_USER", "root"),
            "ssh_port": int(_settings.get("DS01_SSH_PORT", "22")),
            **({"ssh_key": _settings["DS01_SSH_KEY"]} if "DS01_SSH_KEY" in _settings else {}),
            "_sudo": _settings.get("DS01_SSH_USER", "root") != "root",
        },
    )
]


def _ssh(address: str | None = None) -> dict:
    user = _settings.get("DS01_SSH_USER", "root")
    return {
        **({"ssh_hostname": address} if address else {}),
        "ssh_user": user,
        "ssh_port": int(_settings.get("DS01_SSH_PORT", "22")),
        **({"ssh_key": _settings["DS01_SSH_KEY"]} if "DS01_SSH_KEY" in _settings else {}),
        "_sudo": user != "root",
    }


if _settings.get("DS01_GPU_NODES"):
    ds01_gpu_nodes = [
        (name, {**_ssh(address or None), "slurm_name": name})
        for name, _, address in (
            entry.strip().partition("=") for entry in _settings["DS01_GPU_NODES"].split(",")
        )
    ]
