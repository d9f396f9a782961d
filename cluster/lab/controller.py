"""The whole ``controller`` profile in the lab: every service of cluster/profile.py.

The lab's description says ``profile = controller`` and overrides only each
resource's parameters (how the daemon runs here), so ordering, colocation and
clone/single modes are what ``cluster apply`` generates for an operator's pair.

What runs where cannot be the Debian default:
- no systemd in a lab node: memcached and RabbitMQ run as plain daemons under
  ocf:pacestack:openstack-service (the profile's ``systemd_unit`` is replaced);
- no apache2: the ``apache`` resource is Keystone under gunicorn; Placement, which
  Debian also serves from apache, is its own ``placement-api`` resource after it;
- RabbitMQ: a three-member cluster, both controllers under Pacemaker and a third
  member on the arbitrator outside it (as garbd), so a quorum queue keeps its
  majority when either controller goes; the services' queues are quorum queues and
  every client lists the three members (see transport_url()).
- the Neutron API under gunicorn answers HTTP only: the agents' RPC (their state
  reports, port and network sync) is served by ``neutron-rpc-server``, a clone
  beside it; the agents drive Open vSwitch with the userspace datapath, itself a
  clone (``openvswitch``) where a real node's systemd would start it
  (neutron_agents.py).

Every client reaches the database, Keystone and the APIs through the VIP's name,
RabbitMQ on its three members and memcached on both controllers, as on a real pair.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pacestack.cluster.options import VIP_FRONTS

from pacestack import wsgi_apps

from . import neutron_agents, services
from .services import LabHosts, _ini, _params, db_url, write_secret

REGION = "RegionOne"
RABBIT_USER = "openstack"
ADMIN = "admin"
# resources of the profile the lab cannot run, with the reason (README: stand-in table)
DISABLED: dict[str, str] = {}
# the lab's own clones, beside the profile's
EXTRA = ("placement-api", "neutron-rpc-server", "openvswitch")
SINGLE = ("cinder-volume", "cinder-backup")


@dataclass(frozen=True)
class Wsgi:
    """One API under gunicorn: where the app reads its configuration."""

    app: str          # the API's name in pacestack.wsgi_apps (its module differs by release)
    port: int
    health: str
    env: tuple[tuple[str, str], ...]   # (variable, value relative to the config dir)
    argv: tuple[str, ...] = ()          # the sys.argv the app parses itself
    glance: bool = False                # from the Glance venv
    # gunicorn's sync workers each serve one request at a time. Nova's and Neutron's
    # requests wait on other APIs and on RPC (a server's show asks Neutron, a network
    # create notifies the DHCP agents): on one worker, after a node crash, the cloud's
    # own calls held each for ~2 s while the drill's reads queued behind them and
    # timed out, seconds after the API had answered again
    workers: int = 1


WSGI = {
    "apache": Wsgi("keystone", 5000, "/v3",
                   (("OS_KEYSTONE_CONFIG_DIR", ""), ("OS_KEYSTONE_CONFIG_FILES", "keystone.conf"))),
    "placement-api": Wsgi("placement", 8778, "/",
                          (("OS_PLACEMENT_CONFIG_DIR", ""),)),
    "glance-api": Wsgi("glance", 9292, "/", (("OS_GLANCE_CONFIG_DIR", "glance"),),
                       glance=True),
    "nova-api": Wsgi("nova-api", 8774, "/",
                     (("OS_NOVA_CONFIG_DIR", ""),
                      # the app loads its paste pipeline from the first file
                      ("OS_NOVA_CONFIG_FILES", "nova-api-paste.ini;nova.conf")),
                     workers=2),
    "neutron-server": Wsgi("neutron", 9696, "/",
                           (("OS_NEUTRON_CONFIG_DIR", ""),
                            ("OS_NEUTRON_CONFIG_FILES", "neutron.conf;ml2_conf.ini")),
                           workers=2),
    "cinder-api": Wsgi("cinder-api", 8776, "/", (), argv=("--config-file", "cinder.conf")),
}
GLANCE_APP = wsgi_apps.WsgiApp("glance.wsgi.api")
# API resource -> (catalog type, service name, path after host:port)
CATALOG = {
    "placement-api": ("placement", "placement", ""),
    "glance-api": ("image", "glance", ""),
    "nova-api": ("compute", "nova", "/v2.1"),
    "neutron-server": ("network", "neutron", ""),
    "cinder-api": ("volumev3", "cinderv3", "/v3/%(project_id)s"),
}
RPC_SERVER_CONF = services.RPC_SERVER_CONF
DAEMONS = {  # resource -> (binary, config files)
    "nova-scheduler": ("nova-scheduler", ("nova.conf", RPC_SERVER_CONF)),
    "nova-conductor": ("nova-conductor", ("nova.conf", RPC_SERVER_CONF)),
    "nova-novncproxy": ("nova-novncproxy", ("nova.conf",)),
    "cinder-scheduler": ("cinder-scheduler", ("cinder.conf", RPC_SERVER_CONF)),
    "cinder-backup": ("cinder-backup", ("cinder.conf", RPC_SERVER_CONF)),
    "neutron-rpc-server": ("neutron-rpc-server",
                           ("neutron.conf", "ml2_conf.ini", RPC_SERVER_CONF)),
}


# Placement is apache's in the profile (so "after apache" covers it); here it is its
# own resource, and the Nova services that exit without it wait for it too. Like
# Keystone it is reached through the VIP: ordered after, not colocated with
_AFTER = "rabbitmq, apache, placement-api"
NEEDS_PLACEMENT = {name: f"after = {_AFTER}\n"
                   for name in ("nova-api", "nova-scheduler", "nova-conductor")}


def broker_note() -> str:
    return ("a three-member RabbitMQ cluster (both controllers under Pacemaker, the "
            "arbitrator's member outside it) behind the VIP: the services' queues are "
            "quorum queues, replicated on all three, so either controller can go and a "
            "majority (two of three) still holds every queued message; the clients list "
            "the three members, not the VIP")


RABBIT_NODES = "rabbit@{}"
COOKIE = ".erlang.cookie"


@dataclass(frozen=True)
class Secrets:
    db: str
    rabbit: str
    admin: str
    metadata: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    # the Erlang cookie the three RabbitMQ members share (Erlang reads it as an atom)
    cookie: str = field(default_factory=lambda: secrets.token_hex(20).upper())


def rabbit_hosts(hosts: LabHosts) -> list[str]:
    """The RabbitMQ members a client may use: the arbitrator's and both controllers'."""
    return [hosts.arbitrator[0], *(name for name, _ in hosts.nodes)]


def transport_url(hosts: LabHosts, secrets_: Secrets) -> str:
    """oslo.messaging's several-host URL naming every member, not the VIP: a client
    stays on its broker while that runs (oslo.messaging shuffles the list, so the
    clients spread over the three). Through the VIP, a VIP move alone (mariadbd
    killed, the broker there still running) stranded every consumer on the broker
    the VIP left until heartbeats dropped them, with the casts it had handed them;
    a member that stops or dies drops its clients, which move on to the next."""
    return "rabbit://" + ",".join(f"{RABBIT_USER}:{secrets_.rabbit}@{host}:5672"
                                  for host in rabbit_hosts(hosts)) + "/"


def memcached_servers(hosts: LabHosts) -> str:
    return ",".join(f"{addr}:11211" for _, addr in hosts.nodes)


# A client of a member whose node crashed hears nothing (no host answers for the dead
# address, no reset): it notices by the heartbeat, which py-amqp sends when nothing
# was sent for threshold / heartbeat_rate (3) seconds and declares the connection
# dead after the threshold without a frame from the broker: 5-10 s with 5, RabbitMQ's
# lowest recommended value (below it a loaded client is dropped falsely; 60 by
# default). A broker likewise drops a client gone silent after the negotiated
# heartbeat, handing the casts it held unacknowledged to other consumers. The topic
# queues (where casts such as a server's build or a volume create wait for their
# server) are quorum queues. The reply and fanout queues stay classic: their names
# are random per process, so as quorum queues each restart would leave three-member
# Raft groups behind until their 30 min expiry; ``use_queue_manager``
# would name them per host and process, but every API under gunicorn on a node has
# the process name "gunicorn" and they would share reply queues.
RABBIT = {"oslo_messaging_rabbit": {"heartbeat_timeout_threshold": "5",
                                    "rabbit_quorum_queue": "true"}}


# A TERMed Nova or Cinder service stops taking RPCs and finishes those it holds (the
# conductor's part of a server's build: a standby stops it mid-build) for up to
# graceful_shutdown_timeout; ocf:pacestack:openstack-service waits as long before it
# kills. Nova's manager waits for its tasks manager_shutdown_timeout less 20 s of
# cleanup (and only graceful - 10 s when that is shorter: with graceful 20 it waited
# 0 s and failed the build it held), so 40 gives a build 20 s. Nova's own 180/160
# would hold a standby minutes behind a task stuck on a lost reply.
GRACEFUL = {"graceful_shutdown_timeout": "20"}
NOVA_GRACEFUL = {"graceful_shutdown_timeout": "50", "manager_shutdown_timeout": "40"}


def _auth(hosts: LabHosts, secrets_: Secrets) -> dict[str, str]:
    """keystoneauth options of the lab's services (the bootstrap admin is every
    service's user: one account to set up, same code paths)."""
    return {"auth_url": f"http://{hosts.vip_name}:5000/v3", "auth_type": "password",
            "username": ADMIN, "password": secrets_.admin, "project_name": ADMIN,
            "user_domain_name": "Default", "project_domain_name": "Default",
            "region_name": REGION}


def write_configs(config_dir: Path, state_dir: Path, venv: Path, glance_venv: Path | None,
                  hosts: LabHosts, secrets_: Secrets, keys_dir: Path | None, *,
                  debug: bool = False) -> None:
    """Config files of every service (0600: they hold passwords). ``debug``: every
    service (the compute's too: nova-compute.conf and the agents' files are written
    here) logs at debug level, oslo.messaging's lines included."""
    config_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config_dir, 0o700)
    for sub in ("neutron", "cinder", "nova", "lock", "glance/images", "glance/staging",
                "glance/tasks", "cinder/backup", "novnc", "rabbitmq"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    lock = str(state_dir / "lock")
    pw = secrets_.db
    mq = transport_url(hosts, secrets_)
    mc = memcached_servers(hosts)
    # memcached_servers names both nodes: the first request after a node died waits
    # this long on its memcached before the pool marks it dead (3 s by default)
    authtoken = {"www_authenticate_uri": f"http://{hosts.vip_name}:5000/v3",
                 "memcached_servers": mc, "memcache_pool_socket_timeout": "1",
                 **_auth(hosts, secrets_)}
    common = {"transport_url": mq, "use_stderr": "true"}
    files: dict[str, dict[str, dict[str, str]]] = {
        "keystone.conf": {
            "DEFAULT": {"log_file": "", "use_stderr": "true"},
            "database": {"connection": db_url(pw, "keystone", hosts.vip_name)},
            "cache": {"enabled": "true", "backend": "oslo_cache.memcache_pool",
                      "memcache_servers": mc},
            "fernet_tokens": {"key_repository": str(config_dir / "fernet-keys")},
            "fernet_receipts": {"key_repository": str(config_dir / "fernet-keys")},
            "credential": {"key_repository": str(config_dir / "credential-keys")},
            # every lab service signs in as one user, and after a fault each signs in
            # again: bcrypt's default 12 rounds (0.24 s a check on an idle core here)
            # queued those behind one gunicorn worker on two shared cores for seconds
            "identity": {"password_hash_rounds": "4"},
        },
        "placement.conf": {
            "DEFAULT": {"use_stderr": "true"},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": authtoken,
            "placement_database": {"connection": db_url(pw, "placement", hosts.vip_name)},
            "oslo_concurrency": {"lock_path": lock},
        },
        "neutron.conf": {
            # routers: the L3 agents' RPC (and the routers API) come with the plugin
            "DEFAULT": {**common, "core_plugin": "ml2", "service_plugins": "router",
                        "auth_strategy": "keystone",
                        # the API (gunicorn) serves no RPC; neutron-rpc-server runs
                        # one worker, which takes the agents' state reports too
                        "api_workers": "1", "rpc_workers": "1",
                        "rpc_state_report_workers": "0",
                        # agents report every 5 s: one gone quiet shows dead in 15 s
                        "agent_down_time": "15",
                        # the RPC server and the agents exit 2 s after TERM instead of
                        # 60: restarting what follows memcached, RabbitMQ or Galera on a
                        # node stops them all first, one after the other
                        "graceful_shutdown_timeout": "2",
                        "notify_nova_on_port_status_changes": "false",
                        "notify_nova_on_port_data_changes": "false",
                        "state_path": str(state_dir / "neutron"),
                        "api_paste_config": str(venv / "etc/neutron/api-paste.ini")},
            "keystone_authtoken": authtoken,
            **RABBIT,
            "database": {"connection": db_url(pw, "neutron", hosts.vip_name)},
            "oslo_concurrency": {"lock_path": lock},
            "ovn": {"disable_ovn_dhcp_for_baremetal_ports": "true"},
        },
        "ml2_conf.ini": services.ML2_CONF,
        RPC_SERVER_CONF: {"oslo_messaging_rabbit": {"use_queue_manager": "true"}},
        "cinder.conf": {
            "DEFAULT": {**common, "state_path": str(state_dir / "cinder"),
                        "enabled_backends": "lvm", "host": "controller",
                        "auth_strategy": "keystone",
                        "api_paste_config": str(venv / "etc/cinder/api-paste.ini"),
                        "osapi_volume_workers": "1",
                        "backup_driver": "cinder.backup.drivers.posix.PosixBackupDriver",
                        "backup_posix_path": str(state_dir / "cinder/backup"),
                        # a fast heartbeat: the agent's services-table check sees a
                        # dead cinder-volume within seconds
                        "report_interval": "2", "service_down_time": "6",
                        **GRACEFUL},
            "keystone_authtoken": authtoken,
            **RABBIT,
            "database": {"connection": db_url(pw, "cinder", hosts.vip_name)},
            "oslo_concurrency": {"lock_path": lock},
            "lvm": {"volume_driver": "cinder.tests.fake_driver.FakeLoggingVolumeDriver",
                    "volume_backend_name": "lvm"},
        },
        "nova.conf": _nova(hosts, secrets_, state_dir, venv, lock, authtoken, mq),
        "nova-compute.conf": _nova(hosts, secrets_, state_dir, venv, lock, authtoken, mq,
                                   compute=True),
        "rabbitmq.conf": {"": rabbitmq_conf(hosts, secrets_)},
    }
    if glance_venv is not None:
        files["glance/glance-api.conf"] = {
            "DEFAULT": {"use_stderr": "true", "workers": "1", "transport_url": mq},
            "database": {"connection": db_url(pw, "glance", hosts.vip_name)},
            "keystone_authtoken": authtoken,
            **RABBIT,
            "paste_deploy": {"flavor": "keystone",
                             "config_file": str(glance_venv / "etc/glance/glance-api-paste.ini")},
            "glance_store": {"stores": "file", "default_store": "file",
                             # on the host's disk, which both nodes see: shared storage
                             "filesystem_store_datadir": str(state_dir / "glance/images")},
            "os_glance_staging_store": {
                "filesystem_store_datadir": str(state_dir / "glance/staging")},
            "os_glance_tasks_store": {
                "filesystem_store_datadir": str(state_dir / "glance/tasks")},
            "oslo_concurrency": {"lock_path": lock},
        }
        (config_dir / "glance").mkdir(exist_ok=True)
        os.chmod(config_dir / "glance", 0o700)
    for name, sections in files.items():
        text = _ini(sections, debug)
        if name == "rabbitmq.conf":  # sysctl-style, no section header
            text = text.replace("[]\n", "")
        write_secret(config_dir / name, text)
    neutron_agents.write(config_dir, venv, hosts.vip_name, secrets_.metadata,
                         [*hosts.nodes, hosts.arbitrator], write_secret, debug)
    shutil.copyfile(venv / "etc/nova/api-paste.ini", config_dir / "nova-api-paste.ini")
    (config_dir / "enabled_plugins").write_text("[rabbitmq_management].\n", encoding="utf-8")
    if keys_dir is not None:
        for sub in ("fernet-keys", "credential-keys"):
            if (keys_dir / sub).is_dir() and not (config_dir / sub).exists():
                shutil.copytree(keys_dir / sub, config_dir / sub)
    release = wsgi_apps.release_of_venv(venv)
    for name, api in WSGI.items():
        argv = tuple(a if not a.endswith(".conf") else str(config_dir / a) for a in api.argv)
        # Glance comes from a venv of its own, which ships glance.wsgi.api
        app = GLANCE_APP if api.glance else wsgi_apps.app(release, api.app)
        (config_dir / f"{_shim(name)}.py").write_text(app.shim(argv), encoding="utf-8")


def _nova(hosts: LabHosts, secrets_: Secrets, state_dir: Path, venv: Path, lock: str,
          authtoken: dict[str, str], mq: str, compute: bool = False) -> dict:
    pw = secrets_.db
    auth = _auth(hosts, secrets_)
    conf: dict[str, dict[str, str]] = {
        "DEFAULT": {"transport_url": mq, "use_stderr": "true",
                    "state_path": str(state_dir / "nova"), "osapi_compute_workers": "1",
                    "metadata_workers": "1", **NOVA_GRACEFUL,
                    # Nova starts a service's periodic tasks after a random 0-60 s;
                    # the scheduler's host discovery is one, and lab up waits for it
                    "periodic_fuzzy_delay": "0"},
        "api": {"auth_strategy": "keystone"},
        "wsgi": {"api_paste_config": str(venv / "etc/nova/api-paste.ini")},
        "keystone_authtoken": authtoken,
        "placement": auth,
        "neutron": auth,
        "glance": {"region_name": REGION},
        "cinder": {**auth, "os_region_name": REGION},
        # Cinder lets only Nova delete an attachment it made (detach): it must see
        # Nova's service token on the call
        "service_user": {**auth, "send_service_user_token": "true"},
        "scheduler": {"discover_hosts_in_cells_interval": "3"},
        "conductor": {"workers": "1"},
        "vnc": {"enabled": "true", "server_listen": "0.0.0.0",
                "novncproxy_base_url": f"http://{hosts.vip_name}:6080/vnc_auto.html"},
        "oslo_concurrency": {"lock_path": lock},
        **RABBIT,
    }
    if compute:
        # nothing of the controllers' databases: a compute talks to the conductor
        # the fake driver with a stable node identity (compute_id in state_path): the
        # plain one makes up a node uuid per process, so it could not start again
        conf["DEFAULT"].update({"compute_driver": "fake.FakeDriverWithoutFakeNodes",
                                "host": hosts.arbitrator[0]})
        conf["vnc"]["server_proxyclient_address"] = hosts.arbitrator[1]
    else:
        conf["database"] = {"connection": db_url(pw, "nova", hosts.vip_name)}
        conf["api_database"] = {"connection": db_url(pw, "nova_api", hosts.vip_name)}
        conf["DEFAULT"]["web"] = str(state_dir / "novnc")  # noVNC's files: none here
    return conf


def _shim(resource: str) -> str:
    return f"pacestack_lab_{resource.replace('-', '_')}_wsgi"


def api_params(resource: str, venv: Path, glance_venv: Path | None,
               config_dir: Path) -> dict[str, str]:
    api = WSGI[resource]
    root = glance_venv if api.glance and glance_venv else venv
    env = [f"PATH={root}/bin:/usr/bin:/bin"]
    extras = memcache_client(glance_venv)
    if extras is not None:
        env.append(f"PYTHONPATH={extras}")
    for var, rel in api.env:
        value = str(config_dir / rel) if var.endswith("_DIR") else rel
        env.append(f"{var}={shlex.quote(value)}")
    return {
        "binary": str(root / "bin" / "gunicorn"),
        "extra_args": (f"--no-control-socket --bind 0.0.0.0:{api.port} --workers {api.workers} "
                       f"--timeout 120 --graceful-timeout 3 --chdir {config_dir} "
                       f"{_shim(resource)}:application"),
        "environment": " ".join(env),
        "pid": f"/run/pacestack-{resource}.pid",
        "log": f"/var/log/pacestack-{resource}.log",
        "monitor_url": f"http://127.0.0.1:{api.port}{api.health}",
        "monitor_timeout": "5",
        "stop_timeout": "10",
    }


def daemon_params(resource: str, venv: Path, config_dir: Path,
                  glance_venv: Path | None = None) -> dict[str, str]:
    binary, configs = DAEMONS[resource]
    params = {"binary": str(venv / "bin" / binary),
              "config": " ".join(str(config_dir / c) for c in configs),
              "pid": f"/run/pacestack-{resource}.pid",
              "log": f"/var/log/pacestack-{resource}.log", "stop_timeout": "10"}
    extras = memcache_client(glance_venv)
    if extras is not None:
        # nova's [cache] and the services' keystonemiddleware load python-memcached too,
        # not only the APIs: without it they log "No module named 'memcache'" and run
        # without the cache the description configures
        params["environment"] = shlex.quote(f"PYTHONPATH={extras}")
    return params


def cinder_volume_params(venv: Path, config_dir: Path) -> dict[str, str]:
    """ocf:pacestack:cinder-volume's parameters: one shared host name on both nodes."""
    return {"binary": str(venv / "bin" / "cinder-volume"),
            "config": " ".join(str(config_dir / c) for c in ("cinder.conf", RPC_SERVER_CONF)),
            "host": "controller", "log": "/var/log/pacestack-cinder-volume.log"}


def memcached_params() -> dict[str, str]:
    return {"binary": "/usr/bin/memcached",
            "extra_args": "-u memcache -l 0.0.0.0 -p 11211 -m 32 -c 512",
            "pid": "/run/pacestack-memcached.pid", "log": "/var/log/pacestack-memcached.log"}


def rabbitmq_conf(hosts: LabHosts, secrets_: Secrets) -> dict[str, str]:
    """The members' rabbitmq.conf: one cluster of the two controllers and the
    arbitrator. A fresh member joins the first peer that answers in this order; the
    arbitrator's member starts first (stack.start_rabbitmq), so both controllers
    join it and never form a cluster of their own."""
    conf = {"listeners.tcp.default": "5672", "loopback_users": "none",
            "default_user": RABBIT_USER, "default_pass": secrets_.rabbit,
            "management.tcp.port": "15672",
            "cluster_formation.peer_discovery_backend": "classic_config",
            # the member cut off from the other two stops serving clients (what it
            # would accept alone, the majority never sees) and rejoins when it can
            "cluster_partition_handling": "pause_minority"}
    for i, name in enumerate(rabbit_hosts(hosts), start=1):
        conf[f"cluster_formation.classic_config.nodes.{i}"] = RABBIT_NODES.format(name)
    return conf


def rabbitmq_env(config_dir: Path) -> dict[str, str]:
    """The broker's environment on every member. Its data (membership, quorum-queue
    logs) and the cookie in HOME are on the node's disk (/var/lib/rabbitmq): a member
    booted again after a crash rejoins the cluster with what it had."""
    return {**ctl_env(), "RABBITMQ_MNESIA_BASE": "/var/lib/rabbitmq/mnesia",
            "RABBITMQ_LOG_BASE": "/var/log",
            "RABBITMQ_CONFIG_FILE": str(config_dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(config_dir / "enabled_plugins"),
            # one scheduler, no busy-waiting: three brokers share two cores here; a
            # 10 s net tick notices a member cut off within seconds (60 s by default)
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ("+S 1:1 +sbwt none +sbwtdcpu none "
                                                    "+sbwtdio none -kernel net_ticktime 10"),
            "PATH": "/usr/lib/rabbitmq/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def write_cookie(var_lib_rabbitmq: Path, cookie: str) -> None:
    """The shared Erlang cookie in a member's HOME (0400, as Erlang demands)."""
    path = var_lib_rabbitmq / COOKIE
    if path.exists():
        path.chmod(0o600)
    write_secret(path, cookie)
    path.chmod(0o400)


def rabbitmq_params(config_dir: Path) -> dict[str, str]:
    env = rabbitmq_env(config_dir)
    return {"binary": "/usr/lib/rabbitmq/bin/rabbitmq-server",
            "environment": " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()),
            "workdir": "/var/lib/rabbitmq", "pid": "/run/pacestack-rabbitmq.pid",
            "log": "/var/log/pacestack-rabbitmq.log",
            # the management listener answers once the broker has booted (joined)
            "monitor_url": "http://127.0.0.1:15672/", "monitor_timeout": "5",
            "stop_timeout": "20"}


def ctl_env() -> dict[str, str]:
    """What rabbitmqctl and rabbitmq-queues need on a member: the cookie's HOME."""
    return {"HOME": "/var/lib/rabbitmq"}


def resource_names(glance: bool) -> tuple[list[str], list[str]]:
    """(clones, single instances) the lab's description runs."""
    from pacestack.cluster import profile

    names = [r.name for r in profile.controller_stack([("a", "1"), ("b", "2")])]
    clones = [n for n in names if n not in DISABLED and n not in SINGLE and n != "galera"
              and (glance or n != "glance-api")]
    return clones + list(EXTRA), list(SINGLE)


def description(hosts: LabHosts, *, power_dir: Path | None, venv: Path,
                glance_venv: Path | None, config_dir: Path,
                galera_agent: str = "ocf:pacestack:galera") -> str:
    """The lab's whole-profile description: ``profile = controller`` plus parameters."""
    base = services.lab_description(hosts, power_dir=power_dir, venv=None, config_dir=None,
                                    services=False, galera_agent=galera_agent)
    base = base.replace("profile = none", "profile = controller")
    # the profile's VIP fronts (its default), and Placement, its own API here
    fronts = ", ".join([*VIP_FRONTS, "placement-api"])
    base = "\n".join(f"fronts = {fronts}" if ln.startswith("fronts =") else ln
                      for ln in base.splitlines())
    out = [base]

    def res(name: str, params: dict[str, str], interval: int, extra: str = "") -> None:
        out.append(f"[resource:{name}]\n{extra}monitor_interval = {interval}\n"
                   f"params =\n{_params(params)}\n")

    res("memcached", memcached_params(), 10)
    res("rabbitmq", rabbitmq_params(config_dir), 10)
    for name in WSGI:
        if name == "glance-api" and glance_venv is None:
            out.append("[resource:glance-api]\nenabled = false\n")
            continue
        extra = ("agent = ocf:pacestack:openstack-service\nafter = apache\n"
                 "clients_reconnect = true\n"
                 if name == "placement-api" else NEEDS_PLACEMENT.get(name, ""))
        res(name, api_params(name, venv, glance_venv, config_dir), 5, extra)
    for name in DAEMONS:
        if name in EXTRA:
            continue
        res(name, daemon_params(name, venv, config_dir, glance_venv), 10,
            NEEDS_PLACEMENT.get(name, ""))
    service = "agent = ocf:pacestack:openstack-service\n"
    res("openvswitch", neutron_agents.ovs_params(config_dir), 10, service)
    # the agents reach it over RPC, as they reach neutron-server in the profile
    rpc = "after = neutron-server\nclients_reconnect = true\n"
    res("neutron-rpc-server", daemon_params("neutron-rpc-server", venv, config_dir,
                                            glance_venv), 10, service + rpc)
    for name in neutron_agents.AGENTS:
        # the Open vSwitch agent needs its host's switch and the RPC server's answers
        extra = ("after = neutron-rpc-server, openvswitch\nwith = openvswitch\n"
                 if name == "neutron-openvswitch-agent" else "")
        res(name, neutron_agents.agent_params(name, venv, config_dir), 10, extra)
    res("cinder-volume", cinder_volume_params(venv, config_dir), 10)
    for name, why in DISABLED.items():
        out.append(f"# {name}: {why}\n[resource:{name}]\nenabled = false\n")
    return "\n".join(out)


def catalog_sql(hosts: LabHosts) -> str:
    """Catalog entries of the services (Keystone's bootstrap makes the identity ones)
    and the admin user's service role."""
    stmts = []
    for resource, (kind, name, path) in CATALOG.items():
        sid = uuid.uuid5(uuid.NAMESPACE_URL, f"pacestack-lab/{kind}").hex
        url = f"http://{hosts.vip_name}:{WSGI[resource].port}{path}"
        # our own constants and the description's checked VIP name
        stmts.append("INSERT IGNORE INTO keystone.service (id, type, enabled, extra) "  # noqa: S608
                     f"VALUES ('{sid}', '{kind}', 1, '{{\"name\": \"{name}\"}}');")
        for interface in ("public", "internal", "admin"):
            eid = uuid.uuid5(uuid.NAMESPACE_URL, f"pacestack-lab/{kind}/{interface}").hex
            stmts.append("INSERT IGNORE INTO keystone.endpoint (id, interface, service_id, "  # noqa: S608
                         f"url, extra, enabled, region_id) VALUES ('{eid}', '{interface}', "
                         f"'{sid}', '{url}', '{{}}', 1, '{REGION}');")
    # the admin user is every service's user: keystonemiddleware rejects a service
    # token (Nova sends one with each call to another API) without the service role
    stmts.append("INSERT IGNORE INTO keystone.assignment (type, actor_id, target_id, role_id, "  # noqa: S608
                 "inherited) SELECT 'UserProject', u.user_id, p.id, r.id, 0 FROM "
                 "keystone.local_user u, keystone.project p, keystone.role r WHERE "
                 f"u.name = '{ADMIN}' AND u.domain_id = 'default' AND p.name = '{ADMIN}' AND "
                 "p.domain_id = 'default' AND r.name = 'service' AND r.domain_id = '<<null>>';")
    return "\n".join(stmts) + "\n"


def memcache_client(glance_venv: Path | None) -> Path | None:
    """python-memcached, which keystonemiddleware and oslo.cache need for
    ``memcached_servers`` and the pinned OpenStack venv lacks: installed with
    ``pip install --target`` beside the Glance venv."""
    extras = glance_venv.parent / "extras" if glance_venv else None
    return extras if extras is not None and (extras / "memcache.py").is_file() else None


def glance_ready(venv: Path) -> bool:
    return (venv / "bin" / "glance-manage").exists() and (venv / "bin" / "gunicorn").exists()


# written into a cached Glance venv after everything else: a build that died midway
# (pip installs one package after another) leaves no marker and is never used
GLANCE_COMPLETE = ".pacestack-complete"


def cached_glance() -> Path | None:
    """The newest complete Glance venv under $PACESTACK_CACHE (glance-<release>/venv,
    built by scripts/build-openstack-cache.py)."""
    base = Path(os.environ.get("PACESTACK_CACHE", "/var/cache/pacestack"))
    for venv in sorted(base.glob("glance-*/venv"), reverse=True):
        if (venv / GLANCE_COMPLETE).is_file() and glance_ready(venv):
            return venv
    return None
