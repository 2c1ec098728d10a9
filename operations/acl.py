"""Converge the POSIX ACL of a path to exactly the entries given (setfacl)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import OperationError, QuoteString, StringCommand, operation

from facts.acl import Acl

_PERM_CHARS = ("r-", "w-", "x-")
_BASE = ("user:", "group:", "other:")


def _check(entries: dict[str, str], what: str) -> None:
    for key in _BASE:
        if key not in entries:
            raise OperationError(
                f"{what} ACL lacks the '{key}' entry (owner, group and other are required)"
            )
    for key, perms in entries.items():
        tag = key.split(":", 1)[0]
        if tag not in ("user", "group", "other") or key.count(":") != 1 or key == "mask:":
            raise OperationError(
                f"{what} ACL entry {key!r} is not 'user:NAME', 'group:NAME' or 'other:'"
            )
        if tag == "other" and key != "other:":
            raise OperationError(f"{what} ACL entry {key!r}: 'other' takes no name")
        if len(perms) != 3 or any(c not in ok for c, ok in zip(perms, _PERM_CHARS, strict=True)):
            raise OperationError(
                f"{what} ACL entry {key!r}: permissions {perms!r} are not like 'r-x'"
            )


def with_mask(entries: dict[str, str]) -> dict[str, str]:
    """``entries`` plus the mask setfacl keeps: the union of the group class
    (named users, named groups, the owning group), present only with named entries."""
    if not entries:
        return {}
    named = [k for k in entries if k not in _BASE]
    if not named:
        return dict(entries)
    group_class = [entries[k] for k in named] + [entries["group:"]]
    mask = "".join(c if any(p[i] == c for p in group_class) else "-" for i, c in enumerate("rwx"))
    return {**entries, "mask:": mask}


def acl_text(entries: dict[str, str]) -> str:
    """setfacl's spelling of an ACL: ``user::rwx,group:ds01-student:r-x,...``."""
    return ",".join(f"{key}:{perms}" for key, perms in entries.items())


@operation()
def directory(
    path: str,
    access: dict[str, str],
    default: dict[str, str] | None = None,
    setgid: bool = False,
    sticky: bool = False,
):
    """
    Make the ACL of an existing directory exactly ``access`` (entries not listed
    are removed), its default ACL exactly ``default`` (``None`` or ``{}``
    removes it), and its setgid and sticky bits as given. The mask is computed
    (the union of the group class), so it is never listed. Nothing runs when the
    directory already matches.

    + path: the directory (it must exist: create it first with files.directory)
    + access: ``{"user:": "rwx", "group:": "r-x", "group:ds01-student": "r-x", "other:": "---"}``
    + default: the same shape, inherited by what is created inside
    + setgid: new files take the directory's group
    + sticky: only a file's owner may delete or rename it

    **Example:**

    .. code:: python

        acl.directory(
            name="ACL of /srv/ds01/collab",
            path="/srv/ds01/collab",
            access={"user:": "rwx", "group:": "rwx", "group:ds01-student": "rwx", "other:": "---"},
            default={"user:": "rwx", "group:": "rwx", "group:ds01-student": "rwx", "other:": "---"},
            setgid=True,
            sticky=True,
        )
    """
    _check(access, "access")
    if default:
        _check(default, "default")
    want_access = with_mask(access)
    want_default = with_mask(default or {})

    have = host.get_fact(Acl, path=path)
    if have is None and host.state.is_executing:
        raise OperationError(f"{path} does not exist; create the directory before setting its ACL")
    if have is None:
        # Planning: the files.directory before this one creates it in the same run.
        have = {"access": {}, "default": {}, "setgid": False, "sticky": False}

    changed = False
    if have["access"] != want_access:
        yield StringCommand(
            "setfacl --set", QuoteString(acl_text(want_access)), "--", QuoteString(path)
        )
        changed = True
    if have["default"] != want_default:
        if want_default:
            yield StringCommand(
                "setfacl -d --set", QuoteString(acl_text(want_default)), "--", QuoteString(path)
            )
        else:
            yield StringCommand("setfacl -k --", QuoteString(path))
        changed = True
    bits = []
    if have["setgid"] != setgid:
        bits.append("g+s" if setgid else "g-s")
    if have["sticky"] != sticky:
        bits.append("+t" if sticky else "-t")
    if bits:
        yield StringCommand("chmod", ",".join(bits), "--", QuoteString(path))
        changed = True
    if not changed:
        host.noop(f"ACL of {path} is already as wanted")
