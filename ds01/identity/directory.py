"""Read users and groups from Active Directory (or an RFC2307 LDAP server).

Settings come from ``identity.directory`` in the policy. Searches are paged
(AD returns at most 1000 entries per page) and every page's result code is
checked: a partial answer is an error, never a shorter list. The bind password
is read from a root-only file on the server and is never logged or shown.
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from ds01.config import Directory
from ds01.identity.model import DirectoryUser, DirectoryView

ACCOUNTDISABLE = 0x0002
_FILETIME_EPOCH = 11644473600  # seconds between 1601-01-01 and 1970-01-01


class DirectoryError(Exception):
    """The directory could not be read completely; ``message`` says why and what to do."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def read_secret(path: str) -> str:
    """The bind password from ``path``; refuse a file others can read or write."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text()
    except OSError as e:
        raise DirectoryError(f"cannot read the bind password file {path}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DirectoryError(
            f"the bind password file {path} is accessible to group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    if st.st_uid != os.geteuid() and st.st_uid != 0:
        raise DirectoryError(f"the bind password file {path} must be owned by root")
    secret = text.strip("\n")
    if not secret:
        raise DirectoryError(f"the bind password file {path} is empty")
    return secret


def connect(d: Directory, password: str | None = None) -> ldap3.Connection:
    """A bound connection (LDAPS or StartTLS when configured)."""
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        ca_certs_file=d.ca_file,
        version=ssl.PROTOCOL_TLS_CLIENT,
    )
    server = ldap3.Server(
        d.uri, use_ssl=d.uri.startswith("ldaps://"), tls=tls, get_info=ldap3.NONE,
        connect_timeout=d.timeout,
    )  # fmt: skip
    if d.bind_dn and password is None:
        password = read_secret(d.bind_password_file)
    try:
        conn = ldap3.Connection(
            server,
            user=d.bind_dn,
            password=password if d.bind_dn else None,
            receive_timeout=d.timeout,
            raise_exceptions=False,
            read_only=True,
        )
        conn.open()
        if conn.closed:
            raise DirectoryError(f"cannot reach the directory at {d.uri}")
        if d.start_tls and not conn.start_tls():
            raise DirectoryError(f"StartTLS with {d.uri} failed: {conn.result.get('description')}")
        if not conn.bind():
            raise DirectoryError(
                f"binding to {d.uri} as {d.bind_dn or '(anonymous)'} failed: "
                f"{conn.result.get('description')} {conn.result.get('message', '')}".strip()
            )
    except LDAPException as e:
        raise DirectoryError(f"cannot reach the directory at {d.uri}: {e}") from None
    return conn


def paged(
    conn: ldap3.Connection, base: str, filt: str, attrs: list[str], page: int
) -> Iterator[dict]:
    """Every entry of a paged subtree search; raises on any incomplete page."""
    cookie: bytes | None = None
    while True:
        try:
            conn.search(base, filt, search_scope=ldap3.SUBTREE, attributes=attrs,
                        paged_size=page, paged_cookie=cookie)  # fmt: skip
        except LDAPException as e:
            raise DirectoryError(
                f"the directory stopped answering mid-search under {base}: {e}"
            ) from None
        res = conn.result
        if res.get("result") != 0:
            raise DirectoryError(
                f"partial answer from the directory under {base}: "
                f"{res.get('description')} {res.get('message', '')}".strip()
            )
        for entry in conn.response or ():
            if entry.get("type") == "searchResEntry":
                yield entry
        ctrl = res.get("controls", {}).get("1.2.840.113556.1.4.319")
        cookie = ctrl["value"]["cookie"] if ctrl else None
        if not cookie:
            return


def _first(entry: dict, attr: str) -> str | None:
    for key, values in entry["raw_attributes"].items():
        if key.casefold() == attr.casefold() and values:
            return values[0].decode("utf-8", "replace")
    return None


def _all(entry: dict, attr: str) -> list[str]:
    for key, values in entry["raw_attributes"].items():
        if key.casefold() == attr.casefold():
            return [v.decode("utf-8", "replace") for v in values]
    return []


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _cn(dn: str) -> str:
    try:
        return parse_dn(dn)[0][1]
    except Exception:
        return dn


def _filetime(v: str | None) -> float | None:
    t = _int(v)
    if not t:
        return None
    return t / 10_000_000 - _FILETIME_EPOCH


def _groups(
    conn: ldap3.Connection, d: Directory
) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, list[str]]]:
    """(group DN -> CN, group CN -> parent CNs, account -> group CNs by memberUid)."""
    a = d.attributes
    if d.kind == "ad":
        filt, attrs = "(objectClass=group)", ["cn", a.member_of]
    else:
        filt, attrs = (
            "(|(objectClass=posixGroup)(objectClass=groupOfNames))",
            ["cn", "memberUid", "member"],
        )
    cn_of: dict[str, str] = {}
    parents: dict[str, list[str]] = {}
    by_uid: dict[str, list[str]] = {}
    member_dns: list[tuple[str, list[str]]] = []
    for e in paged(conn, d.group_base_dn, filt, attrs, d.page_size):
        cn = _first(e, "cn") or _cn(e["dn"])
        cn_of[e["dn"].casefold()] = cn
        parents.setdefault(cn, [])
        if d.kind == "ad":
            parents[cn] = [_cn(p) for p in _all(e, a.member_of)]
        else:
            for uid in _all(e, "memberUid"):
                by_uid.setdefault(uid, []).append(cn)
            member_dns.append((cn, _all(e, "member")))
    for cn, members in member_dns:  # RFC2307bis: groups inside groups
        for m in members:
            child = cn_of.get(m.casefold())
            if child:
                parents[child].append(cn)
            else:
                by_uid.setdefault(_cn(m), []).append(cn)
    return cn_of, {g: tuple(sorted(set(p))) for g, p in parents.items()}, by_uid


def _user(
    e: dict, d: Directory, cn_of: dict[str, str], by_uid: dict[str, list[str]]
) -> DirectoryUser | None:
    a = d.attributes
    account = _first(e, a.account)
    if not account:
        return None
    groups = [cn_of.get(g.casefold(), _cn(g)) for g in _all(e, a.member_of)]
    groups += by_uid.get(account, [])
    uac = _int(_first(e, a.account_control)) or 0
    return DirectoryUser(
        account=account,
        dn=e["dn"],
        principal=_first(e, a.principal),
        mail=_first(e, a.mail),
        display_name=_first(e, a.display_name),
        uid_number=_int(_first(e, a.uid_number)),
        gid_number=_int(_first(e, a.gid_number)),
        member_of=tuple(sorted(set(groups))),
        disabled=bool(uac & ACCOUNTDISABLE),
        last_logon=_filetime(_first(e, a.last_logon)),
    )


def _attrs(d: Directory) -> list[str]:
    a = d.attributes
    names = [a.account, a.principal, a.mail, a.display_name, a.uid_number, a.gid_number,
             a.member_of, a.last_logon, a.account_control]  # fmt: skip
    return sorted(set(names))


def read(d: Directory, password: str | None = None) -> DirectoryView:
    """Every user under ``user_base_dn`` matching ``user_filter``, with groups.

    Raises :class:`DirectoryError` when the directory cannot be reached or
    answers only partially."""
    conn = connect(d, password)
    try:
        cn_of, parents, by_uid = _groups(conn, d)
        users: dict[str, DirectoryUser] = {}
        for e in paged(conn, d.user_base_dn, d.user_filter, _attrs(d), d.page_size):
            u = _user(e, d, cn_of, by_uid)
            if u is not None:
                users[u.account.casefold()] = u
    finally:
        conn.unbind()
    return DirectoryView(users=tuple(sorted(users.values(), key=lambda u: u.account)),
                         group_parents=parents)  # fmt: skip


def read_one(d: Directory, account: str, password: str | None = None) -> DirectoryView:
    """Like :func:`read` for one account (``ds01 users explain``): its entry and all groups."""
    conn = connect(d, password)
    try:
        cn_of, parents, by_uid = _groups(conn, d)
        filt = f"(&{d.user_filter}({d.attributes.account}={escape_filter_chars(account)}))"
        users = [u for e in paged(conn, d.user_base_dn, filt, _attrs(d), d.page_size)
                 if (u := _user(e, d, cn_of, by_uid))]  # fmt: skip
    finally:
        conn.unbind()
    return DirectoryView(users=tuple(users), group_parents=parents)
