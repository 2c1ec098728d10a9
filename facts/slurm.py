"""Slurm as a host sees it: the accounting database (``sacctmgr show``) and
the node's hardware (``slurmd -C``)."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api import FactBase, QuoteString, StringCommand

from ds01.cluster.nodes import parse_slurmd_c

_SHOW = "--parsable2 --noheader"
SECTIONS = {
    "cluster": "show cluster format=Cluster",
    "qos": "show qos format=Name,Priority,MaxWall,MaxJobsPU,MaxTRESPU,Flags",
    "assoc": "show assoc where {cluster} format=Account,User,QOS,DefaultQOS",
    "user": "show user format=User,DefaultAccount",
}


class AccountingSections(TypedDict):
    cluster: list[str]
    qos: list[str]
    assoc: list[str]
    user: list[str]


class SlurmAccounting(FactBase[AccountingSections | None]):
    """
    The lines ``sacctmgr show ... --parsable2 --noheader`` prints for the
    cluster list, the QOS, the associations of ``cluster`` and the users
    (parsed by ``ds01.cluster.accounts.parse_state``); None when slurmdbd did
    not answer every query (a partial answer must never read as "nobody is
    associated").

    + cluster: Slurm's ClusterName

    .. code:: python

        {"cluster": ["ds01"],
         "qos": ["normal|0||||",
                 "ds01-student|10|7-00:00:00|3|cpu=1,mem=512M,billing=14|DenyOnLimit"],
         "assoc": ["root||normal|", "ds01-student||ds01-student|ds01-student",
                   "ds01-student|lt.student|ds01-student|ds01-student"],
         "user": ["lt.student|ds01-student", "root|root"]}
    """

    requires_command = "sacctmgr"

    @staticmethod
    def default() -> None:
        return None

    def command(self, cluster: str) -> StringCommand:
        parts: list = ["("]
        for key, show in SECTIONS.items():
            before, _, after = show.partition("{cluster}")
            where = QuoteString(f"cluster={cluster}")
            words = [before.rstrip(), where, after.lstrip()] if after else [show]
            parts += ["echo", f"'#{key}'", "&&", "sacctmgr", *words, _SHOW, "&&"]
        parts += ["echo '#end'", ") 2>/dev/null; true"]
        return StringCommand(*parts)

    def process(self, output: list[str]) -> AccountingSections | None:
        if not output or output[-1] != "#end":
            return None
        out: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in output[:-1]:
            if line.startswith("#") and line[1:] in SECTIONS:
                current = out.setdefault(line[1:], [])
            elif current is not None and line.strip():
                current.append(line.strip())
        if set(out) != set(SECTIONS):
            return None
        return AccountingSections(**out)  # type: ignore[typeddict-item]


class SlurmdHardware(FactBase[dict | None]):
    """
    The node's hardware as slurmd counts it (``slurmd -C``), None where slurmd
    is not installed yet.

    .. code:: python

        {"CPUs": 64, "Boards": 1, "SocketsPerBoard": 2, "CoresPerSocket": 16,
         "ThreadsPerCore": 2, "RealMemory": 515890}
    """

    requires_command = "slurmd"

    @staticmethod
    def default() -> None:
        return None

    def command(self) -> str:
        return "slurmd -C | head -n 1"

    def process(self, output: list[str]) -> dict | None:
        got = parse_slurmd_c(" ".join(output))
        return got if "CPUs" in got and "RealMemory" in got else None
