"""A real Samba AD DC on loopback, provisioned in a temp dir with the test directory.

    python3 tests/integration/samba_ad.py up --dir DIR [--users N]
    python3 tests/integration/samba_ad.py stop --dir DIR     # keep the data (directory "down")
    python3 tests/integration/samba_ad.py start --dir DIR
    python3 tests/integration/samba_ad.py add-user --dir DIR NAME [--group CN]
    python3 tests/integration/samba_ad.py down --dir DIR     # stop and delete DIR
    python3 tests/vm/vm.py up --guestfwd "$(python3 tests/integration/samba_ad.py guestfwd --dir DIR)"

Each DC takes a loopback address of its own, 127.0.0.N (N >= 2, the first one
free when it is provisioned, kept in DIR/directory.json), and listens there on
:389 (LDAP, StartTLS) and :636 (LDAPS) with a certificate made here for it,
localhost, 127.0.0.1, 10.0.2.100 (the address the test VM reaches it at
through a guestfwd rule) and dc1.example.lan; DIR/ca.pem is its CA. Its pid
file, sockets and state stay in DIR (not Samba's /run/samba), so several DCs
run side by side: a `tests/run demo` VM's and the integration tests'.

The test directory (invented people):
  OU=People      students 123456, 234567; researchers j.doe, a.smith, 204214
                 (numeric, explicit researcher in the policy); faculty w.prof
                 (explicit) and l.prof (in Faculty-Staff, nested in DS01-Faculty);
                 admin h.admin (DS01-Admins); disabled x.gone; N generated
                 users (numeric students, and dotted ones in Bulk-Researchers,
                 nested in DS01-Researchers)
                 c.hartmann2 and ji-woo.kruger (staff-style names, no group);
                 345678 and 456789, roles only through the escaped groups below;
                 567890, whose primary group is DS01-Faculty (not in memberOf)
  OU=Groups      DS01-Faculty, DS01-Researchers, DS01-Admins, Faculty-Staff,
                 Bulk-Researchers; "Economics, Research Staff" (in DS01-Researchers)
                 with "R+D Lab" in it; 'The "Quoted" Group' (in DS01-Faculty)
                 with "Fakultät Physik" in it
  OU=Service Accounts  ds01-reader (bind DN for the tests, password in DIR/bind.secret)
Every user has uidNumber/gidNumber (RFC2307); Domain Users has gidNumber 200000.

Provisioning writes the objects straight into sam.ldb with Samba's own Python
bindings (the system python3), which is ~100x faster than LDAP adds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REALM = "EXAMPLE.LAN"
DOMAIN = "EXAMPLE"
BASE = "DC=example,DC=lan"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"  # test-only DC on loopback
READER_PASSWORD = "Read3r-Passw0rd!"
READER_DN = f"CN=ds01-reader,OU=Service Accounts,{BASE}"
SYSTEM_PYTHON = "/usr/bin/python3"  # Samba's bindings live in the distribution's python
LDAP_PORT = 389  # Samba's LDAP port is fixed; each DC has its own address instead
GID_DOMAIN_USERS = 200000
UID_BASE = 200000

# account -> (groups, disabled)
PEOPLE: dict[str, tuple[list[str], bool]] = {
    "123456": ([], False),
    "234567": ([], False),
    "j.doe": ([], False),
    "a.smith": (["DS01-Researchers"], False),
    "204214": ([], False),
    "w.prof": ([], False),
    "l.prof": (["Faculty-Staff"], False),
    "h.admin": (["DS01-Admins"], False),
    "x.gone": ([], True),
    # Staff-style names the shipped naming rule must see as researchers.
    "c.hartmann2": ([], False),
    "ji-woo.kruger": ([], False),
    # Student-style accounts whose role comes only through escaped group names ...
    "345678": (["R+D Lab"], False),
    "456789": (["Fakultät Physik"], False),
    # ... and through the primary group (PRIMARY), which memberOf leaves out.
    "567890": ([], False),
}
# account -> its primary group (primaryGroupID), instead of Domain Users
PRIMARY: dict[str, str] = {"567890": "DS01-Faculty"}
# group -> groups it is a member of (nesting)
GROUPS: dict[str, list[str]] = {
    "DS01-Faculty": [],
    "DS01-Researchers": [],
    "DS01-Admins": [],
    "Faculty-Staff": ["DS01-Faculty"],
    "Bulk-Researchers": ["DS01-Researchers"],
    # Names that DNs must escape: a comma, a plus, quotes; and a non-ASCII one.
    "Economics, Research Staff": ["DS01-Researchers"],
    "R+D Lab": ["Economics, Research Staff"],
    'The "Quoted" Group': ["DS01-Faculty"],
    "Fakultät Physik": ['The "Quoted" Group'],
}


def dn_value(value: str) -> str:
    """``value`` escaped for a DN (RFC 4514)."""
    out = "".join("\\" + c if c in ',+"\\<>;=' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


def group_dn(cn: str) -> str:
    return f"CN={dn_value(cn)},OU=Groups,{BASE}"


def generated(n: int) -> dict[str, tuple[list[str], bool]]:
    """``n`` generated users: every tenth is a dotted researcher, the rest six-digit students."""
    out: dict[str, tuple[list[str], bool]] = {}
    for i in range(n):
        if i % 10 == 9:
            letters = "".join(chr(ord("a") + (i // 26**k) % 26) for k in range(3))
            out[f"g.{letters}"] = (["Bulk-Researchers"], False)
        else:
            out[f"{700000 + i}"] = ([], False)
    return out


def expected_accounts(n: int) -> dict[str, tuple[list[str], bool]]:
    return {**PEOPLE, **generated(n)}


# --------------------------------------------------------------------------
# Provisioning (runs under the system python3, which has Samba's bindings)
# --------------------------------------------------------------------------


def _populate(d: Path, n: int, names: list[str] | None, groups_for_new: list[str]) -> None:
    import ldb
    from samba.auth import system_session
    from samba.param import LoadParm
    from samba.samdb import SamDB

    lp = LoadParm()
    lp.load(str(d / "etc/smb.conf"))
    db = SamDB(url=str(d / "private/sam.ldb"), session_info=system_session(), lp=lp)
    accounts = {name: (groups_for_new, False) for name in names} if names else expected_accounts(n)

    def uac(disabled: bool) -> str:
        return str(0x0200 | 0x0020 | (0x0002 if disabled else 0))  # NORMAL, PASSWD_NOTREQD

    db.transaction_start()
    try:
        if not names:
            for ou in ("People", "Groups", "Service Accounts"):
                db.add({"dn": f"OU={ou},{BASE}", "objectClass": "organizationalUnit"})
            for g in GROUPS:
                # sAMAccountName may not hold ,+" and the like; the CN may.
                sam = "".join(c if c.isalnum() or c in "-_. " else "_" for c in g)
                db.add({"dn": group_dn(g), "objectClass": "group", "cn": g,
                        "sAMAccountName": sam})  # fmt: skip
            for g, parents in GROUPS.items():
                for p in parents:
                    m = ldb.Message(ldb.Dn(db, group_dn(p)))
                    m["member"] = ldb.MessageElement(group_dn(g), ldb.FLAG_MOD_ADD, "member")
                    db.modify(m)
            m = ldb.Message(ldb.Dn(db, f"CN=Domain Users,CN=Users,{BASE}"))
            m["gidNumber"] = ldb.MessageElement(
                str(GID_DOMAIN_USERS), ldb.FLAG_MOD_REPLACE, "gidNumber"
            )
            db.modify(m)
        existing = len(db.search(f"OU=People,{BASE}", scope=ldb.SCOPE_ONELEVEL, attrs=["cn"]))
        for i, (name, (groups, disabled)) in enumerate(sorted(accounts.items())):
            dn = f"CN={name},OU=People,{BASE}"
            db.add({
                "dn": dn,
                "objectClass": "user",
                "sAMAccountName": name,
                "userPrincipalName": f"{name}@example.lan",
                "mail": f"{name}@example.lan",
                "displayName": f"Test User {name}",
                "userAccountControl": uac(disabled),
                "uidNumber": str(UID_BASE + existing + i),
                "gidNumber": str(GID_DOMAIN_USERS),
                "loginShell": "/bin/bash",
                "unixHomeDirectory": f"/home/{name}",
            })  # fmt: skip
            for g in groups + ([PRIMARY[name]] if name in PRIMARY else []):
                m = ldb.Message(ldb.Dn(db, group_dn(g)))
                m["member"] = ldb.MessageElement(dn, ldb.FLAG_MOD_ADD, "member")
                db.modify(m)
            if name in PRIMARY:  # AD requires membership first, then drops that link
                sid = db.search(group_dn(PRIMARY[name]), scope=ldb.SCOPE_BASE,
                                attrs=["objectSid"])[0]["objectSid"][0]  # fmt: skip
                rid = int.from_bytes(bytes(sid)[-4:], "little")
                m = ldb.Message(ldb.Dn(db, dn))
                m["primaryGroupID"] = ldb.MessageElement(str(rid), ldb.FLAG_MOD_REPLACE,
                                                         "primaryGroupID")  # fmt: skip
                db.modify(m)
        if not names:
            db.newuser("ds01-reader", READER_PASSWORD, userou="OU=Service Accounts")
        db.transaction_commit()
    except Exception:
        db.transaction_cancel()
        raise


# --------------------------------------------------------------------------
# Control (any python3)
# --------------------------------------------------------------------------


def _run(cmd: list[str], **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"samba_ad: {' '.join(cmd[:3])} failed:\n{proc.stdout}\n{proc.stderr}")


def _make_tls(d: Path, addr: str) -> None:
    tls = d / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    ext = tls / "san.cnf"
    ext.write_text(
        f"subjectAltName=DNS:localhost,DNS:dc1.example.lan,IP:127.0.0.1,IP:{addr},"
        "IP:10.0.2.100\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    ossl = ["openssl"]
    _run(ossl + ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                 "-subj", "/CN=DS01 test CA", "-keyout", str(tls / "ca.key"),
                 "-out", str(d / "ca.pem")])  # fmt: skip
    _run(ossl + ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", str(tls / "key.pem"), "-out", str(tls / "req.pem")])  # fmt: skip
    _run(ossl + ["x509", "-req", "-in", str(tls / "req.pem"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "30",
                 "-extfile", str(ext), "-out", str(tls / "cert.pem")])  # fmt: skip
    os.chmod(tls / "key.pem", 0o600)


def _listening(address: str, port: int = LDAP_PORT) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


def _free_address() -> str:
    """A loopback address where nothing listens on the DC's TCP ports. Not
    127.0.0.1, where a DC provisioned by an older checkout may still run."""
    for n in range(2, 255):
        address = f"127.0.0.{n}"
        if not any(_listening(address, port) for port in (LDAP_PORT, 636, 88)):
            return address
    raise SystemExit("samba_ad: no free loopback address 127.0.0.2-254 for a test DC")


def address(d: Path) -> str:
    """The loopback address of the DC in ``d``."""
    return json.loads((d / "directory.json").read_text()).get("address", "127.0.0.1")


def uri(d: Path) -> str:
    """``ldap://ADDRESS:389`` of the DC in ``d``."""
    return f"ldap://{address(d)}:{LDAP_PORT}"


def provision(d: Path, n: int) -> None:
    if (d / "etc/smb.conf").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    addr = _free_address()
    _make_tls(d, addr)
    run = d / "run"
    _run([
        "samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={DOMAIN}",
        f"--adminpass={ADMIN_PASSWORD}", f"--targetdir={d}", "--dns-backend=NONE",
        "--use-rfc2307", "--server-role=dc", "--host-name=dc1",
        # An address with a mask is taken as given: the DC binds there only.
        f"--option=interfaces={addr}/8", "--option=bind interfaces only=yes",
        "--option=server services = ldap, cldap, kdc, drepl",
        f"--option=pid directory = {run}",
        f"--option=ncalrpc dir = {run}/ncalrpc",
        f"--option=winbindd socket directory = {run}/winbindd",
        f"--option=ntp signd socket directory = {run}/ntp_signd",
        "--option=tls enabled = yes",
        f"--option=tls keyfile = {d}/tls/key.pem",
        f"--option=tls certfile = {d}/tls/cert.pem",
        f"--option=tls cafile = {d}/ca.pem",
        f"--option=log file = {d}/samba.log",
    ])  # fmt: skip
    run.mkdir(exist_ok=True)
    # A plain simple bind too (provision drops this option): the tests also cover LDAPS/StartTLS.
    conf = d / "etc/smb.conf"
    conf.write_text(
        conf.read_text().replace(
            "[global]\n", "[global]\n\tldap server require strong auth = no\n", 1
        )
    )
    _run([SYSTEM_PYTHON, __file__, "_populate", "--dir", str(d), "--users", str(n)])
    (d / "bind.secret").write_text(READER_PASSWORD + "\n")
    os.chmod(d / "bind.secret", 0o600)
    (d / "directory.json").write_text(
        json.dumps({"users": n, "address": addr, "port": LDAP_PORT})
    )


def _pid(d: Path, name: str) -> int | None:
    try:
        pid = int((d / name).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(d: Path, timeout: float = 60) -> None:
    addr = address(d)
    if _pid(d, "samba.pid") is None:
        if _listening(addr):
            raise SystemExit(f"samba_ad: {addr}:{LDAP_PORT} is already taken (another DC?)")
        log = open(d / "samba.out", "ab")
        proc = subprocess.Popen(
            ["samba", "-s", str(d / "etc/smb.conf"), "--foreground", "--no-process-group",
             "-M", "single", "--debug-stdout", "-d1"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        (d / "samba.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ready(addr):
            return
        if _pid(d, "samba.pid") is None:
            raise SystemExit(f"samba_ad: samba exited; see {d}/samba.out")
        time.sleep(0.5)
    raise SystemExit(f"samba_ad: no LDAP answer on {addr}:{LDAP_PORT} after {timeout:.0f}s")


def _ready(addr: str) -> bool:
    import ldap3

    try:
        conn = ldap3.Connection(
            ldap3.Server(addr, port=LDAP_PORT, connect_timeout=2),
            READER_DN,
            READER_PASSWORD,
            auto_bind=True,
            receive_timeout=5,
        )
        conn.unbind()
        return True
    except Exception:
        return False


def stop(d: Path) -> None:
    pid = _pid(d, "samba.pid")
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _pid(d, "samba.pid") is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    (d / "samba.pid").unlink(missing_ok=True)
    if (d / "directory.json").exists():
        for _ in range(50):
            if not _listening(address(d)):
                return
            time.sleep(0.1)


def add_user(d: Path, name: str, groups: list[str]) -> None:
    _run([SYSTEM_PYTHON, __file__, "_populate", "--dir", str(d), "--users", "0",
          "--name", name, *[a for g in groups for a in ("--group", g)]])  # fmt: skip


def _stdio(addr: str) -> None:
    """Pump stdin/stdout to the DC at addr:389: QEMU runs this once per guest
    connection for ``guestfwd=tcp:10.0.2.100:389-cmd:python3 samba_ad.py _stdio``
    (a plain ``tcp:`` guestfwd target carries a single connection only)."""
    import select

    try:
        sock = socket.create_connection((addr, LDAP_PORT))
    except OSError:
        return  # the DC is stopped: the guest sees the connection close, nothing else
    fin, fout = sys.stdin.fileno(), sys.stdout.fileno()
    open_in = True
    while True:
        ready, _, _ = select.select([sock] + ([fin] if open_in else []), [], [])
        if fin in ready:
            data = os.read(fin, 65536)
            if not data:
                open_in = False
                sock.shutdown(socket.SHUT_WR)
            else:
                sock.sendall(data)
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            os.write(fout, data)


def guestfwd_rule(d: Path) -> str:
    """The vm.py --guestfwd rule that makes the DC in ``d`` reachable in the VM as 10.0.2.100:389."""
    return (
        f"tcp:10.0.2.100:389-cmd:{sys.executable} {Path(__file__).resolve()} _stdio "
        f"--address {address(d)}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "start", "stop", "down", "add-user", "guestfwd", "_populate", "_stdio"):
        p = sub.add_parser(name)
        if name == "_stdio":
            p.add_argument("--address", required=True)
        else:
            p.add_argument("--dir", required=True, type=Path)
        if name in ("up", "_populate"):
            p.add_argument("--users", type=int, default=1100)
        if name == "add-user":
            p.add_argument("name")
        if name in ("add-user", "_populate"):
            p.add_argument("--group", action="append", default=[])
        if name == "_populate":
            p.add_argument("--name", action="append", default=[])
    a = ap.parse_args(argv)
    if a.cmd == "_populate":
        _populate(a.dir, a.users, a.name, a.group)
    elif a.cmd == "_stdio":
        _stdio(a.address)
    elif a.cmd == "guestfwd":
        print(guestfwd_rule(a.dir.resolve()))
    elif a.cmd == "up":
        provision(a.dir.resolve(), a.users)
        start(a.dir.resolve())
        print(
            f"Samba AD up: {uri(a.dir.resolve())} bind {READER_DN} "
            f"password file {a.dir.resolve()}/bind.secret CA {a.dir.resolve()}/ca.pem"
        )
    elif a.cmd == "start":
        start(a.dir.resolve())
    elif a.cmd == "stop":
        stop(a.dir.resolve())
    elif a.cmd == "down":
        stop(a.dir.resolve())
        shutil.rmtree(a.dir, ignore_errors=True)
    elif a.cmd == "add-user":
        add_user(a.dir.resolve(), a.name, a.group)
    return 0


if __name__ == "__main__":
    sys.exit(main())
