"""Per-user block usage and limits on a quota-enabled filesystem (repquota)."""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand

from ds01.storage.quota import parse_repquota_csv


class UserQuotas(FactBase[dict[str, dict[str, int]]]):
    """
    User quotas of a filesystem, in KiB, for every user repquota lists (users
    with usage or a limit); empty when quotas are off or repquota is missing.

    + filesystem: the mount point

    .. code:: python

        {"j.doe@example.lan": {"used_kib": 120, "soft_kib": 0, "hard_kib": 65536, "files": 3}}
    """

    default = dict

    def command(self, filesystem: str) -> StringCommand:
        # -C: look each uid up (getpwuid). repquota's default cache enumerates
        # passwd, which SSSD does not, so directory users came back as '#uid'.
        return StringCommand(
            "repquota -u -C -O csv", QuoteString(filesystem), "2>/dev/null || true"
        )

    def process(self, output: list[str]) -> dict[str, dict[str, int]]:
        return {
            name: {"used_kib": u.used_kib, "soft_kib": u.soft_kib, "hard_kib": u.hard_kib,
                   "files": u.files}
            for name, u in parse_repquota_csv("\n".join(output)).items()
        }  # fmt: skip
