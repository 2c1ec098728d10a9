"""The shipped naming rules on realistic account names, in both shipped
policies (the repository's and the test VM's), and the bind account."""

from __future__ import annotations

from pathlib import Path

import pytest

from ds01.config import load_policy
from ds01.identity.classify import Classifier

REPO = Path(__file__).resolve().parents[3]
SHIPPED = ["config/resource-allocation.yaml", "tests/vm/policy.yaml"]

# account -> (role, rule) with no list or group applying
NAMES = {
    # students: six-digit matriculation numbers
    "123456": ("student", "naming_rule"),
    "000042": ("student", "naming_rule"),
    "987654": ("student", "naming_rule"),
    # staff: first(-name).surname(-name), digits for the n-th of a name, any case
    "j.doe": ("researcher", "naming_rule"),
    "c.hartmann2": ("researcher", "naming_rule"),
    "t.nguyen10": ("researcher", "naming_rule"),
    "ji-woo.kruger": ("researcher", "naming_rule"),
    "a.smith-jones": ("researcher", "naming_rule"),
    "anne-marie.de-vries": ("researcher", "naming_rule"),
    "M.Mueller": ("researcher", "naming_rule"),
    # neither: the default role
    "jdoe": ("student", "default"),
    "1234567": ("student", "default"),
    "j.doe-": ("student", "default"),
    "-j.doe": ("student", "default"),
    "j..doe": ("student", "default"),
    "2c.hartmann": ("student", "default"),
}


@pytest.mark.parametrize("path", SHIPPED)
@pytest.mark.parametrize("account", sorted(NAMES))
def test_shipped_rules_on_realistic_names(path, account):
    d = Classifier(load_policy(REPO / path)).classify(account)
    assert (d.role, d.rule) == NAMES[account], d.reason


@pytest.mark.parametrize("path", SHIPPED)
def test_bind_account_is_a_system_user_never_a_role(path):
    policy = load_policy(REPO / path)
    bind_dn = policy.identity.directory.bind_dn
    c = Classifier(policy)
    # The reader's DN as the directory spells it: other case, a space after a comma.
    spelled = bind_dn.upper().replace(",OU=", ", OU=")
    d = c.classify("ds01-reader", member_of=("DS01-Admins",), dn=spelled)
    assert (d.role, d.rule) == (None, "system_user"), d.reason
    assert "bind_dn" in d.reason
    other = c.classify("ds01-reader", dn=bind_dn.replace("CN=ds01-reader", "CN=ds01-other"))
    assert other.rule != "system_user"
