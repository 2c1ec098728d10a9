"""The GPU/MIG layout of a host, as its NVML sees it."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

from ds01.gpu.layout import Layout

EMPTY = {"backend": "none", "driver": None, "error": "no NVIDIA driver on this host", "gpus": []}
# Before the base deploy installed ds01, nvidia-smi still tells whether the host
# has NVIDIA GPUs (enough to decide on the container toolkit's configuration).
SMI_QUERY = "index,uuid,name,memory.total,mig.mode.current,mig.mode.pending"


class GpuLayout(FactBase[dict]):
    """
    The layout printed by ``ds01 gpu probe --json --backend nvml`` on the host
    (see ``ds01/gpu/layout.py`` for every field); where ds01 is not installed
    yet, the GPUs from ``nvidia-smi`` (no MIG instances); on a host without an
    NVIDIA driver, an empty layout (not an error).

    .. code:: python

        {"backend": "nvml", "driver": "550.54.15", "error": None,
         "gpus": [{"index": 0, "uuid": "GPU-...", "name": "NVIDIA A100-SXM4-40GB",
                   "memory_total": 42949672960, "mig_current": True, "slices": 7,
                   "memory_slices": 8, "error": None,
                   "instances": [{"uuid": "MIG-...", "profile": "3g.20gb", "slices": 3,
                                  "gi_slices": 3, "placement_size": 4, ...}], ...}]}

    A GPU NVML could not read has ``error`` set and offers no units; a probe of
    an earlier ds01 (without ``memory_slices``, ``gi_slices``, ``error``)
    parses with those as None.
    """

    @staticmethod
    def default() -> dict:
        return dict(EMPTY)  # no output at all: neither ds01 nor nvidia-smi on the host

    def command(self) -> str:
        return (
            "if [ -x /opt/ds01/venv/bin/ds01 ]; then "
            "/opt/ds01/venv/bin/ds01 gpu probe --json --backend nvml; "
            "elif command -v nvidia-smi >/dev/null; then "
            f"nvidia-smi --query-gpu={SMI_QUERY} --format=csv,noheader,nounits; "
            "fi 2>/dev/null || true"
        )

    def process(self, output: list[str]) -> dict:
        text = "\n".join(output).strip()
        if not text:
            return dict(EMPTY)
        if text.startswith("{"):
            try:
                return Layout.from_json(json.loads(text)).to_json()
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                return {**EMPTY, "error": f"unreadable probe output: {e}"}
        return _from_smi(output)


def _mig(value: str) -> bool | None:
    return {"enabled": True, "disabled": False}.get(value.strip().lower())


def _from_smi(lines: list[str]) -> dict:
    gpus = []
    for line in lines:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6 or not fields[0].isdigit():
            return {**EMPTY, "error": f"unexpected nvidia-smi output: {line!r}"}
        index, uuid, name, mem_mib, current, pending = fields
        gpus.append(
            {
                "index": int(index),
                "uuid": uuid,
                "name": name,
                "memory_total": int(mem_mib) * 1024**2 if mem_mib.isdigit() else 0,
                "memory_used": None,
                "utilization": None,
                "mig_current": _mig(current),
                "mig_pending": _mig(pending),
                "slices": None,
                "processes": [],
                "instances": [],
            }
        )
    return {"backend": "nvidia-smi", "driver": None, "error": None, "gpus": gpus}


class GpuLayoutPlan(FactBase[dict | None]):
    """
    What ``ds01 gpu layout apply`` would change on the host now (``ds01 gpu
    layout plan --json``: per GPU the policy lays out, its current and desired
    profiles, whether it changes, why it cannot, which units would vanish and
    who holds them). ``None`` when ds01 is not installed yet.

    + ds01: path of the ds01 command on the server

    .. code:: python

        {"backend": "simulated",
         "gpus": [{"gpu": 3, "model": "NVIDIA A100-SXM4-40GB", "changes": True,
                   "current": ["2g.10gb", "2g.10gb", "2g.10gb", "1g.5gb"],
                   "desired": ["3g.20gb", "3g.20gb"], "problem": None,
                   "vanishing": [{"unit": "MIG-...", "user": "lt.student", ...}], ...}]}
    """

    def requires_command(self, ds01: str = "/usr/local/bin/ds01") -> str:
        return ds01  # missing while planning a fresh server (deploys/base.py installs it)

    def command(self, ds01: str = "/usr/local/bin/ds01") -> str:
        return f"{ds01} gpu layout plan --json 2>/dev/null; true"

    def process(self, output: list[str]) -> dict | None:
        text = "\n".join(output).strip()
        if not text.startswith("{"):
            return None
        return json.loads(text)
