"""Base: the ds01 package, its command and the validated policy on the server.

Every other component relies on what this one installs: `ds01` on every
user's PATH and the policy at /etc/ds01/resource-allocation.yaml.
"""

from pyinfra import host
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files

from deploys._support import apt_packages, server_requirements, wheelhouse
from ds01 import __version__
from facts.python import PythonVersion
from operations import venv

distro = host.get_fact(LinuxDistribution)
if distro.get("name") not in ("Debian", "Ubuntu"):
    raise SystemExit(f"ds01-infra supports Debian and Ubuntu servers; {host.name} runs {distro}")
python_version = host.get_fact(PythonVersion) or "3.11"  # apt installs python3 below

apt.packages(
    name="Base packages",
    packages=apt_packages("base"),
)

files.directory(name="ds01 configuration /etc/ds01", path=host.data.ds01_etc,
                user="root", group="root", mode="0755")
files.put(
    name="Policy file /etc/ds01/resource-allocation.yaml",
    src=host.data.policy_file,
    dest=f"{host.data.ds01_etc}/resource-allocation.yaml",
    user="root", group="root", mode="0644",
)
for path, mode in (("/var/lib/ds01", "0755"), ("/var/log/ds01", "0750")):
    files.directory(name=f"ds01 state {path}", path=path, user="root", group="root", mode=mode)

wheels = wheelhouse(python_version)
files.directory(name="ds01 prefix /opt/ds01", path=host.data.ds01_prefix,
                user="root", group="root", mode="0755")
files.sync(
    name="Wheelhouse /opt/ds01/wheelhouse",
    src=str(wheels.path),
    dest=f"{host.data.ds01_prefix}/wheelhouse",
    user="root", group="root", mode="0644", dir_mode="0755",
    delete=True,
)
venv.dependencies(
    name="ds01 dependencies in /opt/ds01/venv",
    path=host.data.ds01_venv,
    wheelhouse=f"{host.data.ds01_prefix}/wheelhouse",
    requirements=server_requirements(),
    build=wheels.deps_build,
)
venv.package(
    name=f"ds01 {__version__} in /opt/ds01/venv",
    path=host.data.ds01_venv,
    wheel=f"{host.data.ds01_prefix}/wheelhouse/{wheels.ds01_wheel}",
    dist="ds01",
    build=wheels.ds01_build,
)
files.link(
    name="ds01 on every user's PATH: /usr/local/bin/ds01",
    path="/usr/local/bin/ds01",
    target=f"{host.data.ds01_venv}/bin/ds01",
    user="root", group="root",
)
