"""The test VM: a Debian 12 server under QEMU that the whole platform converges into.

    python3 tests/vm/vm.py build                  # build (or reuse) the cached image
    python3 tests/vm/vm.py up [--name ci] [--port 2222] [--guestfwd RULE ...]
                              [--hostname H] [--lan listen|connect:PORT:ADDR --peer NAME=ADDR ...]
    python3 tests/vm/vm.py ssh [--name ci] -- CMD
    python3 tests/vm/vm.py down [--name ci]

The image holds every Debian package in deploys/packages.yaml (the deploys'
own list, so the two cannot drift), systemd, sshd and python3. It is cached
under .cache/vm/<hash of its inputs>/; each `up` boots a throwaway overlay of
it plus a second disk with ext4 quota and project features for quota tests.

`--lan` gives a VM a second network card on a private link between VMs (a
QEMU socket netdev on loopback: the first VM listens, the others connect)
with a static address in 10.77.0.0/24; `--peer` names the others in
/etc/hosts, as DNS would on a real cluster (`tests/run cluster`: the head and
a separate compute node).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploys._support import PACKAGES_FILE, all_apt_packages  # noqa: E402

CACHE = Path(os.environ.get("DS01_VM_CACHE", REPO / ".cache/vm"))
KEY = CACHE / "id_ed25519"
SUITE = "bookworm"
# What the image needs beyond the deploys' packages: a bootable systemd host.
BOOT_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "udev", "kmod", "openssh-server",
    "iproute2", "python3", "ca-certificates", "linux-image-cloud-amd64", "initramfs-tools",
    "e2fsprogs", "less",
]  # fmt: skip
# Local accounts the tests rely on (created at boot, before any converge).
LOCAL_USERS = ["datasciencelab", "lt.student", "lt.student2", "lt.researcher", "lt.faculty",
               "lt.admin"]  # fmt: skip
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "qemu-system-x86_64": "qemu-system-x86",
              "qemu-img": "qemu-utils", "mkfs.ext4": "e2fsprogs", "ssh": "openssh-client"}


def log(msg: str) -> None:
    print(f"[vm] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def ensure_host_tools() -> None:
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        log(f"installing host tools: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", *missing], env=env, stdout=subprocess.DEVNULL)


def ensure_key() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    if not KEY.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ds01-vm", "-f", str(KEY)])


def packages() -> list[str]:
    return sorted(set(BOOT_PACKAGES) | set(all_apt_packages()))


def image_dir() -> Path:
    h = hashlib.sha256()
    h.update(" ".join(packages()).encode())
    h.update(Path(__file__).read_bytes())
    h.update(PACKAGES_FILE.read_bytes())
    h.update(KEY.with_suffix(".pub").read_bytes())
    return CACHE / f"image-{h.hexdigest()[:16]}"


def _customize(root: Path) -> None:
    """Make the bootstrapped tree a bootable, reachable server."""
    (root / "etc/hostname").write_text("ds01-test\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 ds01-test\n")
    (root / "etc/fstab").write_text(
        "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n"
        "LABEL=ds01data /srv/ds01 ext4 usrquota,grpquota,prjquota,nofail 0 2\n"
    )
    (root / "srv/ds01").mkdir(parents=True, exist_ok=True)
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(KEY.with_suffix(".pub"), ssh / "authorized_keys")
    (root / "etc/systemd/network/20-eth0.network").write_text(
        "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
    )
    for unit in ("systemd-networkd-wait-online.service", "quotaon.service",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                 "fstrim.timer", "man-db.timer"):  # fmt: skip
        (root / "etc/systemd/system" / unit).unlink(missing_ok=True)
        (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in ("systemd-networkd.service", "ssh.service"):
        link = wants / unit
        link.unlink(missing_ok=True)
        src = root / "lib/systemd/system" / unit
        link.symlink_to(f"/lib/systemd/system/{unit}" if src.exists() else f"/usr/lib/systemd/system/{unit}")
    (root / "etc/ssh/sshd_config.d/ds01-test.conf").write_text(
        "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 50:30:100\nMaxSessions 50\n"
    )
    # The cluster's daemons are baked in only so `tests/run cluster` needs no
    # package index; a single server has them off, as deploys/slurm.py (which
    # enables them) would leave it.
    for unit in ("mariadb.service", "munge.service", "slurmd.service",
                 "slurmctld.service", "slurmdbd.service"):  # fmt: skip
        (wants / unit).unlink(missing_ok=True)
    # Podman's own services (its root API among them), which its package enables
    # and deploys/slurm.py turns off on the nodes: a single server has none.
    for wanted_by, unit in (("default", "podman.service"), ("default", "podman-restart.service"),
                            ("default", "podman-auto-update.service"),
                            ("timers", "podman-auto-update.timer"),
                            ("sockets", "podman.socket")):  # fmt: skip
        (root / f"etc/systemd/system/{wanted_by}.target.wants" / unit).unlink(missing_ok=True)
    # Daemons that the deploys start must not start by themselves in the image.
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)


def build(force: bool = False) -> Path:
    ensure_host_tools()
    ensure_key()
    out = image_dir()
    if (out / "base.qcow2").exists() and not force:
        log(f"image cached: {out.name}")
        return out
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="ds01-vm-", dir=CACHE))
    try:
        root = work / "root"
        log(f"mmdebstrap {SUITE} with {len(packages())} packages")
        run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages())}",
             SUITE, str(root)], stdout=subprocess.DEVNULL)  # fmt: skip
        _customize(root)
        boot = root / "boot"
        shutil.copy(next(boot.glob("vmlinuz-*")), work / "vmlinuz")
        shutil.copy(next(boot.glob("initrd.img-*")), work / "initrd.img")
        raw = work / "disk.raw"
        run(["truncate", "-s", "6G", str(raw)])
        run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(raw)])
        run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")])
        data = work / "data.raw"
        run(["truncate", "-s", "2G", str(data)])
        run(["mkfs.ext4", "-q", "-F", "-L", "ds01data", "-O", "quota,project",
             "-E", "quotatype=usrquota:grpquota:prjquota", str(data)])  # fmt: skip
        run(["qemu-img", "convert", "-O", "qcow2", str(data), str(work / "data.qcow2")])
        shutil.rmtree(root)
        raw.unlink()
        data.unlink()
        if not out.exists():  # a concurrent build may have finished first
            work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    log(f"image built in {time.time() - t0:.0f}s: {out.name}")
    return out


def run_dir(name: str) -> Path:
    return CACHE / "run" / name


def port_of(name: str) -> int:
    return int((run_dir(name) / "port").read_text())


def ssh_cmd(name: str) -> list[str]:
    return ["ssh", "-q", "-i", str(KEY), "-p", str(port_of(name)),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@127.0.0.1"]  # fmt: skip


def _ssh_ready(name: str) -> bool:
    return subprocess.run(ssh_cmd(name) + ["systemctl is-system-running --wait >/dev/null; true"],
                          capture_output=True, timeout=120).returncode == 0  # fmt: skip


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def lan_args(lan: str) -> tuple[list[str], str]:
    """QEMU's arguments for ``listen|connect:PORT:ADDR`` and the guest address."""
    mode, port, addr = lan.split(":")
    if mode not in ("listen", "connect"):
        raise SystemExit(f"--lan {lan}: listen or connect, then the port and the address")
    last = int(addr.rsplit(".", 1)[1])
    return ["-netdev", f"socket,id=n1,{mode}=127.0.0.1:{port}",
            "-device", f"virtio-net-pci,netdev=n1,mac=52:54:00:77:00:{last:02x}"], addr


def _identity(hostname: str | None, addr: str | None, peers: list[str]) -> str:
    """The shell that gives a booted VM its name, its LAN address and its peers."""
    if not (hostname or addr or peers):
        return ""
    hostname = hostname or "ds01-test"
    hosts = f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n" + "".join(
        f"{a} {n}\n" for n, _, a in (p.partition("=") for p in peers))
    script = f"hostnamectl set-hostname {hostname}\nprintf '{hosts}' > /etc/hosts\n"
    if addr:
        script += (
            "printf '[Match]\\nName=eth1\\n\\n[Network]\\nAddress=%s/24\\n' "
            f"{addr} > /etc/systemd/network/30-eth1.network\n"
            "networkctl reload\nnetworkctl reconfigure eth1\n"
        )
    return script


def up(name: str, port: int, guestfwd: list[str], memory: int, hostname: str | None = None,
       lan: str | None = None, peers: tuple[str, ...] | list[str] = ()) -> None:
    image = build()
    down(name, quiet=True)
    rd = run_dir(name)
    rd.mkdir(parents=True, exist_ok=True)
    if not _port_free(port):
        raise SystemExit(f"port {port} is in use; pick another with --port")
    for disk in ("base", "data"):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image / f"{disk}.qcow2"),
             "-F", "qcow2", str(rd / f"{disk}.qcow2")])  # fmt: skip
    net = f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
    for rule in guestfwd:
        net += f",guestfwd={rule}"
    (rd / "port").write_text(str(port))
    lan_qemu, addr = lan_args(lan) if lan else ([], None)
    t0 = time.time()
    run(["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
         "-m", str(memory), "-no-reboot",
         "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
         "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.unified_cgroup_hierarchy=1",
         "-drive", f"file={rd / 'base.qcow2'},if=virtio,format=qcow2,cache=unsafe",
         "-drive", f"file={rd / 'data.qcow2'},if=virtio,format=qcow2,cache=unsafe",
         "-netdev", net, "-device", "virtio-net-pci,netdev=n0", *lan_qemu,
         "-serial", f"file:{rd / 'serial.log'}", "-display", "none", "-monitor", "none",
         "-daemonize", "-pidfile", str(rd / "qemu.pid")])  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            if _ssh_ready(name):
                break
        except subprocess.TimeoutExpired:
            pass
        time.sleep(2)
    else:
        tail = (rd / "serial.log").read_text(errors="replace")[-3000:]
        down(name, quiet=True)
        raise SystemExit(f"VM {name} did not come up in 300s; serial log tail:\n{tail}")
    log(f"VM {name} up on 127.0.0.1:{port} in {time.time() - t0:.0f}s")
    # Always in this order, so that the users have the same UIDs on every VM
    # (Slurm's nodes must agree on them).
    seed = "set -e\n" + "".join(
        f"id -u {u} >/dev/null 2>&1 || useradd -m -s /bin/bash {u}\n" for u in LOCAL_USERS
    ) + _identity(hostname, addr, peers)
    subprocess.run(ssh_cmd(name) + ["bash -s"], input=seed.encode(), check=True)


def down(name: str, quiet: bool = False) -> None:
    rd = run_dir(name)
    pidfile = rd / "qemu.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().strip() or 0)
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if rd.exists():
        shutil.rmtree(rd, ignore_errors=True)
        if not quiet:
            log(f"VM {name} down")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--force", action="store_true")
    u = sub.add_parser("up")
    u.add_argument("--name", default=os.environ.get("DS01_VM", "ci"))
    u.add_argument("--port", type=int, default=2222)
    u.add_argument("--memory", type=int, default=2048)
    u.add_argument("--guestfwd", action="append", default=[],
                   help="e.g. tcp:10.0.2.100:389-tcp:127.0.0.1:3389")
    u.add_argument("--hostname", help="the VM's host name (default: the image's, ds01-test)")
    u.add_argument("--lan", help="listen|connect:PORT:ADDR, a link to other VMs (10.77.0.N)")
    u.add_argument("--peer", action="append", default=[], help="NAME=ADDR for /etc/hosts")
    d = sub.add_parser("down")
    d.add_argument("--name", default=os.environ.get("DS01_VM", "ci"))
    s = sub.add_parser("ssh")
    s.add_argument("--name", default=os.environ.get("DS01_VM", "ci"))
    s.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.force)
    elif args.cmd == "up":
        up(args.name, args.port, args.guestfwd, args.memory, args.hostname, args.lan, args.peer)
    elif args.cmd == "down":
        down(args.name)
    elif args.cmd == "ssh":
        cmd = [c for c in args.command if c != "--"]
        sys.exit(subprocess.run(ssh_cmd(args.name) + [" ".join(cmd)]).returncode)


if __name__ == "__main__":
    main()
