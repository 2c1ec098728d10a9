"""Directory reader without a server: paging, partial answers, secrets, parsing."""

from __future__ import annotations

import os

import pytest

from ds01.identity import directory
from ds01.identity.directory import DirectoryError, paged, read_secret


class FakeConn:
    """Answers paged searches from a list of pages; ``fail_at`` page gets ``code``."""

    def __init__(self, pages: list[list[dict]], fail_at: int | None = None, code: int = 4):
        self.pages, self.fail_at, self.code = pages, fail_at, code
        self.calls: list[bytes | None] = []

    def search(self, base, filt, search_scope, attributes, paged_size, paged_cookie):
        i = len(self.calls)
        self.calls.append(paged_cookie)
        last = i == len(self.pages) - 1
        cookie = b"" if last else f"c{i}".encode()
        self.response = [{"type": "searchResEntry", **e} for e in self.pages[i]]
        self.response.append({"type": "searchResRef", "uri": ["ldap://elsewhere"]})
        failed = self.fail_at == i
        self.result = {
            "result": self.code if failed else 0,
            "description": "sizeLimitExceeded" if failed else "success",
            "controls": {"1.2.840.113556.1.4.319": {"value": {"cookie": cookie}}},
        }


def entry(n: int) -> dict:
    return {"dn": f"CN=u{n}", "raw_attributes": {"sAMAccountName": [f"u{n}".encode()]}}


def test_paged_follows_cookies_and_skips_referrals():
    conn = FakeConn([[entry(1), entry(2)], [entry(3)], [entry(4)]])
    got = [e["dn"] for e in paged(conn, "OU=People", "(x=*)", ["cn"], 2)]
    assert got == ["CN=u1", "CN=u2", "CN=u3", "CN=u4"]
    assert conn.calls == [None, b"c0", b"c1"]


def test_partial_answer_is_an_error_not_a_short_list():
    conn = FakeConn([[entry(1)], [entry(2)], [entry(3)]], fail_at=1)
    seen = []
    with pytest.raises(DirectoryError, match="partial answer.*sizeLimitExceeded"):
        for e in paged(conn, "OU=People", "(x=*)", ["cn"], 1):
            seen.append(e)
    assert len(seen) == 1


def test_user_parsing_ad(policy):
    d = policy.identity.directory
    e = {
        "dn": "CN=j.doe,OU=People,DC=example,DC=lan",
        "raw_attributes": {
            "sAMAccountName": [b"j.doe"],
            "userPrincipalName": [b"j.doe@example.lan"],
            "memberOf": [b"CN=PhD-2026,OU=Groups,DC=example,DC=lan", b"CN=Other,OU=Elsewhere"],
            "userAccountControl": [b"514"],
            "uidNumber": [b"200001"],
            "lastLogonTimestamp": [b"133000000000000000"],
        },
    }
    groups = directory._Groups()
    groups.cn_of = {directory.dn_key("CN=PhD-2026,OU=Groups,DC=example,DC=lan"): "PhD-2026"}
    u = directory._user(e, d, groups)
    assert u.account == "j.doe" and u.principal == "j.doe@example.lan"
    assert u.member_of == ("Other", "PhD-2026")
    assert u.disabled is True and u.uid_number == 200001 and u.gid_number is None
    assert u.last_logon == pytest.approx(1655526400.0)  # 2022-06-18, FILETIME converted


@pytest.mark.parametrize("written, value", [
    (r"Economics\, Research Staff", "Economics, Research Staff"),
    (r"R\+D Lab", "R+D Lab"),
    (r'The \"Quoted\" Group', 'The "Quoted" Group'),
    ("Fakultät Physik", "Fakultät Physik"),
    (r"Fakult\C3\A4t Physik", "Fakultät Physik"),
    (r"back\\slash", "back\\slash"),
])  # fmt: skip
def test_dn_values_are_unescaped(written, value):
    assert directory._cn(f"CN={written},OU=Groups,DC=example,DC=lan") == value


def test_dns_compare_whatever_their_spelling():
    a = r"CN=Economics\, Research Staff,OU=Groups,DC=example,DC=lan"
    b = r"cn=economics\2C research staff, ou=Groups,dc=EXAMPLE,dc=lan"
    assert directory.dn_key(a) == directory.dn_key(b)
    assert directory.dn_key(a) != directory.dn_key("CN=Economics,OU=Groups,DC=example,DC=lan")


def test_primary_group_comes_from_the_user_sid_and_rid(policy):
    domain = bytes.fromhex("010500000000000515000000") + bytes(range(12))
    faculty_sid = domain + (1105).to_bytes(4, "little")
    groups = directory._Groups()
    groups.by_sid = {faculty_sid: "DS01-Faculty"}
    e = {"dn": "CN=567890,OU=People,DC=example,DC=lan", "raw_attributes": {
        "sAMAccountName": [b"567890"], "primaryGroupID": [b"1105"],
        "objectSid": [domain + (1309).to_bytes(4, "little")],
    }}  # fmt: skip
    assert directory._user(e, policy.identity.directory, groups).member_of == ("DS01-Faculty",)
    e["raw_attributes"]["primaryGroupID"] = [b"513"]  # Domain Users: not a group read here
    assert directory._user(e, policy.identity.directory, groups).member_of == ()


def test_entry_without_account_is_skipped(policy):
    assert (
        directory._user({"dn": "CN=x", "raw_attributes": {}}, policy.identity.directory,
                        directory._Groups())
        is None
    )


def test_secret_must_be_private(tmp_path):
    f = tmp_path / "bind.secret"
    f.write_text("s3cret\n")
    os.chmod(f, 0o640)
    with pytest.raises(DirectoryError, match="chmod 600") as e:
        read_secret(str(f))
    assert "s3cret" not in e.value.message
    os.chmod(f, 0o600)
    assert read_secret(str(f)) == "s3cret"


def test_missing_or_empty_secret(tmp_path):
    with pytest.raises(DirectoryError, match="cannot read"):
        read_secret(str(tmp_path / "none"))
    f = tmp_path / "empty"
    f.write_text("")
    os.chmod(f, 0o600)
    with pytest.raises(DirectoryError, match="empty"):
        read_secret(str(f))


def test_unreachable_directory_is_a_directory_error(make_policy):
    p = make_policy(directory={"uri": "ldap://127.0.0.1:9", "start_tls": False,
                               "allow_cleartext": True, "timeout": "2s"})  # fmt: skip
    with pytest.raises(DirectoryError, match="cannot reach"):
        directory.read(p.identity.directory, password="x")
