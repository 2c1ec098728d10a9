"""The directory reader and the sync plan against a real Samba AD DC on loopback.

The DC is provisioned by the test (tests/integration/samba_ad.py) with 1100
generated users on top of the named test people, unless DS01_TEST_AD_DIR
points at one that is already up (`samba_ad.py up --dir DIR`).
"""

from __future__ import annotations

import os
import random
import string
import sys
from pathlib import Path

import ldap3
import pytest
import yaml

from ds01.config import parse_policy
from ds01.identity import directory
from ds01.identity.classify import classify_all
from ds01.identity.directory import DirectoryError
from ds01.identity.sync import plan

sys.path.insert(0, str(Path(__file__).parent))
import samba_ad  # noqa: E402

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
GENERATED = 1100


@pytest.fixture(scope="module")
def ad(tmp_path_factory):
    given = os.environ.get("DS01_TEST_AD_DIR")
    if given:
        d = Path(given).resolve()
        samba_ad.start(d)
        yield d
        return
    d = tmp_path_factory.mktemp("samba-ad")
    samba_ad.provision(d, GENERATED)
    samba_ad.start(d)
    yield d
    samba_ad.stop(d)


def policy_for(ad: Path, **directory_changes):
    data = yaml.safe_load((REPO / "config/resource-allocation.yaml").read_text())
    data["identity"]["directory"].update({
        "uri": samba_ad.uri(ad), "start_tls": True, "ca_file": str(ad / "ca.pem"),
        "bind_dn": samba_ad.READER_DN, "bind_password_file": str(ad / "bind.secret"),
        "user_base_dn": f"OU=People,{samba_ad.BASE}", "group_base_dn": f"OU=Groups,{samba_ad.BASE}",
        "page_size": 200, **directory_changes,
    })  # fmt: skip
    return parse_policy(yaml.safe_dump(data), "integration-policy.yaml")


def expected(ad: Path) -> set[str]:
    n = int(yaml.safe_load((ad / "directory.json").read_text())["users"])
    return set(samba_ad.expected_accounts(n))


def test_the_reader_follows_the_paging_cookie(ad, monkeypatch):
    """The users come in pages of page_size (AD returns at most 1000 per page)."""
    p = policy_for(ad, page_size=100)
    calls = []
    real = ldap3.Connection.search

    def counting(self, *a, **kw):
        calls.append(kw.get("paged_size"))
        return real(self, *a, **kw)

    monkeypatch.setattr(ldap3.Connection, "search", counting)
    view = directory.read(p.identity.directory)
    assert len(calls) >= len(view.users) // 100 + 1 >= 11
    assert set(calls) == {100}


@pytest.mark.parametrize("page_size", [200, 1000])
def test_reader_returns_every_user_over_starttls(ad, page_size):
    view = directory.read(policy_for(ad, page_size=page_size).identity.directory)
    got = {u.account for u in view.users}
    assert expected(ad) <= got
    assert len(got) > 1000


def test_ldaps_with_the_right_ca(ad):
    p = policy_for(ad, uri=f"ldaps://{samba_ad.address(ad)}:636", start_tls=False)
    assert len(directory.read(p.identity.directory).users) > 1000


def test_ldaps_with_an_unknown_ca_is_refused(ad):
    p = policy_for(ad, uri=f"ldaps://{samba_ad.address(ad)}:636", start_tls=False,
                   ca_file="/etc/ssl/certs/ca-certificates.crt")  # fmt: skip
    with pytest.raises(DirectoryError, match="cannot reach|certificate"):
        directory.read(p.identity.directory)


def test_wrong_password_is_an_error_and_is_never_shown(ad, tmp_path):
    secret = tmp_path / "bad.secret"
    secret.write_text("Wr0ng-Passw0rd-xyz\n")
    secret.chmod(0o600)
    p = policy_for(ad, bind_password_file=str(secret))
    with pytest.raises(DirectoryError, match="binding to .* failed") as e:
        directory.read(p.identity.directory)
    assert "Wr0ng" not in e.value.message


def test_attributes_disabled_nested_numeric_dotted(ad):
    p = policy_for(ad)
    view = directory.read(p.identity.directory)
    by = {u.account: u for u in view.users}
    assert by["x.gone"].disabled and not by["j.doe"].disabled
    assert by["j.doe"].principal == "j.doe@example.lan" and by["j.doe"].uid_number >= 200000
    assert by["l.prof"].member_of == ("Faculty-Staff",)
    assert view.group_parents["Faculty-Staff"] == ("DS01-Faculty",)
    roles = {d.account: (d.role, d.rule) for d in classify_all(view, p, set()).values()}
    assert roles["123456"] == ("student", "naming_rule")
    assert roles["204214"] == ("researcher", "member")
    assert roles["j.doe"] == ("researcher", "naming_rule")
    assert roles["a.smith"] == ("researcher", "directory_group")
    assert roles["w.prof"] == ("faculty", "member")
    assert roles["l.prof"] == (
        "faculty",
        "directory_group",
    )  # nested: Faculty-Staff -> DS01-Faculty
    assert roles["h.admin"] == ("admin", "member")
    assert roles["x.gone"] == (None, "disabled")
    assert roles["g.jaa"] == ("researcher", "directory_group")


def test_primary_group_escaped_names_and_staff_names(ad):
    """AD's primaryGroupID (not in memberOf), nesting through group names that
    DNs escape (comma, plus, quotes, non-ASCII), and the widened staff rule."""
    p = policy_for(ad)
    view = directory.read(p.identity.directory)
    by = {u.account: u for u in view.users}
    # AD moved 567890's Domain Users membership into memberOf and DS01-Faculty out of it:
    raw = directory.connect(p.identity.directory)
    raw.search(by["567890"].dn, "(objectClass=*)", search_scope=ldap3.BASE,
               attributes=["memberOf", "primaryGroupID"])  # fmt: skip
    entry = raw.response[0]["attributes"]
    raw.unbind()
    assert not any("DS01-Faculty" in g for g in entry["memberOf"]) and entry["primaryGroupID"] != 513
    assert by["567890"].member_of == ("DS01-Faculty", "Domain Users")  # by primaryGroupID
    assert by["345678"].member_of == ("R+D Lab",)
    assert view.group_parents["R+D Lab"] == ("Economics, Research Staff",)
    assert view.group_parents["Economics, Research Staff"] == ("DS01-Researchers",)
    assert view.group_parents["Fakultät Physik"] == ('The "Quoted" Group',)
    assert view.group_parents['The "Quoted" Group'] == ("DS01-Faculty",)
    decisions = {d.account: d for d in classify_all(view, p, set()).values()}
    got = {a: (decisions[a].role, decisions[a].rule) for a in
           ("567890", "345678", "456789", "c.hartmann2", "ji-woo.kruger")}  # fmt: skip
    assert got == {
        "567890": ("faculty", "directory_group"),
        "345678": ("researcher", "directory_group"),
        "456789": ("faculty", "directory_group"),
        "c.hartmann2": ("researcher", "naming_rule"),
        "ji-woo.kruger": ("researcher", "naming_rule"),
    }
    assert decisions["345678"].reason == (
        "member of directory group DS01-Researchers "
        "(nested: R+D Lab -> Economics, Research Staff -> DS01-Researchers)"
    )


def test_the_bind_account_read_from_the_directory_is_a_system_user(ad):
    p = policy_for(ad, user_base_dn=samba_ad.BASE)  # the service OU too
    decisions = {d.account: d for d in classify_all(directory.read(p.identity.directory), p,
                                                    set()).values()}  # fmt: skip
    assert (decisions["ds01-reader"].role, decisions["ds01-reader"].rule) == (None, "system_user")


def test_a_user_added_to_the_directory_is_planned_in_the_next_sync(ad):
    p = policy_for(ad)
    name = "n." + "".join(random.choices(string.ascii_lowercase, k=8))
    before = directory.read(p.identity.directory)
    local = {f"{u.account}@example.lan" for u in before.users}
    first = plan(p, before, None, {}, local)
    current = {g: set(m) for g, m in first.desired.items()}
    samba_ad.add_user(ad, name, ["DS01-Faculty"])
    after = directory.read(p.identity.directory)
    known = {n: d.role for n, d in first.decisions.items() if d.role}
    second = plan(p, after, None, current, local | {f"{name}@example.lan"},
                  known=known, baseline=len(before.users))  # fmt: skip
    assert [(c.action, c.group, c.user) for c in second.changes] == [
        ("add", "ds01-faculty", f"{name}@example.lan"),
        ("add", "docker-users", f"{name}@example.lan"),
    ]
    assert second.new_users == [(f"{name}@example.lan", "faculty")]


def test_unreachable_directory_plans_no_removal(ad):
    p = policy_for(ad, uri="ldap://127.0.0.1:9", start_tls=False, allow_cleartext=True,
                   timeout="3s")  # fmt: skip
    try:
        view, error = directory.read(p.identity.directory), None
    except DirectoryError as e:
        view, error = None, e.message
    current = {"ds01-student": {"123456@example.lan"}}
    out = plan(p, view, error, current, {"123456@example.lan"}, baseline=1109)
    assert out.refused and "cannot reach" in out.refused
    assert out.desired["ds01-student"] == ["123456@example.lan"]
    assert [c.user for c in out.withheld] == ["123456@example.lan"]


def test_reader_binds_without_exposing_ldap3_logging(ad, caplog):
    p = policy_for(ad)
    directory.read(p.identity.directory)
    secret = (ad / "bind.secret").read_text().strip()
    assert secret not in caplog.text
    assert ldap3  # the reader uses ldap3 with its logging off (the default)
