"""What runs on the lab's controllers: the Galera config, the OpenStack API configs,
the lab's cluster description (written for ``pacestack cluster apply``).

Plain text builders, no processes: stack.py decides when each is written.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pacestack import proc, wsgi_apps

GALERA_CONF = "/etc/mysql/pacestack-lab.cnf"  # inside each node (its private /etc/mysql)
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
# Fast but safe group membership, the same on every member (garbd too). A dead peer
# is suspected after 1.5 s of silence instead of 5 s: the survivor's writes stall
# ~2.8 s instead of 6 (bench/galera_side_by_side.py). Safe because: keepalives (every
# 0.1 s, below) give many chances inside the suspect window, so a busy but live node is not
# suspected; suspicion only evicts when every other member agrees, and one member's
# view alone declares a node inactive only after 3 s (twice the window); installing a
# new view may take 3 s. gmcast.time_wait stays at Galera's 5 s: at 2 s a killed
# mariadbd rejoined ~1 s sooner, but in 1 of 3 rejoins the survivor lost garbd and
# went non-Primary for a moment, which is the outage these options exist to avoid.
# A membership change (a node joins or leaves) agrees by rounds of join messages;
# Galera sends at most one per 100 ms and otherwise waits for the join resend
# period, 1 s by default: a rejoin took 1-3 s of such rounds. At 0.2 s it takes a
# fraction of that. It only paces messages while members agree on a view, never
# how soon a node is suspected or evicted. Keepalives every 0.1 s: with nothing else
# to send, a member acknowledges what it received on its next keepalive, and the
# primary component's state exchange after a new membership waited for that (0.5 s
# from the regular view to the primary one at 0.5 s, 0.1 s at 0.1 s: a returning
# node Primary and Synced 4.6 s after its boot instead of 6.2). More keepalives only
# make a live node less likely to be suspected; ten small messages a second each.
EVS = ("evs.suspect_timeout=PT1.5S;evs.inactive_timeout=PT3S;evs.install_timeout=PT3S;"
       "evs.keepalive_period=PT0.1S;evs.join_retrans_period=PT0.2S")
# A joiner gives up (and mariadbd aborts) when it sees no Primary view within
# pc.wait_prim_timeout. A node restarted right after a crash joins while the peers
# still hold its old identity: the first install round fails on it (install_timeout),
# it is declared inactive and a second round admits the joiner, ~6-7 s in all. The
# wait must outlast inactive_timeout + install_timeout with a margin.
PROVIDER_OPTIONS = (f"gcache.size=16M;gcache.page_size=16M;{EVS};gmcast.peer_timeout=PT2S;"
                    "pc.wait_prim_timeout=PT10S")
# service -> (its API in pacestack.wsgi_apps, config dir variable, config files variable,
# files, port, health)
APIS = {
    "keystone": ("keystone", "OS_KEYSTONE_CONFIG_DIR", "OS_KEYSTONE_CONFIG_FILES",
                 "keystone.conf", 5000, "/v3"),
    "neutron-server": ("neutron", "OS_NEUTRON_CONFIG_DIR", "OS_NEUTRON_CONFIG_FILES",
                       "neutron.conf;ml2_conf.ini", 9696, "/"),
}
DATABASES = ("keystone", "neutron", "cinder", "nova", "nova_api", "nova_cell0", "placement")
DB_USER = "pacestack_lab"


@dataclass(frozen=True)
class LabHosts:
    """Names and lab addresses the text builders need."""

    nodes: tuple[tuple[str, str], ...]   # (name, address)
    arbitrator: tuple[str, str]
    vip: str
    vip_name: str
    cluster_name: str

    @property
    def gcomm(self) -> str:
        return "gcomm://" + ",".join([a for _, a in self.nodes] + [self.arbitrator[1]])

    @property
    def host_map(self) -> str:
        return ";".join(f"{n}:{a}" for n, a in self.nodes)


# the new cloud's ML2: openvswitch on the lab's provider network and VXLAN tenant
# networks, the same for the small lab and the whole profile
ML2_CONF = {
    "ml2": {"type_drivers": "flat,vlan,vxlan", "tenant_network_types": "vxlan",
            "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"},
    "ml2_type_flat": {"flat_networks": "provider"},
    "ml2_type_vlan": {"network_vlan_ranges": "provider"},
    "ml2_type_vxlan": {"vni_ranges": "1:1000"},
}


# /etc/mysql/conf.d in each node: mariadbd started from the default files (as
# mysql_install_db starts it) keeps its temporary files in the node's own /dev/shm,
# not in the machine's /tmp, for the reason galera_conf() gives
PRIVATE_TMPDIR_CNF = """\
# written by pacestack lab: a node-private tmpdir for mariadbd run without --defaults-file
[mysqld]
tmpdir = /dev/shm
"""


def galera_conf(hosts: LabHosts, node: str, address: str) -> str:
    """The node's standalone my.cnf for ocf:pacestack:galera (passed as --defaults-file)."""
    return f"""\
# written by pacestack lab: Galera member {node}
[mysqld]
user = mysql
datadir = /var/lib/mysql
socket = /run/mysqld/mysqld.sock
pid-file = /run/mysqld/mysqld.pid
log-error = /var/log/mysql/error.log
# the node's own: /tmp is the machine's, shared by every node, and mariadbd names its
# temporary files after its PID, which is the same small number in each node's PID
# namespace (one member deleted the other's temporary table mid-query)
tmpdir = /run/mysqld
bind-address = 0.0.0.0
port = 3306
skip-name-resolve
max_connections = 200
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = {PROVIDER}
wsrep_cluster_name = {hosts.cluster_name}
wsrep_cluster_address = {hosts.gcomm}
wsrep_node_name = {node}
wsrep_node_address = {address}
# ocf:pacestack:galera starts mariadbd with its wsrep_sst_method parameter (its
# default, pacestack_rsync, when every Primary peer advertises it); rsync is for a
# mariadbd started otherwise and for resource-agents' galera, the benchmarks' anchor
wsrep_sst_method = rsync
wsrep_provider_options = "{PROVIDER_OPTIONS}"
wsrep_slave_threads = 2

[client]
socket = /run/mysqld/mysqld.sock
"""


# The RPC servers' own file, read after their project's: oslo.messaging's queue
# manager, for the controllers' RPC daemons, the Neutron agents and nova-compute.
# Without it, a stopping server's close() deletes its fanout queue and, while it
# waits for the broker's answer, reads the deliveries its topic consumer (still
# registered, its listener already stopped) was handed meanwhile; the RPC listener
# acknowledges each on receipt and drops it (a server's build lost in a standby: the
# README's RabbitMQ part). With it, close() deletes no queue, the closing channel
# ignores those deliveries and the broker hands them to another server. Not for the
# APIs: under gunicorn every worker would share one reply queue (controller.RABBIT).
RPC_SERVER_CONF = "rpc-server.conf"

# garbd.log: the line of a view that makes garbd a member of a Primary component
GARBD_PRIMARY = "view(view_id(PRIM,"
# garbd.log: garbd 26.4 now and then exits at once, failing to read its own gcomm
# thread's scheduling parameters (ESRCH): a race inside garbd, gone on a new start
GARBD_RACE = "thread_get_schedparam"
# starts of garbd before its exit is an error (GARBD_RACE)
GARBD_ATTEMPTS = 3


class GarbdExited(RuntimeError):
    """garbd exited without joining: the last line of its log (one line)."""


def text_after(path: Path, offset: int) -> str:
    """What a log file gained past ``offset`` ("" while it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def start_garbd(start: Callable[[], int | None], alive: Callable[[int], bool],
                joined: Callable[[int], bool], log: Path, timeout: float) -> tuple[int, int]:
    """Start garbd (``start``: its PID, None when it did not start) and wait until
    ``joined(offset)``, its exit or ``timeout``. Returns the running garbd's PID,
    joined or not, and its log's size before its start (``offset``: what it logged is
    past it). An exit on GARBD_RACE is followed by a new start, up to GARBD_ATTEMPTS;
    any other exit raises GarbdExited."""
    for attempt in range(1, GARBD_ATTEMPTS + 1):
        offset = log.stat().st_size if log.exists() else 0
        pid = start()
        if pid is not None:
            proc.wait_for(lambda p=pid, o=offset: not alive(p) or joined(o), timeout,
                          interval=0.1)
            if alive(pid):
                return pid, offset
        said = text_after(log, offset)
        if GARBD_RACE not in said or attempt == GARBD_ATTEMPTS:
            last = said.strip().splitlines()[-1:] or ["nothing in its log"]
            raise GarbdExited(last[0][:300])
    raise AssertionError("unreachable: the last attempt returns or raises")


def garbd_argv(hosts: LabHosts) -> list[str]:
    peers = ",".join(a for _, a in hosts.nodes)
    return ["/usr/bin/garbd", "--address", f"gcomm://{peers}", "--group", hosts.cluster_name,
            "--options", f"gmcast.listen_addr=tcp://{hosts.arbitrator[1]}:4567;{EVS}",
            "--log", "/var/log/garbd.log"]


# oslo.log's own default_log_levels and the ones Neutron and Nova add to them (a
# config file's list replaces both), but oslo.messaging at DEBUG: its lines name each
# RPC's msg_id and reply queue, which is what a lost call is traced by (oslo.log keeps
# it at INFO even with debug = true). The Open vSwitch agent's OpenFlow controller
# (os_ken) at DEBUG logs every message, and the agents stopped reporting.
DEBUG_LOG_LEVELS = ",".join((
    "amqp=WARN", "amqplib=WARN", "boto=WARN", "qpid=WARN", "sqlalchemy=WARN", "suds=INFO",
    "oslo.messaging=DEBUG", "oslo_messaging=DEBUG", "iso8601=WARN",
    "requests.packages.urllib3.connectionpool=WARN", "urllib3.connectionpool=WARN",
    "websocket=WARN", "requests.packages.urllib3.util.retry=WARN", "urllib3.util.retry=WARN",
    "keystonemiddleware=WARN", "routes.middleware=WARN", "stevedore=WARN", "taskflow=WARN",
    "keystoneauth=WARN", "oslo.cache=INFO", "oslo_policy=INFO", "dogpile.core.dogpile=INFO",
    "OFPHandler=INFO", "OfctlService=INFO", "os_ken.base.app_manager=INFO",
    "os_ken.controller.controller=INFO", "glanceclient=WARN", "oslo.privsep.daemon=INFO"))


def _ini(sections: dict[str, dict[str, str]], debug: bool = False) -> str:
    """INI text. ``debug``: oslo.log's ``[DEFAULT] debug = true`` (and oslo.messaging's
    lines, DEBUG_LOG_LEVELS) where the file has a [DEFAULT]: every lab OpenStack
    config is rendered here, and each service reads one file with a [DEFAULT] (its
    others, ML2's or a host's tunnel file, beside it; RabbitMQ's sysctl-style file has
    none)."""
    out = []
    for section, values in sections.items():
        if debug and section == "DEFAULT":
            values = {**values, "debug": "true", "default_log_levels": DEBUG_LOG_LEVELS}
        out.append(f"[{section}]")
        out += [f"{k} = {v}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def db_url(password: str, database: str, host: str = "127.0.0.1") -> str:
    return f"mysql+pymysql://{DB_USER}:{password}@{host}/{database}?charset=utf8"


def write_openstack_configs(config_dir: Path, state_dir: Path, venv: Path, password: str,
                            keys_dir: Path | None, *, debug: bool = False) -> dict[str, Path]:
    """Config files of the services in the lab (mode 0600: they hold the DB password).
    Every node's services reach their own node's Galera member on 127.0.0.1.
    ``debug``: the services log at debug level."""
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    for sub in ("neutron", "cinder", "nova", "lock"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    lock = str(state_dir / "lock")
    files = {
        "keystone.conf": {
            "DEFAULT": {"log_file": "", "use_stderr": "true"},
            "database": {"connection": db_url(password, "keystone")},
            "fernet_tokens": {"key_repository": str(config_dir / "fernet-keys")},
            "fernet_receipts": {"key_repository": str(config_dir / "fernet-keys")},
            "credential": {"key_repository": str(config_dir / "credential-keys")},
        },
        "neutron.conf": {
            "DEFAULT": {"core_plugin": "ml2", "auth_strategy": "noauth",
                        "transport_url": "fake://", "api_workers": "1", "rpc_workers": "0",
                        "rpc_state_report_workers": "0",
                        "state_path": str(state_dir / "neutron"), "use_stderr": "true",
                        "api_paste_config": str(venv / "etc/neutron/api-paste.ini")},
            "database": {"connection": db_url(password, "neutron")},
            "oslo_concurrency": {"lock_path": lock},
            "ovn": {"disable_ovn_dhcp_for_baremetal_ports": "true"},
        },
        "ml2_conf.ini": ML2_CONF,
        "cinder.conf": {
            "DEFAULT": {"transport_url": "fake://", "state_path": str(state_dir / "cinder"),
                        "use_stderr": "true", "enabled_backends": "lvm",
                        "host": "controller",
                        # a fast heartbeat: the agent's services-table check sees a
                        # dead cinder-volume within seconds
                        "report_interval": "2", "service_down_time": "6"},
            "database": {"connection": db_url(password, "cinder")},
            "oslo_concurrency": {"lock_path": lock},
            "lvm": {"volume_driver": "cinder.tests.fake_driver.FakeLoggingVolumeDriver",
                    "volume_backend_name": "lvm"},
        },
        "nova.conf": {
            "DEFAULT": {"transport_url": "fake://", "state_path": str(state_dir / "nova"),
                        "use_stderr": "true"},
            "database": {"connection": db_url(password, "nova")},
            "api_database": {"connection": db_url(password, "nova_api")},
            "placement_database": {"connection": db_url(password, "placement")},
            "oslo_concurrency": {"lock_path": lock},
        },
        "placement.conf": {
            "placement_database": {"connection": db_url(password, "placement")},
            "oslo_concurrency": {"lock_path": lock},
        },
    }
    paths = {}
    for name, sections in files.items():
        write_secret(config_dir / name, _ini(sections, debug))
        paths[name] = config_dir / name
    if keys_dir is not None:
        import shutil

        for sub in ("fernet-keys", "credential-keys"):
            if (keys_dir / sub).is_dir() and not (config_dir / sub).exists():
                shutil.copytree(keys_dir / sub, config_dir / sub)
    # each release keeps its WSGI applications elsewhere: the venv's own
    release = wsgi_apps.release_of_venv(venv)
    for service, (api, *_rest) in APIS.items():
        shim = config_dir / f"{_shim(service)}.py"
        shim.write_text(wsgi_apps.app(release, api).shim(), encoding="utf-8")
    return paths


def _shim(service: str) -> str:
    return f"pacestack_lab_{service.replace('-', '_')}_wsgi"


def api_params(service: str, venv: Path, config_dir: Path) -> dict[str, str]:
    """ocf:pacestack:openstack-service parameters of one API under gunicorn."""
    _module, dir_var, files_var, files, port, health = APIS[service]
    env = (f"PATH={venv}/bin:/usr/bin:/bin {dir_var}={config_dir} "
           f"{files_var}={shlex.quote(files)}")
    return {
        "binary": str(venv / "bin" / "gunicorn"),
        "extra_args": (f"--no-control-socket --bind 0.0.0.0:{port} --workers 1 --timeout 120 "
                       f"--graceful-timeout 3 --chdir {config_dir} {_shim(service)}:application"),
        "environment": env,
        "pid": f"/run/pacestack-{service}.pid",
        "log": f"/var/log/pacestack-{service}.log",
        "monitor_url": f"http://127.0.0.1:{port}{health}",
        "monitor_timeout": "5",
        "stop_timeout": "10",
    }


def service_ports() -> dict[str, tuple[int, str]]:
    return {s: (v[4], v[5]) for s, v in APIS.items()}


def _params(values: dict[str, str]) -> str:
    return "\n".join(f"    {k}={v}" for k, v in values.items())


ANCHOR_GALERA = "ocf:heartbeat:galera"


def galera_params(hosts: LabHosts, agent: str = "ocf:pacestack:galera") -> dict[str, str]:
    """The galera resource's parameters: ours, or resource-agents' ``ocf:heartbeat:galera``
    (the benchmarks' anchor) on the same my.cnf, datadir, socket and Galera options."""
    if agent != ANCHOR_GALERA:
        return {"config": GALERA_CONF, "wsrep_cluster_address": hosts.gcomm,
                "cluster_host_map": hosts.host_map, "sync_timeout": "120"}
    # it waits for a last-committed report from every address in the list, so garbd's
    # stays out (garbd reaches the data nodes itself); it creates the empty datadir
    # with mysql_install_db beside its binary, mysqld_safe, its default on Debian
    return {"config": GALERA_CONF, "binary": "/usr/bin/mysqld_safe",
            "datadir": "/var/lib/mysql", "socket": "/run/mysqld/mysqld.sock",
            "pid": "/run/mysqld/mysqld.pid", "log": "/var/log/mysql/error.log",
            "enable_creation": "true", "check_user": "root",
            "wsrep_cluster_address": "gcomm://" + ",".join(a for _, a in hosts.nodes),
            "cluster_host_map": hosts.host_map}


def lab_description(hosts: LabHosts, *, power_dir: Path | None, venv: Path | None,
                    config_dir: Path | None, services: bool,
                    cinder_volume: bool = False,
                    galera_agent: str = "ocf:pacestack:galera") -> str:
    """The lab's cluster description. ``services`` False: Galera, the VIP and fencing
    only (the databases are loaded before the services are added by a second apply).
    ``galera_agent``: ``ANCHOR_GALERA`` puts resource-agents' agent in ours' place."""
    # Galera keeps the agent's own monitors (Promoted every 1 s, Unpromoted 20 s):
    # monitor_interval makes one op without a role, and Pacemaker then never
    # monitors the Promoted instances (a killed mariadbd went unnoticed)
    names = ", ".join(n for n, _ in hosts.nodes)
    addrs = ", ".join(a for _, a in hosts.nodes)
    fronts = ["galera"] + (list(APIS) if services else [])
    out = [f"""\
# written by pacestack lab: the lab's controllers, applied with `pacestack cluster apply`
[cluster]
name = {hosts.cluster_name}
nodes = {names}
addresses = {addrs}
profile = none
shared_host = controller

[vip]
address = {hosts.vip}
cidr_netmask = 24
name = {hosts.vip_name}
fronts = {", ".join(fronts)}

[arbitrator]
host = {hosts.arbitrator[0]}
address = {hosts.arbitrator[1]}

[resource:galera]
agent = {galera_agent}
mode = promotable
params =
{_params(galera_params(hosts, galera_agent))}
"""]
    if power_dir is not None:
        # the lab's "power switch": fence_dummy writes off into the file, the lab
        # (LabPower) powers that node off. controller01's device waits 2 s, so in a
        # partition controller01 wins the fencing race, as pcmk_delay_base does on real pairs
        for i, (node, _addr) in enumerate(hosts.nodes):
            extra = {"pcmk_delay_base": "2s"} if i == 0 else {}
            out.append(f"""\
[fencing:fence-{node}]
agent = fence_dummy
params =
{_params({"type": "file", "status_file": str(power_dir / node), "pcmk_host_list": node,
          "pcmk_reboot_action": "off", **extra})}
""")
    if services:
        assert venv is not None and config_dir is not None
        for service in APIS:
            out.append(f"""\
[resource:{service}]
agent = ocf:pacestack:openstack-service
after = galera
with = galera
monitor_interval = 5
params =
{_params(api_params(service, venv, config_dir))}
""")
        if cinder_volume:
            out.append(f"""\
[resource:cinder-volume]
agent = ocf:pacestack:cinder-volume
mode = single
after = keystone
with = keystone
monitor_interval = 10
params =
{_params({"binary": str(venv / "bin" / "cinder-volume"),
          "config": str(config_dir / "cinder.conf"), "host": "controller",
          "log": "/var/log/pacestack-cinder-volume.log"})}
""")
    return "\n".join(out)
