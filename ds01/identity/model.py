"""The directory's view of users and groups, as plain data that travels as JSON
(the ``DirectoryView`` fact reads it on the server, the deploy classifies it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class DirectoryUser:
    account: str  # sAMAccountName (AD) or uid (RFC2307), without any @domain
    dn: str
    principal: str | None = None  # userPrincipalName
    mail: str | None = None
    display_name: str | None = None
    uid_number: int | None = None
    gid_number: int | None = None
    member_of: tuple[str, ...] = ()  # CNs of the groups the user is directly in
    disabled: bool = False
    last_logon: float | None = None  # epoch seconds (AD lastLogonTimestamp)


@dataclass(frozen=True)
class DirectoryView:
    """Everything classification needs from the directory.

    ``group_parents`` maps a group CN to the CNs of the groups it is directly a
    member of, so nested membership is resolved in pure code."""

    users: tuple[DirectoryUser, ...]
    group_parents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "users": [asdict(u) for u in self.users],
            "group_parents": {g: list(p) for g, p in self.group_parents.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> DirectoryView:
        users = tuple(
            DirectoryUser(**{**u, "member_of": tuple(u.get("member_of", ()))})
            for u in data["users"]
        )
        parents = {g: tuple(p) for g, p in data.get("group_parents", {}).items()}
        return cls(users=users, group_parents=parents)
