"""Read users and groups from Active Directory (or an RFC2307 LDAP server).

Settings come from ``identity.directory`` in the policy. Searches are paged
(AD returns at most 1000 entries per page) and every page's result code is
checked: a partial answer is an error, never a shorter list. The bind password
is read from a root-only file on the server and is never logged or shown.
"""

from __future__ import annotations

import os
import re
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
# AD: a user's primary group is not in memberOf; primaryGroupID is its RID.
PRIMARY_GROUP_ID = "primaryGroupID"
OBJECT_SID = "objectSid"
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


_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)", re.S)


def unescape(value: str) -> str:
    """An RDN value as written in a DN (RFC 4514) -> the attribute's value:
    ``Economics\\, Research Staff`` -> ``Economics, Research Staff``;
    ``\\C3\\A4`` (UTF-8 bytes in hex) -> ``ä``."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(value):
        out += value[pos : m.start()].encode()
        esc = m.group(1)
        out += bytes.fromhex(esc) if len(esc) == 2 and _is_hex(esc) else esc.encode()
        pos = m.end()
    out += value[pos:].encode()
    return out.decode("utf-8", "replace")


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in s)


def dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN in a form two spellings of the same DN share (case, escaping and
    spaces after commas do not matter), for comparing DNs, never CN strings."""
    try:
        rdns = parse_dn(dn, strip=True)
        return tuple((a.casefold(), unescape(v).casefold()) for a, v, _ in rdns)
    except Exception:
        return (("", dn.casefold()),)


def _cn(dn: str) -> str:
    """The first RDN's value of ``dn``, unescaped."""
    try:
        return unescape(parse_dn(dn)[0][1])
    except Exception:
        return dn


def _raw(entry: dict, attr: str) -> bytes | None:
    for key, values in entry["raw_attributes"].items():
        if key.casefold() == attr.casefold() and values:
            return bytes(values[0])
    return None


def primary_group_sid(user_sid: bytes, rid: int) -> bytes:
    """The SID of a user's primary group: the user's domain SID (its own SID
    without the last sub-authority) followed by ``primaryGroupID``."""
    return user_sid[:-4] + rid.to_bytes(4, "little")


def _filetime(v: str | None) -> float | None:
    t = _int(v)
    if not t:
        return None
    return t / 10_000_000 - _FILETIME_EPOCH


class _Groups:
    """The groups under group_base_dn, keyed by DN (compared with dn_key)."""

    def __init__(self) -> None:
        self.cn_of: dict[tuple, str] = {}  # dn_key -> CN
        self.by_sid: dict[bytes, str] = {}  # AD objectSid -> CN (primary groups)
        self.parents: dict[str, tuple[str, ...]] = {}  # CN -> parent CNs
        self.by_uid: dict[str, list[str]] = {}  # RFC2307 memberUid -> CNs

    def cn(self, dn: str) -> str:
        return self.cn_of.get(dn_key(dn)) or _cn(dn)


def _groups(conn: ldap3.Connection, d: Directory) -> _Groups:
    a = d.attributes
    if d.kind == "ad":
        filt, attrs = "(objectClass=group)", ["cn", a.member_of, OBJECT_SID]
    else:
        filt, attrs = (
            "(|(objectClass=posixGroup)(objectClass=groupOfNames))",
            ["cn", "memberUid", "member"],
        )
    g = _Groups()
    up: list[tuple[str, list[str]]] = []  # (CN, DNs of its parents) for AD
    down: list[tuple[str, list[str]]] = []  # (CN, DNs of its members) for RFC2307bis
    for e in paged(conn, d.group_base_dn, filt, attrs, d.page_size):
        cn = _first(e, "cn") or _cn(e["dn"])
        g.cn_of[dn_key(e["dn"])] = cn
        g.parents.setdefault(cn, ())
        if d.kind == "ad":
            up.append((cn, _all(e, a.member_of)))
            sid = _raw(e, OBJECT_SID)
            if sid:
                g.by_sid[sid] = cn
        else:
            for uid in _all(e, "memberUid"):
                g.by_uid.setdefault(uid, []).append(cn)
            down.append((cn, _all(e, "member")))
    # Resolved once every group's DN is known (a parent may come on a later page).
    parents: dict[str, list[str]] = {cn: [] for cn in g.parents}
    for cn, parent_dns in up:
        parents[cn] += [g.cn(p) for p in parent_dns]
    for cn, members in down:  # RFC2307bis: groups inside groups
        for m in members:
            child = g.cn_of.get(dn_key(m))
            if child:
                parents[child].append(cn)
            else:
                g.by_uid.setdefault(_cn(m), []).append(cn)
    g.parents = {cn: tuple(sorted(set(p))) for cn, p in parents.items()}
    return g


def _user(e: dict, d: Directory, groups: _Groups) -> DirectoryUser | None:
    a = d.attributes
    account = _first(e, a.account)
    if not account:
        return None
    names = [groups.cn(g) for g in _all(e, a.member_of)]
    names += groups.by_uid.get(account, [])
    # AD leaves the primary group out of memberOf; primaryGroupID names it by RID.
    rid, sid = _int(_first(e, PRIMARY_GROUP_ID)), _raw(e, OBJECT_SID)
    if d.kind == "ad" and rid is not None and sid:
        primary = groups.by_sid.get(primary_group_sid(sid, rid))
        if primary:
            names.append(primary)
    uac = _int(_first(e, a.account_control)) or 0
    return DirectoryUser(
        account=account,
        dn=e["dn"],
        principal=_first(e, a.principal),
        mail=_first(e, a.mail),
        display_name=_first(e, a.display_name),
        uid_number=_int(_first(e, a.uid_number)),
        gid_number=_int(_first(e, a.gid_number)),
        member_of=tuple(sorted(set(names))),
        disabled=bool(uac & ACCOUNTDISABLE),
        last_logon=_filetime(_first(e, a.last_logon)),
    )


def _attrs(d: Directory) -> list[str]:
    a = d.attributes
    names = [a.account, a.principal, a.mail, a.display_name, a.uid_number, a.gid_number,
             a.member_of, a.last_logon, a.account_control]  # fmt: skip
    if d.kind == "ad":
        names += [PRIMARY_GROUP_ID, OBJECT_SID]
    return sorted(set(names))


def read(d: Directory, password: str | None = None) -> DirectoryView:
    """Every user under ``user_base_dn`` matching ``user_filter``, with groups.

    Raises :class:`DirectoryError` when the directory cannot be reached or
    answers only partially."""
    conn = connect(d, password)
    try:
        groups = _groups(conn, d)
        users: dict[str, DirectoryUser] = {}
        for e in paged(conn, d.user_base_dn, d.user_filter, _attrs(d), d.page_size):
            u = _user(e, d, groups)
            if u is not None:
                users[u.account.casefold()] = u
    finally:
        conn.unbind()
    return DirectoryView(users=tuple(sorted(users.values(), key=lambda u: u.account)),
                         group_parents=groups.parents)  # fmt: skip


def read_one(d: Directory, account: str, password: str | None = None) -> DirectoryView:
    """Like :func:`read` for one account (``ds01 users explain``): its entry and all groups."""
    conn = connect(d, password)
    try:
        groups = _groups(conn, d)
        filt = f"(&{d.user_filter}({d.attributes.account}={escape_filter_chars(account)}))"
        users = [u for e in paged(conn, d.user_base_dn, filt, _attrs(d), d.page_size)
                 if (u := _user(e, d, groups))]  # fmt: skip
    finally:
        conn.unbind()
    return DirectoryView(users=tuple(users), group_parents=groups.parents)
