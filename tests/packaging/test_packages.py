"""The .deb and the .rpm, built from the last commit as `make deb` / `make rpm` build them.

The .deb is installed for real with apt (its dependencies from Debian) and used
with the system python3, no virtualenv: crm_resource lists the agents, pcs
describes them, ocf-tester runs them, `pacestack` works; then it is removed
(only its conffile stays) and purged. The .rpm is inspected with rpm and rpmlint.

The install happens inside a private mount namespace in which
/usr/lib/ocf/resource.d is a tmpfs holding the host's other providers (bind
mounts): the `ocf_provider` fixture, and other test sessions on this machine,
keep their working-tree agents in the host's /usr/lib/ocf/resource.d/pacestack,
and dpkg must neither overwrite nor delete them. The test checks that directory
is byte-for-byte the same afterwards. Everything else (dpkg's database,
/usr/bin/pacestack, dist-packages, /etc/pacestack) is the host's, for real.

Time budget: about 60-90 s on 2 busy cores (two builds of each package).
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacestack import proc
from tests.fixtures import ocf as ocf_fixture

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build.sh"
RESOURCE_D = Path("/usr/lib/ocf/resource.d")
PROVIDER_DIR = RESOURCE_D / "pacestack"
CONF = "/etc/pacestack/pacestack.conf"
DEB_SITE = "/usr/lib/python3/dist-packages"
# a clean system environment: nothing from the dev venv or pyenv
SYSTEM_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive"}
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
def fake_service(tmp: Path) -> str:
    """A daemon that takes any arguments (--config-file ...) and just stays up."""
    path = tmp / "fake-service"
    path.write_text("#!/usr/bin/python3\nimport time\nwhile True:\n    time.sleep(60)\n")
    path.chmod(0o755)
    return str(path)


def cinder_params(tmp: Path) -> dict[str, str]:
    # validate-all reads it with Debian's oslo.config; no [database]: process checks only
    (tmp / "cinder.conf").write_text("[DEFAULT]\nhost = controller\n")
    return {"binary": fake_service(tmp), "config": f"{tmp}/cinder.conf",
            "pid": f"{tmp}/cinder-volume.pid", "check_services": "false", "stop_timeout": "2"}


# ocf-tester runs start/monitor/stop for real: parameters that make each agent
# manage something harmless here (as tests/agents/test_openstack_service.py and
# test_cinder_volume.py do). Agents not listed need a real service (galera:
# MariaDB under a cluster) and are checked through meta-data, pcs and crm_resource.
OCF_TESTER = {
    "openstack-service": lambda tmp: {"binary": fake_service(tmp), "pid": f"{tmp}/svc.pid",
                                      "stop_timeout": "2"},
    "cinder-volume": cinder_params,
}
# third-party top-level imports of the code -> (Debian package, RPM package)
RUNTIME_DEPS = {
    "pymysql": ("python3-pymysql", "python3-PyMySQL"),
    "oslo_config": ("python3-oslo.config", "python3-oslo-config"),
    "daemon": ("python3-daemon", "python3-daemon"),
    "pcs": ("pcs", "pcs"),
    "lxml": ("python3-lxml", "python3-lxml"),
}
# imported only on one command's path: a weak dependency (Recommends)
OPTIONAL_DEPS = {
    "openstack": ("python3-openstacksdk", "python3-openstacksdk"),
}
# imported only for an optional output (drill --plot): Suggests
SUGGESTED_DEPS = {
    "matplotlib": ("python3-matplotlib", "python3-matplotlib"),
}
# run inside a lab host by the lab's OpenStack venv, never by the package's python:
# their imports are that venv's, not the package's dependencies
OTHER_INTERPRETER = {"cluster/lab/cloud_probe.py"}
OTHER_DEPS = [("pacemaker", "pacemaker"), ("pcs", "pcs"), ("resource-agents", "resource-agents")]
# run by openstack-service's sh monitor when present (agents/sh_monitor.py)
OTHER_WEAK_DEPS = [("curl", "curl")]

pytestmark = pytest.mark.slow


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Others commit while the suite runs: every build and every look at the tree uses
# the one commit HEAD was when this module started.
COMMIT = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                        text=True, check=True).stdout.strip()


def show(path: str) -> str:
    return git("show", f"{COMMIT}:{path}")


def build(kind: str, dist: Path, make: bool = False) -> tuple[Path, float]:
    """Build with `make deb|rpm` (make=True) or packaging/build.sh directly."""
    start = time.monotonic()
    argv = ["make", "-s", "-C", str(ROOT), kind] if make else [str(BUILD), kind, COMMIT]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, "DIST_DIR": str(dist), "PACKAGE_REF": COMMIT})
    elapsed = time.monotonic() - start
    assert done.returncode == 0, f"{kind} build failed:\n{done.stderr[-4000:]}"
    return Path(done.stdout.strip().splitlines()[-1]), elapsed


def expected_agents() -> set[str]:
    """The registry in the built commit's agents/install.py, for modules that exist there."""
    tree = ast.parse(show("agents/install.py"))
    registry = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                    if isinstance(node, ast.AnnAssign | ast.Assign)
                    and "AGENTS" in ast.unparse(node.targets[0] if isinstance(node, ast.Assign)
                                                else node.target))
    files = set(git("ls-tree", "-r", "--name-only", COMMIT, "agents").split())
    found = set()
    for name, target in registry.items():
        mod = target.split(":")[0].removeprefix("pacestack.agents.")
        if f"agents/{mod}.py" in files or f"agents/{mod}/__init__.py" in files:
            found.add(name)
    return found


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    deb, deb_s = build("deb", dist, make=True)
    rpm, rpm_s = build("rpm", dist, make=True)
    print(f"\nbuild times: deb {deb_s:.1f} s, rpm {rpm_s:.1f} s")
    return {"deb": deb, "rpm": rpm, "dist": dist}


def test_builds_are_reproducible(packages, tmp_path):
    # a second build in other temporary directories: same commit, same bytes
    for kind in ("deb", "rpm"):
        again, _ = build(kind, tmp_path)
        assert again.name == packages[kind].name
        assert sha256(again) == sha256(packages[kind]), f"{kind} differs between two builds"


def commit_version() -> str:
    return re.search(r'__version__ = "(.+)"', show("pacestack/__init__.py"))[1]


def test_deb_is_stamped_with_the_commit_and_leaves_the_tree_alone(packages):
    version = commit_version()
    assert packages["deb"].name == f"pacestack_{version}-1_all.deb"
    assert packages["rpm"].name == f"pacestack-{version}-1.noarch.rpm"
    # SOURCE_DATE_EPOCH is the commit's time: every file carries it
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(packages["deb"])],
                          capture_output=True, check=True).stdout
    listing = subprocess.run(["tar", "-tv", "--full-time", "--utc"], input=data,
                             capture_output=True, check=True).stdout.decode().splitlines()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S",
                          time.gmtime(int(git("log", "-1", "--format=%ct", COMMIT))))
    assert listing and all(stamp in line for line in listing), "mtimes are not the commit time"
    assert not (ROOT / "debian").exists(), "the build left ./debian in the working tree"


def test_lintian_reports_no_errors(packages):
    done = subprocess.run(["lintian", "--fail-on", "error", "--no-tag-display-limit",
                           str(packages["deb"])], capture_output=True, text=True, check=False,
                          timeout=300)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("E:")]


def declared_imports() -> set[str]:
    found = set()
    for top in ("pacestack", "agents", "cluster", "galera", "migrate"):
        for path in git("ls-tree", "-r", "--name-only", COMMIT, top).split():
            if not path.endswith(".py") or path in OTHER_INTERPRETER:
                continue
            for node in ast.walk(ast.parse(show(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                for name in names:
                    first = name.split(".")[0]
                    if first not in sys.stdlib_module_names and first != "pacestack":
                        found.add(first)
    return found


def deb_depends(deb: Path, field: str = "Depends") -> set[str]:
    field = subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True,
                           text=True, check=True).stdout
    return {re.split(r"[\s(]", d.strip())[0] for d in field.split(",") if d.strip()}


def rpm_query(rpm: Path, *args: str) -> list[str]:
    return subprocess.run(["rpm", "-qp", *args, str(rpm)], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_every_runtime_import_is_a_declared_dependency(packages):
    imports = declared_imports()
    unknown = imports - set(RUNTIME_DEPS) - set(OPTIONAL_DEPS) - set(SUGGESTED_DEPS)
    assert not unknown, (f"the code imports {sorted(unknown)}: add their Debian and RPM "
                         "packages to packaging/debian/control, packaging/rpm/pacestack.spec "
                         "and RUNTIME_DEPS")
    deb = deb_depends(packages["deb"])
    rpm = {re.split(r"\s", r)[0] for r in rpm_query(packages["rpm"], "--requires")}
    for deb_name, rpm_name in [RUNTIME_DEPS[i] for i in imports & set(RUNTIME_DEPS)] + OTHER_DEPS:
        assert deb_name in deb, f"{deb_name} missing from the .deb's Depends"
        assert rpm_name in rpm, f"{rpm_name} missing from the .rpm's Requires"
    deb_weak = deb_depends(packages["deb"], "Recommends")
    rpm_weak = {re.split(r"\s", r)[0] for r in rpm_query(packages["rpm"], "--recommends")}
    for deb_name, rpm_name in [OPTIONAL_DEPS[i] for i in imports & set(OPTIONAL_DEPS)] + \
            OTHER_WEAK_DEPS:
        assert deb_name in deb_weak, f"{deb_name} missing from the .deb's Recommends"
        assert rpm_name in rpm_weak, f"{rpm_name} missing from the .rpm's Recommends"
    deb_suggests = deb_depends(packages["deb"], "Suggests")
    rpm_suggests = {re.split(r"\s", r)[0] for r in rpm_query(packages["rpm"], "--suggests")}
    for deb_name, rpm_name in [SUGGESTED_DEPS[i] for i in imports & set(SUGGESTED_DEPS)]:
        assert deb_name in deb_suggests, f"{deb_name} missing from the .deb's Suggests"
        assert rpm_name in rpm_suggests, f"{rpm_name} missing from the .rpm's Suggests"


def test_rpm_holds_the_same_files_and_requires(packages):
    files = set(rpm_query(packages["rpm"], "-l"))
    version = packages["rpm"].name.split("-")[1]
    site = next(f for f in files if f.endswith("/pacestack/__init__.py")).rsplit("/", 2)[0]
    assert re.fullmatch(r"/usr/lib/python3\.\d+/site-packages", site), site
    for path in ["/usr/bin/pacestack", CONF, f"{site}/pacestack/cli.py",
                 f"{site}/pacestack/agents/install.py", f"{site}/pacestack-{version}.dist-info",
                 "/usr/share/man/man1/pacestack.1.gz",
                 f"/usr/share/licenses/pacestack-{version}/LICENSE",
                 *(f"{PROVIDER_DIR}/{a}" for a in expected_agents())]:
        assert path in files, f"{path} not in the rpm"
    assert {f.rsplit("/", 1)[1] for f in files if f.startswith(f"{PROVIDER_DIR}/")} \
        == expected_agents()
    assert rpm_query(packages["rpm"], "--configfiles") == [CONF]
    # the same man pages and agents as the .deb
    deb_files = subprocess.run(["dpkg-deb", "-c", str(packages["deb"])], capture_output=True,
                               text=True, check=True).stdout
    deb_paths = {line.split()[-1].removeprefix(".") for line in deb_files.splitlines()}
    for prefix in ("/usr/share/man/man1/", f"{PROVIDER_DIR}/"):
        assert {p for p in files if p.startswith(prefix)} == \
            {p for p in deb_paths if p.startswith(prefix) and p != prefix}
    requires = rpm_query(packages["rpm"], "--requires")
    for dep in ["python3-PyMySQL >= 1.0.2", "python3-oslo-config >= 9.0.0",
                "python3-daemon >= 2.3.0", "pacemaker >= 2.1", "pcs", "resource-agents"]:
        assert dep in requires, f"{dep} not in {requires}"
    # the agents run the distribution's python3 with Fedora's site directories
    text = subprocess.run(f"rpm2cpio {packages['rpm']} | cpio -i --quiet --to-stdout "
                          f"'.{PROVIDER_DIR}/*'", shell=True, capture_output=True, text=True,
                          check=True).stdout
    # each by its shebang, or (openstack-service) from its sh front's exec
    assert text.count("#!/usr/bin/python3 -IS\n") + text.count(
        "exec /usr/bin/python3 -IS -c '") == len(expected_agents())
    assert all(site in line for line in text.splitlines() if "sys.path" in line)


def test_rpmlint_reports_no_errors(packages):
    done = subprocess.run(["rpmlint", "-c", str(ROOT / "packaging/rpm/rpmlint.toml"),
                           str(packages["rpm"]), str(ROOT / "packaging/rpm/pacestack.spec")],
                          capture_output=True, text=True, check=False, timeout=300)
    print(done.stdout)
    assert re.search(r"\b0 errors\b", done.stdout), done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr


# -- the .deb, installed for real --------------------------------------------------


def snapshot(path: Path) -> object:
    """Everything that could change in the host's provider directory."""
    if path.is_symlink():
        return ("symlink", os.readlink(path))
    if not path.exists():
        return None
    return {p.name: (oct(p.lstat().st_mode), os.readlink(p) if p.is_symlink()
                     else p.read_bytes() if p.is_file() else "dir")
            for p in sorted(path.iterdir())}


_NAMESPACE = r"""
set -e
rd=/usr/lib/ocf/resource.d
mkdir -p "$1/host"
mount --bind "$rd" "$1/host"
mount -t tmpfs -o mode=0755 pacestack-pkgtest "$rd"
for e in "$1"/host/* "$1"/host/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=$(basename "$e")
    [ "$n" = pacestack ] && continue
    if [ -L "$e" ]; then cp -P "$e" "$rd/$n"
    elif [ -d "$e" ]; then mkdir "$rd/$n"; mount --bind "$e" "$rd/$n"
    else cp -p "$e" "$rd/$n"; fi
done
echo ready
exec sleep 3600
"""


class PrivateProviders:
    """A mount namespace where dpkg sees its own /usr/lib/ocf/resource.d (see top)."""

    def __init__(self, stash: Path) -> None:
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--",
             "sh", "-c", _NAMESPACE, "sh", str(stash)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"namespace setup failed: {self.proc.stderr.read()}")

    def run(self, argv: list[str], check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", *argv],
                              capture_output=True, text=True, env=SYSTEM_ENV, cwd="/",
                              timeout=timeout, input=input, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # the holder we started; its namespace (and tmpfs) go with it
        self.proc.wait(timeout=30)


    def existing(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` that exist as dpkg sees them (inside the namespace)."""
        return self.run(["sh", "-c", 'for p; do if [ -e "$p" ] || [ -L "$p" ]; then '
                         'echo "$p"; fi; done', "sh", *paths]).stdout.split()


def package_status(ns: PrivateProviders) -> str:
    """dpkg's two-letter state ("ii", "rc"...), "" when dpkg knows nothing of it."""
    done = ns.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "pacestack"], check=False)
    state = done.stdout.strip() if done.returncode == 0 else ""
    return "" if state in ("un", "pn") else state


def purge(ns: PrivateProviders) -> None:
    if package_status(ns):
        if ns.run([*APT, "purge", "pacestack"], check=False).returncode != 0:
            ns.run(["dpkg", "--purge", "--force-all", "pacestack"])


@pytest.fixture
def installed(packages, tmp_path) -> Iterator[PrivateProviders]:
    # The ocf_provider fixture's lock: no test session installs or removes its agents
    # in the host's provider directory meanwhile, so an unchanged directory afterwards
    # shows the namespace kept dpkg away from it.
    with ocf_fixture._locked():
        before = snapshot(PROVIDER_DIR)
        ns = PrivateProviders(tmp_path / "stash")
        try:
            purge(ns)  # a run killed half-way may have left it installed
            assert not Path("/etc/pacestack").exists(), \
                "/etc/pacestack exists but is not the package's: the purge would delete it"
            ns.run([*APT, "install", "--no-install-recommends", str(packages["deb"])])
            yield ns
        finally:
            with contextlib.suppress(Exception):
                purge(ns)  # even when the test failed: never leave it installed
            ns.close()
            assert snapshot(PROVIDER_DIR) == before, "the host's provider directory changed"


def test_installed_deb_works_with_system_python_and_removes_cleanly(installed, tmp_path):
    ns = installed
    agents = expected_agents()
    assert agents, "no agent in the registry exists in the commit"
    assert package_status(ns) == "ii"
    # the system python3 runs it, from Debian's dist-packages and Debian's libraries
    where = ns.run(["/usr/bin/python3", "-c",
                    "import pacestack, oslo_config, pymysql, daemon, importlib.metadata as m; "
                    "print(pacestack.__file__, oslo_config.__file__, pymysql.__file__, "
                    "daemon.__file__, m.version('oslo.config'))"]).stdout.split()
    assert where[0] == f"{DEB_SITE}/pacestack/__init__.py"
    assert all(p.startswith(DEB_SITE + "/") for p in where[1:4]), where
    # the byte-code was compiled at install time by py3compile
    assert ns.existing([f"{DEB_SITE}/pacestack/__pycache__"])
    print(f"\nDebian's oslo.config: {where[4]}")
    assert ns.run(["which", "pacestack"]).stdout.strip() == "/usr/bin/pacestack"
    version = ns.run(["pacestack", "--version"])
    assert (version.stdout + version.stderr).strip() == commit_version()
    sample = ns.run(["pacestack", "config", "sample"]).stdout
    assert "[database]" in sample and "[openstack]" in sample
    assert Path(CONF).read_text() == sample  # the conffile is that sample
    assert oct(Path(CONF).stat().st_mode & 0o777) == "0o600"
    assert "OK" in ns.run(["pacestack", "config", "check", CONF]).stdout
    groups = ns.run(["/usr/bin/python3", "-c", "from pacestack import commands; "
                     "print(*(ep.name for ep in commands.command_groups()))"]).stdout.split()
    assert "config" in groups
    for group in groups:  # every part's command group imports with Debian's libraries
        ns.run(["pacestack", group, "--help"])
    pages = [f"/usr/share/man/man1/{p}.1.gz" for p in ["pacestack", *(f"pacestack-{g}"
                                                                      for g in groups)]]
    assert ns.existing(pages) == pages
    assert "Apache-2.0" in Path("/usr/share/doc/pacestack/copyright").read_text()

    # Pacemaker's tools see exactly the packaged agents
    listed = ns.run(["crm_resource", "--list-agents", "ocf:pacestack"]).stdout.split()
    assert set(listed) == agents
    for agent in sorted(agents):
        meta = ns.run(["crm_resource", "--show-metadata", f"ocf:pacestack:{agent}"]).stdout
        ns.run(["xmllint", "--noout", "--dtdvalid", "/usr/share/resource-agents/ra-api-1.dtd",
                "-"], input=meta)
        described = ns.run(["pcs", "resource", "describe", f"ocf:pacestack:{agent}"]).stdout
        assert f"ocf:pacestack:{agent}" in described
        assert Path(ns.run(["readlink", "-f", str(PROVIDER_DIR / agent)]).stdout.strip()) \
            == PROVIDER_DIR / agent
    ns.run(["mkdir", "-p", "/run/resource-agents"])
    print(f"ocf-tester runs: {sorted(agents & set(OCF_TESTER))}; meta-data, pcs and "
          f"crm_resource only: {sorted(agents - set(OCF_TESTER))}")
    for agent in sorted(agents & set(OCF_TESTER)):
        params = OCF_TESTER[agent](tmp_path)
        opts = [arg for k, v in params.items() for arg in ("-o", f"{k}={v}")]
        try:
            done = ns.run(["ocf-tester", "-n", f"pkgtest-{agent}", *opts,
                           str(PROVIDER_DIR / agent)], check=False, timeout=180)
        finally:  # ocf-tester stops what it started, unless it failed half-way
            pid = proc.read_pidfile(params["pid"])
            if pid and proc.is_alive(pid) and "fake-service" in " ".join(proc.cmdline(pid)):
                proc.terminate(pid, timeout=5)
        assert done.returncode == 0, f"ocf-tester {agent}:\n{done.stdout}\n{done.stderr}"
        assert "passed all tests" in done.stdout

    # remove: every file goes but the conffile, and nothing is left in its directories
    owned = ns.run(["dpkg-query", "-L", "pacestack"]).stdout.split()
    conffiles = [line.split()[0] for line in ns.run(
        ["dpkg-query", "-W", "-f=${Conffiles}", "pacestack"]).stdout.splitlines() if line.strip()]
    assert conffiles == [CONF]
    dirs = set(ns.run(["sh", "-c", 'for p; do [ -d "$p" ] && echo "$p"; done; true', "sh",
                       *owned]).stdout.split())
    ns.run([*APT, "remove", "pacestack"])
    assert package_status(ns) == "rc"
    left = ns.existing([p for p in owned if p not in conffiles and p not in dirs])
    assert not left, f"left behind by remove: {left}"
    # its own directories are gone too (py3clean removed the byte-code dpkg never listed)
    ours = [p for p in dirs if "pacestack" in p and p != "/etc/pacestack"]
    assert ours and not ns.existing(ours), f"directories left: {ns.existing(ours)}"
    assert ns.existing([CONF]) == [CONF]
    assert not ns.run(["crm_resource", "--list-agents", "ocf:pacestack"],
                      check=False).stdout.split()
    ns.run([*APT, "purge", "pacestack"])
    assert package_status(ns) == ""
    assert not ns.existing(["/etc/pacestack"])


def test_debian_control_and_spec_agree_with_setup_cfg():
    # the packaged dependency floors are the ones setup.cfg asks for
    cp = configparser.ConfigParser()
    cp.read(ROOT / "setup.cfg")
    floors = dict(re.match(r"([\w.-]+)>=([\d.]+)", r.strip()).groups()
                  for r in cp["options"]["install_requires"].split("\n") if r.strip())
    control = (ROOT / "packaging/debian/control").read_text()
    spec = (ROOT / "packaging/rpm/pacestack.spec").read_text()
    for pypi, (deb, rpm) in {"PyMySQL": RUNTIME_DEPS["pymysql"],
                             "oslo.config": RUNTIME_DEPS["oslo_config"],
                             "python-daemon": RUNTIME_DEPS["daemon"]}.items():
        assert re.search(rf"{re.escape(deb)} \((>= (1:)?{re.escape(floors[pypi])})\)", control), deb
        assert f"Requires:       {rpm} >= {floors[pypi]}" in spec, rpm
