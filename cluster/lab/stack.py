"""The rehearsal lab (``pacestack lab``): the HA controller pair on one machine.

LabCluster (harness.py) gives two controllers and an arbitrator host in namespaces.
This module puts the stack on them: garbd on the arbitrator, Galera under
ocf:pacestack:galera, the VIP (named as in the description, resolvable inside
the hosts), Keystone and the Neutron API from an OpenStack venv under
ocf:pacestack:openstack-service, fencing through fence_dummy with a lab "power
switch". The Pacemaker configuration is written as a cluster description and
applied by ``pacestack cluster apply`` inside controller01, in two steps: Galera,
VIP and fencing first, then (after the databases are loaded) the services.

Everything returns data; the CLI renders. One lab per registry (machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pacestack import proc, wsgi_apps
from pacestack.errors import ConfigError, PacestackError, RuntimeFailure

from . import access, crm, services, state
from .harness import LabCluster
from .netns import LabError

STACK_FILE = "stack.json"
Progress = Callable[[str], None]
HERE = Path(__file__).resolve()
PACESTACK = str(Path(sys.executable).with_name("pacestack"))
# not under /run: every node mounts its own /run, and the nodes must read the lab's
# files (descriptions, OpenStack configs, power switch) at the same paths as the host
BASE_DIR = Path(os.environ.get("PACESTACK_LAB_BASE", "/var/lib/pacestack-lab"))


def sample_description() -> Path | None:
    """The bundled description of the seed's cloud: examples/ beside the parts, in the
    source tree as in an install (setup.cfg's package data), or a distribution's share."""
    for cand in (HERE.parents[2] / "examples" / "seed-cluster.conf",
                 Path(sys.prefix) / "share" / "pacestack" / "examples" / "seed-cluster.conf",
                 Path("/usr/share/pacestack/examples/seed-cluster.conf")):
        if cand.is_file():
            return cand
    return None


def cached_openstack() -> tuple[Path, Path] | None:
    """(venv, schemas dir) of the complete OpenStack cache under $PACESTACK_CACHE
    (built by scripts/build-openstack-cache.py / the test fixtures) of the newest
    release, the most recently built one of it if several."""
    from pacestack import wsgi_apps
    from pacestack.errors import ConfigError

    base = Path(os.environ.get("PACESTACK_CACHE", "/var/cache/pacestack"))
    found = []
    for root in base.glob("openstack-*"):
        venv = root / "venv"
        schemas = sorted(root.glob("schemas-*"))
        if (venv / ".pacestack-complete").is_file() and schemas and \
                (schemas[-1] / "dump.sql").is_file():
            try:
                release = wsgi_apps.release_of_venv(venv)
            except ConfigError:
                continue  # a release the lab could not serve anyway
            found.append((release, venv.stat().st_mtime, venv, schemas[-1]))
    if not found:
        return None
    _, _, venv, schemas = max(found)
    return venv, schemas


@dataclass
class UpOptions:
    description: Path | None = None      # default: the bundled seed description
    dump: Path | None = None             # an SQL dump (mysqldump --databases) to load
    venv: Path | None = None             # OpenStack venv (default: the cache)
    schemas: Path | None = None          # the sample schemas (default: the cache)
    services: bool = True                # Keystone + Neutron API
    cinder_volume: bool = True           # single instance, fake driver
    fencing: bool = True
    registry: Path | None = None
    timeout: float = 300
    # services.ANCHOR_GALERA: resource-agents' galera instead of ours (benchmarks)
    galera_agent: str = "ocf:pacestack:galera"
    # every service of the controller profile (controller.py) and a fake compute
    whole_profile: bool = False
    glance_venv: Path | None = None      # default: the cache's glance-*/venv
    # oslo.log's debug level in every OpenStack service's config (large, slower logs)
    service_debug: bool = False


@dataclass
class LabInfo:
    """What `lab up` built, saved as stack.json in the lab directory."""

    run_id: str
    nodes: list[str]
    arbitrator: str
    vip: str
    vip_name: str
    description: str
    source_description: str
    venv: str | None
    config_dir: str | None
    power_dir: str | None
    db_password_file: str
    services: list[str]
    single_instance: list[str]
    dump: str | None
    garbd_pid: int | None = None
    installed_agents: list[str] = field(default_factory=list)  # written by this lab up
    timings: dict[str, float] = field(default_factory=dict)
    migrate_config: str | None = None    # pacestack.conf for `pacestack migrate` via the VIP
    whole_profile: bool = False
    admin_password_file: str | None = None   # Keystone's admin (whole profile)
    compute: str | None = None               # the host running nova-compute
    rabbitmq_pid: int | None = None          # the arbitrator's RabbitMQ member
    service_debug: bool = False              # the services log at debug level

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _registry(registry: Path | None) -> Path:
    return Path(registry) if registry else state.REGISTRY


def private_registry(purpose: str) -> Path:
    """A registry of its own under /run, so a test's or a benchmark's lab never meets
    the operator's (or another run's)."""
    return Path("/run") / f"pacestack-lab-{purpose}-{os.getpid()}-{secrets.token_hex(3)}"


def remove_registry(registry: Path) -> None:
    """Destroy every lab recorded in a private registry, then the registry itself."""
    for rec in LabCluster.list_runs(registry):
        LabCluster.attach(rec["run_id"], registry=registry).destroy()
    if registry.exists():
        for leftover in registry.iterdir():
            leftover.unlink()
        with contextlib.suppress(FileNotFoundError):
            registry.rmdir()


def find_labs(registry: Path | None = None) -> list[tuple[dict, Path]]:
    """Every registered lab run that `lab up` made (its record and stack.json path)."""
    reg = _registry(registry)
    out = []
    for rec in LabCluster.list_runs(reg):
        path = Path(rec.get("dir", "")) / STACK_FILE
        if rec.get("run_id") and path.is_file():
            out.append((rec, path))
    return out


class Lab:
    """A running lab: the LabCluster plus what runs on it."""

    def __init__(self, cluster: LabCluster, info: LabInfo):
        self.cluster = cluster
        self.info = info

    @classmethod
    def find(cls, registry: Path | None = None) -> Lab:
        labs = find_labs(registry)
        if not labs:
            raise PacestackError("no lab is running here (start one with `pacestack lab up`)")
        rec, path = labs[0]
        info = LabInfo(**json.loads(path.read_text(encoding="utf-8")))
        return cls(LabCluster.attach(rec["run_id"], registry=_registry(registry)), info)

    def save(self) -> None:
        path = self.cluster.dir / STACK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, path)

    # ---- state ---------------------------------------------------------------
    def observer(self):
        """A node that can answer crm_mon (online first)."""
        for node in self.cluster.nodes:
            if node.booted and node.running("pacemakerd"):
                return node
        raise PacestackError("no lab node is up to ask")

    def placement(self) -> dict[str, list[tuple[str, str]]]:
        for node in self.cluster.nodes:
            if node.booted and node.running("pacemakerd"):
                placed = crm.placement(node)
                if placed is not None:
                    return placed
        return {}

    def status(self) -> dict:
        desc = self.cluster.describe()
        placed = self.placement()
        return {"run_id": self.info.run_id, "dir": desc["dir"], "network": desc["network"],
                "vip": self.info.vip, "vip_name": self.info.vip_name,
                "description": self.info.description, "hosts": desc["hosts"],
                "resources": {rid: [{"node": n, "role": r} for n, r in where]
                              for rid, where in sorted(placed.items())},
                "garbd": bool(self.info.garbd_pid and proc.is_alive(self.info.garbd_pid)),
                "whole_profile": self.info.whole_profile,
                "service_debug": self.info.service_debug,
                "rabbitmq_arbitrator": bool(self.info.rabbitmq_pid
                                            and proc.is_alive(self.info.rabbitmq_pid)),
                "migrate_config": self.info.migrate_config,
                "migrate_command": (access.exec_hint(self.cluster.node_names[0],
                                                     self.info.migrate_config)
                                    if self.info.migrate_config else None)}

    def node_names(self) -> list[str]:
        return self.cluster.node_names + [self.info.arbitrator]

    def exec(self, name: str, argv: list[str]) -> int:
        """Run argv inside lab node ``name`` with this terminal; its exit code."""
        self._check_node(name)
        return access.exec_in(self.cluster.node(name), argv)

    def _check_node(self, name: str) -> None:
        if name not in self.node_names():
            raise ConfigError(f"no lab node named {name!r} (nodes: "
                              f"{', '.join(self.node_names())})")

    # ---- faults --------------------------------------------------------------
    def crash(self, name: str) -> None:
        self._check_node(name)
        try:
            self.cluster.crash(name)
        except LabError as exc:
            raise RuntimeFailure(str(exc)) from None
        self._forget_addresses(name)

    def _forget_addresses(self, name: str) -> None:
        """A power cut loses the addresses Pacemaker added (the VIP); the lab keeps a
        crashed host's network namespace, so drop them as the reboot would. Without
        this the kernel of a "dead" node still answers for the VIP and the node
        reports it active again when it boots (twice active)."""
        node = self.cluster.node(name)
        res = subprocess.run(["ip", "-n", node.netns, "-o", "-4", "addr", "show"],
                             capture_output=True, text=True, check=False, timeout=10)
        for line in res.stdout.splitlines():
            parts = line.split()
            dev, cidr = parts[1], parts[3]
            if cidr.split("/")[0] not in (node.address, "127.0.0.1"):
                subprocess.run(["ip", "-n", node.netns, "addr", "del", cidr, "dev", dev],
                               capture_output=True, check=False, timeout=10)

    def restart(self, name: str, timeout: float = 90) -> float:
        """Boot a crashed node (or restart its stack); its power switch goes back on;
        the arbitrator gets garbd again."""
        self._check_node(name)
        if self.info.power_dir:
            power_on(Path(self.info.power_dir), name)
        try:
            seconds = self.cluster.restart(name, timeout=timeout)
        except LabError as exc:
            raise RuntimeFailure(str(exc)) from None
        if name == self.info.arbitrator:
            self.start_garbd()
            if self.info.whole_profile:
                start_rabbitmq(self)
            if self.info.compute == name:
                start_compute(self)
        return seconds

    def start_garbd(self, *, require_primary: bool = False, timeout: float = 20) -> None:
        """Start garbd on the arbitrator and wait until it is in a Primary component
        (or ``timeout``: after a crash there may be no Primary to join; with
        ``require_primary`` that is an error). garbd 26.4 now and then exits at once,
        failing to read its own gcomm thread's scheduling parameters (a race inside
        garbd): it is started again, up to services.GARBD_ATTEMPTS times."""
        arb = self.cluster.arbitrator
        log = arb.root.var_log / "garbd.log"

        def start() -> int | None:
            try:
                pid = arb.start_daemon(services.garbd_argv(self._hosts()), "garbd.out")
            except LabError:
                return None
            self.info.garbd_pid = pid  # on record before the wait: `lab down` ends it
            self.save()
            return pid

        def primary(offset: int) -> bool:
            return services.GARBD_PRIMARY in services.text_after(log, offset)

        try:
            _pid, offset = services.start_garbd(start, proc.is_alive, primary, log, timeout)
        except services.GarbdExited as exc:
            raise RuntimeFailure(f"garbd on {arb.name} exited at once: {exc}") from None
        if require_primary and not primary(offset):
            raise RuntimeFailure(f"garbd on {arb.name} joined no Primary component within "
                                 f"{timeout:.0f}s (see {log})")

    def _hosts(self) -> services.LabHosts:
        arb = self.cluster.arbitrator
        return services.LabHosts(tuple((n.name, n.address) for n in self.cluster.nodes),
                                 (arb.name, arb.address), self.info.vip, self.info.vip_name,
                                 self.cluster.cluster_name)

    def down(self) -> dict:
        """Remove every process, mount, namespace and directory of the lab."""
        t0 = time.monotonic()
        run_id = self.cluster.run_id
        try:
            self.cluster.destroy()
        except LabError as exc:
            raise RuntimeFailure(str(exc)) from None
        _remove_agents(self.info.installed_agents, self.cluster.registry)
        return {"run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}

    # ---- database access (root on the node's socket; nothing in argv) ---------
    def sql(self, statements: str, node: str | None = None, timeout: float = 120) -> str:
        target = self.cluster.node(node) if node else self.observer()
        res = target.run(["mysql", "--batch", "--skip-column-names", "-uroot",
                          "--socket=/run/mysqld/mysqld.sock"], input=statements,
                         check=False, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeFailure(f"mysql on {target.name}: "
                                 f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
        return res.stdout

    def db_password(self) -> str:
        return Path(self.info.db_password_file).read_text(encoding="utf-8").strip()


def power_on(power_dir: Path, node: str) -> None:
    # fence_dummy compares the file's whole content: "on", no newline
    (power_dir / node).write_text("on", encoding="utf-8")


def powered_off(power_dir: Path, node: str) -> bool:
    try:
        return (power_dir / node).read_text(encoding="utf-8").strip() == "off"
    except FileNotFoundError:
        return False


# ---- lab up ---------------------------------------------------------------------

def _check_inputs(opts: UpOptions):
    from pacestack.cluster import description as desc_mod

    if os.geteuid() != 0:
        raise PacestackError("lab up needs root (namespaces, mounts, Pacemaker): "
                             "run it as root")
    if opts.dump is not None and not Path(opts.dump).is_file():
        raise ConfigError(f"--from-dump {opts.dump}: no such file")
    path = opts.description or sample_description()
    if path is None:
        raise ConfigError("no cluster description given and the sample "
                          "examples/seed-cluster.conf is not installed")
    if not Path(path).is_file():
        raise ConfigError(f"--description {path}: no such file")
    desc = desc_mod.load([str(path)], check_agents=False)
    if len(desc.nodes) != 2:
        raise ConfigError(f"{path}: [cluster] nodes: the lab builds two controllers, "
                          f"the description names {len(desc.nodes)}")
    venv = schemas = None
    if opts.services:
        cached = cached_openstack()
        venv = Path(opts.venv) if opts.venv else (cached[0] if cached else None)
        schemas = Path(opts.schemas) if opts.schemas else (cached[1] if cached else None)
        if venv is None or not (venv / "bin" / "gunicorn").exists() or \
                not (venv / "bin" / "keystone-manage").exists():
            raise ConfigError(f"no OpenStack venv with keystone and gunicorn "
                              f"({venv or 'none cached'}): build it with "
                              "scripts/build-openstack-cache.py or pass --openstack-venv")
        wsgi_apps.release_of_venv(venv)  # a release whose APIs the lab cannot serve: refused
        if opts.whole_profile and opts.dump is not None:
            raise ConfigError("--whole-profile builds on the sample schemas, not --from-dump")
        if opts.whole_profile:
            _check_glance(opts)
        if opts.dump is None and (schemas is None or not (schemas / "keystone.sql").is_file()):
            raise ConfigError("no sample schemas cached: run scripts/build-openstack-cache.py "
                              "or pass --from-dump")
    return path, desc, venv, schemas


def _check_glance(opts: UpOptions) -> None:
    """The whole profile runs Glance from its venv and every service's memcache
    client from extras/ beside it: without them the services fail to start."""
    from . import controller

    glance = Path(opts.glance_venv) if opts.glance_venv else controller.cached_glance()
    if glance is not None and controller.glance_ready(glance) and \
            controller.memcache_client(glance):
        return
    base = Path(os.environ.get("PACESTACK_CACHE", "/var/cache/pacestack"))
    where = glance or base / "glance-*/venv"
    missing = ("the memcache client (python-memcached in extras/ beside it)"
               if glance is not None and controller.glance_ready(glance)
               else "the Glance venv (glance-manage, gunicorn) and the memcache client")
    raise ConfigError(f"--whole-profile needs {missing}, not found at {where}: build "
                      "them with `make openstack-cache` (scripts/build-openstack-cache.py)")


def _ensure_agents() -> list[str]:
    """Install the agents Pacemaker will run where they are missing; returns the
    paths written (lab down removes them again)."""
    from pacestack.agents import install

    provider = Path(install.DEFAULT_PROVIDER_DIR)
    missing = [n for n in install.available_agents() if not (provider / n).exists()]
    if missing:
        return list(install.install_agents(str(provider), python=sys.executable,
                                           names=missing))
    return []


OCF_USERS = Path("/run/pacestack-ocf-users")  # test sessions using the installed agents


def _remove_agents(paths: list[str], registry: Path) -> None:
    users = [p for p in OCF_USERS.glob("[0-9]*") if Path(f"/proc/{p.name}").exists()] \
        if OCF_USERS.is_dir() else []
    if users or find_labs(registry) or find_labs(state.REGISTRY):
        return  # someone else still runs them
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def up(opts: UpOptions, progress: Progress = lambda _m: None) -> Lab:
    """Build the lab; refuses (changing nothing) without root, with bad input, or
    when a lab already runs in this registry."""
    src, desc, venv, schemas = _check_inputs(opts)
    registry = _registry(opts.registry)
    # a lock of its own: the harness takes the registry's lock inside it
    with state.registry_lock(registry, ".lab-stack.lock"):
        existing = find_labs(registry)
        if existing:
            raise PacestackError(f"a lab is already running here (run "
                                 f"{existing[0][0]['run_id']}): nothing changed; "
                                 "`pacestack lab down` removes it")
        return _build(opts, src, desc, venv, schemas, registry, progress)


def _build(opts, src, desc, venv, schemas, registry, progress) -> Lab:
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def mark(name: str) -> None:
        timings[name] = round(time.monotonic() - t0, 1)

    installed = _ensure_agents()
    arb_name = desc.arbitrator.host if desc.arbitrator and desc.arbitrator.host else "arbitrator"
    progress(f"forming the cluster: {', '.join(desc.node_names)} + {arb_name} in namespaces")
    BASE_DIR.mkdir(parents=True, exist_ok=True)
    cluster = LabCluster(nodes=desc.node_names, arbitrator=arb_name, registry=registry,
                         base_dir=BASE_DIR)
    cluster.start(timeout=90)
    cluster.detach()
    mark("cluster formed")
    password = secrets.token_urlsafe(18)
    pw_file = cluster.dir / "db-password"
    services.write_secret(pw_file, password)
    power_dir = cluster.dir / "power" if opts.fencing else None
    config_dir = cluster.dir / "openstack" / "etc" if venv else None
    info = LabInfo(run_id=cluster.run_id, nodes=desc.node_names, arbitrator=arb_name,
                   vip=cluster.spare_address(), vip_name=desc.vip.name,
                   description=str(cluster.dir / "cluster.conf"), source_description=str(src),
                   venv=str(venv) if venv else None,
                   config_dir=str(config_dir) if config_dir else None,
                   power_dir=str(power_dir) if power_dir else None,
                   db_password_file=str(pw_file),
                   services=list(services.APIS) if venv else [],
                   single_instance=["cinder-volume"] if (venv and opts.cinder_volume) else [],
                   dump=str(opts.dump) if opts.dump else None, installed_agents=installed,
                   timings=timings, whole_profile=bool(opts.whole_profile and venv),
                   service_debug=bool(opts.service_debug and venv))
    lab = Lab(cluster, info)
    lab.save()
    try:
        _configure(lab, opts, venv, schemas, password, power_dir, config_dir, progress, mark)
    except BaseException as exc:
        progress(f"lab up failed ({exc}); removing what it built")
        with contextlib.suppress(Exception):
            lab.down()
        if isinstance(exc, LabError):
            raise RuntimeFailure(str(exc)) from None
        raise
    if venv is not None:
        info.migrate_config = str(access.write_migrate_config(
            cluster.dir, info.vip_name, password, config_dir, venv))
    mark("ready")
    progress(f"the whole stack took {timings['ready']:.1f} s")
    lab.save()
    return lab


def _apply(lab: Lab, path: Path, timeout: float = 180) -> None:
    node = lab.cluster.nodes[0]
    res = node.run([PACESTACK, "cluster", "apply", "-d", str(path)], check=False,
                   timeout=timeout)
    if res.returncode != 0:
        raise RuntimeFailure(f"pacestack cluster apply -d {path} on {node.name}: "
                             f"{(res.stderr or res.stdout).strip()}")


def wait_resources(lab: Lab, want: Callable[[dict], bool], what: str,
                   timeout: float) -> dict:
    last: dict = {}

    def ok() -> bool:
        nonlocal last
        last = lab.placement()
        return want(last)

    if not proc.wait_for(ok, timeout, interval=0.5):
        fails = crm.failures(lab.observer())
        raise RuntimeFailure(f"{what} not reached after {timeout:.0f}s: placement {last}; "
                             f"failures {fails[:4]}")
    return last


def galera_promoted_everywhere(lab: Lab) -> Callable[[dict], bool]:
    names = set(lab.cluster.node_names)
    return lambda placed: {n for n, r in placed.get("galera", []) if r == "Promoted"} == names


def _configure(lab: Lab, opts, venv, schemas, password, power_dir, config_dir,
               progress, mark) -> None:
    cluster, info = lab.cluster, lab.info
    hosts = lab._hosts()
    for node in cluster.nodes + [cluster.arbitrator]:
        with open(node.root.etc_hosts, "a", encoding="utf-8") as fh:  # same inode: bind mount
            fh.write(f"{info.vip}\t{info.vip_name}\n")
    for node in cluster.nodes:
        conf = node.root.etc_mysql / Path(services.GALERA_CONF).name
        conf.write_text(services.galera_conf(hosts, node.name, node.address), encoding="utf-8")
        os.chmod(conf, 0o644)
        # what reads the default files instead (resource-agents' galera runs
        # mysql_install_db with --datadir only) gets a node-private tmpdir too
        tmp = node.root.etc_mysql / "conf.d" / "pacestack-lab-tmpdir.cnf"
        tmp.parent.mkdir(mode=0o755, exist_ok=True)
        tmp.write_text(services.PRIVATE_TMPDIR_CNF, encoding="utf-8")
        os.chmod(tmp, 0o644)
    if power_dir is not None:
        power_dir.mkdir(mode=0o700)
        for name in cluster.node_names:
            power_on(power_dir, name)
    base = cluster.dir / "cluster-galera.conf"
    base.write_text(services.lab_description(hosts, power_dir=power_dir, venv=None,
                                             config_dir=None, services=False,
                                             galera_agent=opts.galera_agent),
                    encoding="utf-8")
    progress(f"pacestack cluster apply: Galera, VIP {info.vip} ({info.vip_name})"
             + (", fencing (fence_dummy)" if power_dir else ""))
    _apply(lab, base)
    mark("galera applied")
    wait_resources(lab, galera_promoted_everywhere(lab), "Galera Promoted on every node",
                   opts.timeout)
    mark("galera promoted")
    progress("Galera is Primary on both controllers; garbd joins from the arbitrator")
    lab.start_garbd(require_primary=True)
    lab.sql(f"CREATE USER IF NOT EXISTS '{services.DB_USER}'@'%' IDENTIFIED BY "
            f"'{password}';\nGRANT ALL ON *.* TO '{services.DB_USER}'@'%' WITH GRANT OPTION;\n")
    if opts.dump is not None:
        progress(f"loading {opts.dump} into Galera")
        _load_dump(lab, Path(opts.dump))
    elif schemas is not None:
        progress("loading the sample OpenStack databases (the projects' own schemas)")
        # the whole profile's services reach their databases through the VIP
        _load_sample(lab, schemas, password,
                     info.vip_name if info.whole_profile else "127.0.0.1")
    mark("databases loaded")
    if venv is None:
        cluster_conf = Path(info.description)
        cluster_conf.write_text(base.read_text(encoding="utf-8"), encoding="utf-8")
        return
    if info.whole_profile:
        _configure_profile(lab, opts, venv, schemas, password, power_dir, config_dir,
                           progress, mark)
        return
    services.write_openstack_configs(config_dir, cluster.dir / "openstack" / "state", venv,
                                     password, schemas / "keystone-keys" if schemas else None,
                                     debug=info.service_debug)
    full = Path(info.description)
    full.write_text(services.lab_description(
        hosts, power_dir=power_dir, venv=venv, config_dir=config_dir, services=True,
        cinder_volume=opts.cinder_volume, galera_agent=opts.galera_agent), encoding="utf-8")
    progress("pacestack cluster apply: " + ", ".join(info.services + info.single_instance)
             + " behind the VIP")
    _apply(lab, full)
    wait_resources(lab, lambda p: all_running(lab, p), "every service running",
                   opts.timeout)
    mark("services running")


def _configure_profile(lab: Lab, opts, venv, schemas, password, power_dir, config_dir,
                       progress, mark) -> None:
    from . import controller

    cluster, info, hosts = lab.cluster, lab.info, lab._hosts()
    glance = Path(opts.glance_venv) if opts.glance_venv else controller.cached_glance()
    admin_file = cluster.dir / "admin-password"
    secrets_ = controller.Secrets(password, secrets.token_urlsafe(18),
                                  secrets.token_urlsafe(18))
    services.write_secret(admin_file, secrets_.admin)
    info.admin_password_file = str(admin_file)
    clones, singles = controller.resource_names(glance is not None)
    info.services, info.single_instance = clones, singles
    lab.save()
    state_dir = cluster.dir / "openstack" / "state"
    controller.write_configs(config_dir, state_dir, venv, glance, hosts, secrets_,
                             schemas / "keystone-keys" if schemas else None,
                             debug=info.service_debug)
    for host in cluster.nodes + [cluster.arbitrator]:
        controller.write_cookie(host.root.var_lib_rabbitmq, secrets_.cookie)
    # the member every controller's broker joins when Pacemaker first starts it; it
    # boots while Keystone and Glance are prepared
    progress(f"RabbitMQ: the cluster's first member on {info.arbitrator}")
    start_rabbitmq(lab)
    node = cluster.nodes[0]
    progress("Keystone: admin password, catalog; nova's cells on the lab's RabbitMQ")
    keystone_url = f"http://{info.vip_name}:5000/v3/"
    extras = controller.memcache_client(glance)
    node.run([str(venv / "bin" / "keystone-manage"), "--config-file",
              str(config_dir / "keystone.conf"), "bootstrap", "--bootstrap-username",
              controller.ADMIN, "--bootstrap-project-name", controller.ADMIN,
              "--bootstrap-admin-url", keystone_url, "--bootstrap-internal-url",
              keystone_url, "--bootstrap-public-url", keystone_url,
              "--bootstrap-region-id", controller.REGION],
             env={"OS_BOOTSTRAP_PASSWORD": secrets_.admin,
                  **({"PYTHONPATH": str(extras)} if extras else {})}, timeout=180)
    lab.sql(controller.catalog_sql(hosts))
    # our own random password (URL-safe alphabet)
    lab.sql("UPDATE nova_api.cell_mappings SET transport_url = "  # noqa: S608
            f"'{controller.transport_url(hosts, secrets_)}' WHERE name <> 'cell0';")
    if glance is not None:
        _load_glance(lab, glance, config_dir, progress)
    await_rabbitmq(cluster.arbitrator, opts.timeout)
    mark("openstack prepared")
    full = Path(info.description)
    full.write_text(controller.description(hosts, power_dir=power_dir, venv=venv,
                                           glance_venv=glance, config_dir=config_dir,
                                           galera_agent=opts.galera_agent), encoding="utf-8")
    progress(f"pacestack cluster apply: the controller profile ({len(clones)} clones, "
             f"{', '.join(singles)} single) behind the VIP")
    _apply(lab, full, timeout=300)
    mark("profile applied")
    t_apply = time.monotonic()
    seen: set[str] = set()

    def report(placed: dict) -> bool:
        for name in clones + singles:
            if name not in seen and _resource_running(lab, placed, name):
                seen.add(name)
                progress(f"  {name} running ({time.monotonic() - t_apply:.1f} s)")
        return all_running(lab, placed)

    wait_resources(lab, report, "every service running", opts.timeout)
    mark("services running")
    members = grow_quorum_queues(lab)
    progress(f"RabbitMQ cluster: {', '.join(members)}; every quorum queue on each")
    progress(f"Open vSwitch, its agent and nova-compute (fake driver) on {info.arbitrator}")
    start_compute(lab)
    wait_compute(lab, opts.timeout)
    info.compute = info.arbitrator
    mark("compute registered")
    wait_agents(lab, opts.timeout)
    progress("Neutron agents reporting: Open vSwitch, DHCP, L3, metadata on "
             f"{', '.join(cluster.node_names)}; Open vSwitch on {info.arbitrator}")
    mark("agents alive")


def _load_glance(lab: Lab, glance: Path, config_dir: Path, progress) -> None:
    """Glance's schema: glance-manage db_sync once (~30 s loaded), then its dump,
    kept beside the Glance venv, like the other projects' sample schemas."""
    cached = glance.parent / "glance.sql"
    lab.sql("CREATE DATABASE IF NOT EXISTS glance;")
    if cached.is_file():
        progress("Glance: loading its schema")
        lab.sql("USE glance;\n" + cached.read_text(encoding="utf-8"), timeout=300)
        return
    progress("Glance: glance-manage db_sync")
    node = lab.cluster.nodes[0]
    node.run([str(glance / "bin" / "glance-manage"), "--config-file",
              str(config_dir / "glance" / "glance-api.conf"), "db_sync"], timeout=300)
    dump = node.run(["mysqldump", "-uroot", "--socket=/run/mysqld/mysqld.sock",
                     "--single-transaction", "glance"], timeout=120)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(dump.stdout, encoding="utf-8")
    os.replace(tmp, cached)


def start_compute(lab: Lab) -> int:
    """Open vSwitch, its Neutron agent and nova-compute on the compute host, as
    its init would start them (no Pacemaker there); nova-compute's host PID."""
    from . import neutron_agents

    arb = lab.cluster.arbitrator
    config_dir, venv = Path(lab.info.config_dir or ""), Path(lab.info.venv or "")
    arb.start_daemon([str(config_dir / neutron_agents.OVS_SCRIPT)], "openvswitch.out")
    arb.start_daemon(neutron_agents.agent_argv("neutron-openvswitch-agent", venv, config_dir),
                     "neutron-openvswitch-agent.out", env=neutron_agents.compute_env(venv))
    return arb.start_daemon(nova_compute_argv(venv, config_dir), "nova-compute.out")


def nova_compute_argv(venv: Path, config_dir: Path) -> list[str]:
    """The compute host's nova-compute command line."""
    return [str(venv / "bin" / "nova-compute"),
            "--config-file", str(config_dir / "nova-compute.conf"),
            "--config-file", str(config_dir / services.RPC_SERVER_CONF)]


def start_rabbitmq(lab: Lab) -> int:
    """The arbitrator's RabbitMQ member, outside Pacemaker as garbd is; its host PID."""
    from . import controller

    config_dir = Path(lab.info.config_dir or "")
    lab.info.rabbitmq_pid = lab.cluster.arbitrator.start_daemon(
        ["/usr/lib/rabbitmq/bin/rabbitmq-server"], "rabbitmq.out",
        env=controller.rabbitmq_env(config_dir))
    lab.save()
    return lab.info.rabbitmq_pid


def rabbitmqctl(node, *args: str, timeout: float = 60):
    """rabbitmqctl (or rabbitmq-queues, ...: args[0]) on a member, with its cookie."""
    from . import controller

    return node.run([f"/usr/lib/rabbitmq/bin/{args[0]}", *args[1:]],
                    env=controller.ctl_env(), check=False, timeout=timeout)


def await_rabbitmq(node, timeout: float) -> None:
    """Until the member on ``node`` has booted (joined its cluster)."""
    # await_startup gives up at once on a node epmd does not know yet; epmd's own
    # client is cheap to ask, an Erlang CLI costs a VM each time
    t0 = time.monotonic()
    proc.wait_for(lambda: "name rabbit " in node.run(["epmd", "-names"], check=False).stdout,
                  timeout, interval=1)
    left = max(5, int(timeout - (time.monotonic() - t0)))
    res = rabbitmqctl(node, "rabbitmqctl", "await_startup", "--timeout", str(left),
                      timeout=left + 30)
    if res.returncode != 0:
        raise RuntimeFailure(f"RabbitMQ on {node.name} did not start within {timeout:.0f}s "
                             f"(see {node.root.var_log}): {(res.stderr or res.stdout)[-300:]}")


def rabbit_member(host: str) -> str:
    """The RabbitMQ node name of the member on lab host ``host``."""
    from . import controller

    return controller.RABBIT_NODES.format(host)


def rabbitmq_members(lab: Lab, node=None) -> list[str]:
    """The RabbitMQ cluster's running members, as ``node`` (default: the arbitrator's
    member) sees them."""
    res = rabbitmqctl(node or lab.cluster.arbitrator, "rabbitmqctl", "cluster_status",
                      "--formatter", "json")
    if res.returncode != 0:
        raise RuntimeFailure(f"rabbitmqctl cluster_status: {(res.stderr or res.stdout)[-300:]}")
    return sorted(json.loads(res.stdout)["running_nodes"])


def grow_quorum_queues(lab: Lab) -> list[str]:
    """Every quorum queue onto every member: a queue declared while a controller's
    broker was still joining has its replicas on the members then running only (the
    arbitrator's, up first, has them all). Returns the running members."""
    members = rabbitmq_members(lab)
    for member in members:
        if member == rabbit_member(lab.info.arbitrator):
            continue
        res = rabbitmqctl(lab.cluster.arbitrator, "rabbitmq-queues", "grow", member, "all")
        if res.returncode != 0:
            raise RuntimeFailure(f"rabbitmq-queues grow {member} all: "
                                 f"{(res.stderr or res.stdout)[-300:]}")
    return members


def neutron_agents_alive(lab: Lab, within: int = 15) -> dict[tuple[str, str], bool]:
    """(agent type, host) -> reported within ``within`` seconds, from Neutron's
    database: every agent the lab runs, the missing ones False."""
    from . import neutron_agents

    want = {(kind, node) for node in lab.cluster.node_names
            for kind in neutron_agents.AGENT_TYPES}
    want.add(("Open vSwitch agent", lab.cluster.arbitrator.name))
    seen: dict[tuple[str, str], bool] = dict.fromkeys(want, False)
    try:
        rows = lab.sql("SELECT agent_type, host, TIMESTAMPDIFF(SECOND, heartbeat_timestamp, "
                       "UTC_TIMESTAMP()) FROM neutron.agents;")
    except PacestackError:
        return seen
    for line in rows.splitlines():
        kind, host, age = line.split("\t")
        if (kind, host) in seen:
            seen[(kind, host)] = int(age) <= within
    return seen


def wait_agents(lab: Lab, timeout: float) -> None:
    last: dict = {}

    def alive() -> bool:
        nonlocal last
        last = neutron_agents_alive(lab)
        return all(last.values())

    if not proc.wait_for(alive, timeout, interval=1):
        missing = sorted(f"{kind} on {host}" for (kind, host), ok in last.items() if not ok)
        raise RuntimeFailure(f"Neutron agents not reporting after {timeout:.0f}s: "
                             f"{', '.join(missing)}")


def wait_compute(lab: Lab, timeout: float) -> None:
    """Until the compute is mapped into cell1 (the scheduler's discovery) and its
    resource provider is in Placement."""
    host = lab.cluster.arbitrator.name

    def mapped() -> bool:
        try:
            # a lab host name (checked when the lab was made)
            out = lab.sql("SELECT COUNT(*) FROM nova_api.host_mappings h JOIN "  # noqa: S608
                          "placement.resource_providers r ON r.name = h.host "
                          f"WHERE h.host = '{host}';")
        except PacestackError:
            return False
        return out.strip() not in ("", "0")

    if not proc.wait_for(mapped, timeout, interval=1):
        raise RuntimeFailure(f"nova-compute on {host} was not registered within "
                             f"{timeout:.0f}s (see {lab.cluster.arbitrator.root.boot_dir}"
                             "/nova-compute.out)")


def _resource_running(lab: Lab, placed: dict, name: str) -> bool:
    roles = [r for _, r in placed.get(name, [])]
    if name in lab.info.single_instance:
        return roles == ["Started"]
    return {n for n, r in placed.get(name, []) if r == "Started"} == set(lab.cluster.node_names)


def all_running(lab: Lab, placed: dict) -> bool:
    names = set(lab.cluster.node_names)
    if not galera_promoted_everywhere(lab)(placed):
        return False
    for s in lab.info.services:
        if {n for n, r in placed.get(s, []) if r == "Started"} != names:
            return False
    return all([r for _, r in placed.get(s, [])] == ["Started"]
               for s in lab.info.single_instance + ["vip"])


def _load_sample(lab: Lab, schemas: Path, password: str, db_host: str) -> None:
    for db in services.DATABASES:
        sql = (schemas / f"{db}.sql").read_text(encoding="utf-8")
        lab.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`;\nUSE `{db}`;\n{sql}", timeout=300)
    # nova_api names the cell databases: this lab's
    rows = lab.sql("SELECT id, database_connection FROM nova_api.cell_mappings;")
    for line in rows.splitlines():
        row_id, _, url = line.partition("\t")
        if not url or url == "NULL":
            continue
        database = url.rsplit("/", 1)[1].split("?")[0]
        # our own random password (URL-safe alphabet) and database names from our dump
        lab.sql("UPDATE nova_api.cell_mappings SET database_connection = "  # noqa: S608
                f"'{services.db_url(password, database, db_host)}' WHERE id = {int(row_id)};")


def _load_dump(lab: Lab, dump: Path) -> None:
    node = lab.observer()
    with open(dump, "rb") as fh:
        p = node.popen(["mysql", "-uroot", "--socket=/run/mysqld/mysqld.sock"], stdin=fh,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _out, err = p.communicate(timeout=1800)
    if p.returncode != 0:
        raise RuntimeFailure(f"loading {dump}: {err.decode(errors='replace').strip()[-300:]}")
