"""Data every host gets: the validated DS01 policy.

The policy is validated here, while pyinfra loads the inventory, so an invalid
file stops the run before any operation is planned or any host is touched.
Point DS01_POLICY at another file to deploy it instead of the repository's.
"""

import os as _os
import sys as _sys
from pathlib import Path as _Path

from ds01.config import PolicyError as _PolicyError
from ds01.config import load_policy as _load_policy

policy_file = _os.environ.get(
    "DS01_POLICY", str(_Path(__file__).resolve().parent.parent / "config/resource-allocation.yaml")
)
try:
    policy = _load_policy(policy_file)
except _PolicyError as _e:
    for _p in _e.problems:
        print(_p, file=_sys.stderr)
    print(f"{policy_file}: invalid policy; nothing was deployed", file=_sys.stderr)
    raise SystemExit(2) from None

# Where the ds01 package lives on the server.
ds01_prefix = "/opt/ds01"
ds01_venv = "/opt/ds01/venv"
ds01_etc = "/etc/ds01"
