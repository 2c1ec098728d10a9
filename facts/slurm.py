"""Slurm as a host sees it: the accounting database (``sacctmgr show``) and
the node's hardware (``slurmd -C``)."""

from __future__ import annotations

from typing import TypedDict

from pyinfra.api import FactBase, QuoteString, StringCommand

from ds01.cluster.accounts import QUERIES
from ds01.cluster.nodes import parse_slurmd_c

_SHOW = "--parsable2 --noheader"
SECTIONS = QUERIES


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
        # slurmdbd creates its tables when it first starts: give it half a minute.
        parts: list = [
            "( for i in $(seq 30); do sacctmgr -n show cluster >/dev/null 2>&1 && break;",
            "sleep 1; done;",
        ]
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


class SlurmdGresUnit(TypedDict):
    type: str  # "3g.20gb", "a100"
    files: list[str]  # its device files


class SlurmdGres(FactBase[list[SlurmdGresUnit] | None]):
    """
    The node's GPU GRES in Slurm's own order (``slurmd -G``, which reads
    slurm.conf and gres.conf as slurmd does): the n-th unit is the one a
    job's ``GRES=gpu:...(IDX:n)`` names. Slurm sorts the records itself (by
    type, not as gres.conf lists them), so this order is read, never
    assumed. None where slurmd is not installed or prints no GPU.

    .. code:: python

        [{"type": "1g.5gb", "files": ["/dev/nvidia2", "/dev/nvidia-caps/nvidia-cap300",
                                      "/dev/nvidia-caps/nvidia-cap301"]}]
    """

    requires_command = "slurmd"

    @staticmethod
    def default() -> None:
        return None

    def command(self) -> str:
        return "slurmd -G 2>&1; true"

    def process(self, output: list[str]) -> list[SlurmdGresUnit] | None:
        units: list[SlurmdGresUnit] = []
        for line in output:
            words = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if " Gres " not in f" {line} " or words.get("Name") != "gpu":
                continue
            if words.get("Count") != "1" or "File" not in words:
                return None  # deploys/slurm.py writes one unit per line, each with its files
            units.append(SlurmdGresUnit(type=words.get("Type", ""),
                                        files=words["File"].split(",")))  # fmt: skip
        return units or None


class MungeKey(FactBase[str | None]):
    """
    The munge key of the host, base64-encoded (read as root; it is the
    cluster's shared secret: only deploys/slurm.py copies it, from the
    controller to the nodes, with mode 0400). None where there is none.
    """

    @staticmethod
    def default() -> None:
        return None

    def command(self) -> str:
        return "base64 -w0 /etc/munge/munge.key 2>/dev/null; true"

    def process(self, output: list[str]) -> str | None:
        text = "".join(output).strip()
        return text or None


MARIADB_SOCKET = "/run/mysqld/mysqld.sock"


class MariaDbUserPlugin(FactBase[str | None]):
    """
    How MariaDB authenticates ``user``@localhost (``unix_socket``,
    ``mysql_native_password``); ``""`` when there is no such user.
    Precondition: the server is running (its socket exists). deploys/slurm.py
    starts it earlier in the same converge, so while pyinfra plans a fresh
    controller this is ``None`` (the user is decided at execution).

    + user: the database user

    .. code:: python

        "unix_socket"
    """

    requires_command = "mysql"

    @staticmethod
    def default() -> None:
        return None

    def check_preconditions(self, state, host) -> str | None:
        from pyinfra.facts.files import Socket

        if not host.get_fact(Socket, path=MARIADB_SOCKET):
            return (
                f"MariaDB is not running (no {MARIADB_SOCKET}); deploys/slurm.py starts it "
                "(operation 'MariaDB running') before it asks: run deploys/slurm.py whole"
            )
        return None

    def command(self, user: str) -> StringCommand:
        # One row even without the user: pyinfra hands a fact that printed
        # nothing its default, which here means "not read", not "no user".
        query = QuoteString(
            "SELECT CONCAT('plugin=', IFNULL(MAX(plugin), '')) FROM mysql.user "
            f"WHERE user = '{user}' AND host = 'localhost'"
        )
        return StringCommand("mysql -NB -e", query)

    def process(self, output: list[str]) -> str | None:
        for line in output:
            if line.strip().startswith("plugin="):
                return line.strip().removeprefix("plugin=")
        return None
