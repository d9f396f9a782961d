"""The whole-profile lab's generated service configs, read by the pinned venv's own
oslo.config, oslo.messaging and keystonemiddleware (no lab started). Budget: ~10 s."""

from __future__ import annotations

import configparser
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from pacestack.cluster.lab import controller, services, stack

HOSTS = services.LabHosts(nodes=(("controller01", "10.0.0.11"), ("controller02", "10.0.0.12")),
                          arbitrator=("arbitrator", "10.0.0.13"), vip="10.0.0.10",
                          vip_name="controller.domain", cluster_name="lab")

def _lab_configs(venv: Path, tmp_path: Path, wanted: Callable[[configparser.ConfigParser],
                                                                bool]) -> list[str]:
    """The lab's generated OpenStack config files (RabbitMQ's own aside) that ``wanted``
    picks, as the configparser reads them."""
    etc = tmp_path / "etc"
    controller.write_configs(etc, tmp_path / "state", venv, None, HOSTS,
                             controller.Secrets("db", "mq", "admin"), None)
    picked = []
    for path in sorted(etc.rglob("*.conf")):
        if path.name == "rabbitmq.conf":
            continue
        ini = configparser.ConfigParser(interpolation=None)
        ini.read(path)
        if wanted(ini):
            picked.append(str(path))
    return picked


def _read_in_venv(venv: Path, script: str, paths: list[str]) -> dict:
    """What ``script``, run by the pinned venv's python on ``paths``, prints as JSON."""
    res = subprocess.run([str(venv / "bin" / "python"), "-c", script, *paths],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(res.stdout)


# every file that names a transport_url, as oslo.messaging sees it
READ_RABBIT = """
import json, sys
from oslo_config import cfg
from oslo_messaging._drivers import impl_rabbit
out = {}
for path in sys.argv[1:]:
    conf = cfg.ConfigOpts()
    conf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
    conf(args=[], default_config_files=[path], project="lab")
    r = conf.oslo_messaging_rabbit
    out[path] = [r.heartbeat_timeout_threshold, r.heartbeat_rate, r.rabbit_quorum_queue]
print(json.dumps(out))
"""


def test_rabbit_clients_use_quorum_queues_and_heartbeat_every_few_seconds(openstack_venv,
                                                                         tmp_path):
    """Every service declares its RPC topics as quorum queues (replicated on the three
    RabbitMQ members). After the VIP moves, a client still connected to the old
    node's broker notices only when it sends (the new holder resets it): its idle
    heartbeat is that send."""
    users = _lab_configs(openstack_venv, tmp_path, lambda ini: ini.get(
        "DEFAULT", "transport_url", fallback="").startswith("rabbit://"))
    assert {Path(p).name for p in users} >= {"nova.conf", "nova-compute.conf",
                                             "neutron.conf", "cinder.conf"}
    read = _read_in_venv(openstack_venv, READ_RABBIT, users)
    for path, (threshold, rate, quorum) in read.items():
        # py-amqp sends a heartbeat when nothing was sent for threshold / rate seconds
        assert threshold / rate <= 5, (path, threshold, rate)
        assert quorum is True, path


def test_a_broker_the_vip_left_drops_its_stale_clients_within_seconds(openstack_venv,
                                                                     tmp_path):
    """mariadbd killed on the VIP's node: the VIP moves, the broker there keeps
    running and, hearing nothing of the clients that followed the VIP, keeps their
    consumers and hands them casts (a server's build) until the negotiated heartbeat
    (the clients' threshold; RabbitMQ's own is 60) has passed without a frame. Each
    service negotiates RabbitMQ's lowest recommended 5 s."""
    users = _lab_configs(openstack_venv, tmp_path, lambda ini: ini.get(
        "DEFAULT", "transport_url", fallback="").startswith("rabbit://"))
    read = _read_in_venv(openstack_venv, READ_RABBIT, users)
    assert {Path(p).name for p in read} >= {"nova.conf", "nova-compute.conf",
                                            "neutron.conf", "cinder.conf"}
    for path, (threshold, _rate, _quorum) in read.items():
        assert threshold == 5, (path, threshold)


def test_rabbitmq_members_form_one_cluster_from_the_arbitrator(tmp_path):
    """rabbitmq.conf: classic peer discovery listing the arbitrator's member first
    (it starts first, so a fresh controller joins it), partitions paused on the
    minority side; the shared cookie is a 0400 file, never in the environment."""
    conf = controller.rabbitmq_conf(HOSTS, controller.Secrets("db", "mq", "admin"))
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    assert [conf[f"cluster_formation.classic_config.nodes.{i}"] for i in (1, 2, 3)] == \
        ["rabbit@arbitrator", "rabbit@controller01", "rabbit@controller02"]
    assert conf["cluster_partition_handling"] == "pause_minority"
    secrets_ = controller.Secrets("db", "mq", "admin")
    controller.write_cookie(tmp_path, secrets_.cookie)
    controller.write_cookie(tmp_path, secrets_.cookie)  # again over the 0400 file
    cookie = tmp_path / controller.COOKIE
    assert cookie.read_text() == secrets_.cookie and cookie.stat().st_mode & 0o777 == 0o400
    params = controller.rabbitmq_params(tmp_path)
    assert secrets_.cookie not in params["environment"]
    assert "HOME=/var/lib/rabbitmq" in params["environment"]


READ_AUTHTOKEN = """
import json, sys
from oslo_config import cfg
from keystonemiddleware.auth_token import _opts
out = {}
for path in sys.argv[1:]:
    conf = cfg.ConfigOpts()
    conf.register_opts(_opts._OPTS, group="keystone_authtoken")
    conf(args=[], default_config_files=[path], project="lab")
    a = conf.keystone_authtoken
    out[path] = [a.memcached_servers, a.memcache_use_advanced_pool,
                 a.memcache_pool_socket_timeout]
print(json.dumps(out))
"""


def test_a_dead_nodes_memcached_costs_an_api_request_one_second(openstack_venv, tmp_path):
    """keystonemiddleware caches tokens on both nodes' memcached: after a node crash
    an API's first request waits the socket timeout on the dead one (the node-crash
    drill saw nova-api answer 2.9 s after the VIP moved), then the pool skips it."""
    users = _lab_configs(openstack_venv, tmp_path, lambda ini: ini.has_option(
        "keystone_authtoken", "memcached_servers"))
    assert {Path(p).name for p in users} >= {"nova.conf", "neutron.conf", "cinder.conf",
                                             "placement.conf"}
    for path, (servers, advanced, timeout) in _read_in_venv(openstack_venv, READ_AUTHTOKEN,
                                                            users).items():
        assert len(servers) == 2 and advanced, path  # the pool whose timeout this is
        assert timeout <= 1, (path, timeout)


def test_every_api_and_openstack_daemon_finds_the_memcache_client(
        openstack_venv, tmp_path):
    """python-memcached lives beside the Glance venv (the pinned OpenStack venv lacks it):
    the APIs and the daemons (conductor, scheduler, the RPC server...) all get its path,
    and the venv's python then imports it."""
    glance = tmp_path / "glance" / "venv"
    extras = tmp_path / "glance" / "extras"
    glance.mkdir(parents=True)
    extras.mkdir()
    (extras / "memcache.py").write_text("CLIENT = 'python-memcached stand-in'\n")
    text = controller.description(HOSTS, power_dir=None, venv=openstack_venv,
                                  glance_venv=glance, config_dir=tmp_path / "etc")
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(text)
    # the APIs and the daemons that load the [cache] or keystone_authtoken sections
    services_ = [n for n in [*controller.WSGI, *controller.DAEMONS]
                 if ini.has_option(f"resource:{n}", "params")]
    assert {"nova-conductor", "nova-scheduler", "neutron-rpc-server", "nova-api",
            "glance-api"} <= set(services_)
    for name in services_:
        params = ini[f"resource:{name}"]["params"]
        env = next((ln.split("=", 1)[1] for ln in params.splitlines()
                    if ln.strip().startswith("environment")), "")
        assert f"PYTHONPATH={extras}" in env, (name, params)
    res = subprocess.run([str(openstack_venv / "bin" / "python"), "-c",
                          "import memcache; print(memcache.CLIENT)"],
                         env={"PYTHONPATH": str(extras)}, capture_output=True, text=True,
                         timeout=60, check=True)
    assert "stand-in" in res.stdout


READ_TRANSPORT = """
import json, sys
import configparser
from oslo_config import cfg
import oslo_messaging
out = {}
for path in sys.argv[1:]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(path)
    url = oslo_messaging.TransportURL.parse(cfg.CONF, ini.get("DEFAULT", "transport_url"))
    out[path] = [[h.hostname, h.port, h.username] for h in url.hosts]
print(json.dumps(out))
"""


def test_rabbit_clients_list_the_three_members_not_the_vip(openstack_venv, tmp_path):
    """oslo.messaging reads every transport_url as the three RabbitMQ members: a VIP
    move alone (mariadbd killed, the broker there still running) leaves each client
    on the broker it has, and a member that goes sends its clients to the next."""
    users = _lab_configs(openstack_venv, tmp_path, lambda ini: ini.get(
        "DEFAULT", "transport_url", fallback="").startswith("rabbit://"))
    read = _read_in_venv(openstack_venv, READ_TRANSPORT, users)
    assert {Path(p).name for p in read} >= {"nova.conf", "nova-compute.conf",
                                            "neutron.conf", "cinder.conf"}
    for path, hosts in read.items():
        assert hosts == [["arbitrator", 5672, controller.RABBIT_USER],
                         ["controller01", 5672, controller.RABBIT_USER],
                         ["controller02", 5672, controller.RABBIT_USER]], path


def test_migrate_rewrites_every_member_of_a_cell_transport_url():
    """The cell mapping's transport_url, as the lab writes it, keeps its three members
    through migrate's host rewrite (each mapped host replaced, credentials kept)."""
    from pacestack.migrate.nova import rewrite_hosts_url, url_hosts

    url = controller.transport_url(HOSTS, controller.Secrets("db", "mq", "admin"))
    assert url_hosts(url) == ["arbitrator", "controller01", "controller02"]
    new = rewrite_hosts_url(url, {"controller01": "ctl-a", "controller02": "ctl-b"})
    assert new == ("rabbit://openstack:mq@arbitrator:5672,openstack:mq@ctl-a:5672,"
                   "openstack:mq@ctl-b:5672/")


READ_NOVA_SHUTDOWN = """
import json, sys
from nova import conf, service
conf.CONF(["--config-file", sys.argv[1]], project="nova")
wait = service.Service._get_manager_shutdown_timeout(None)
print(json.dumps({"manager": wait, "tasks": wait - min(20, wait),
                  "graceful": conf.CONF.graceful_shutdown_timeout,
                  "fuzzy": conf.CONF.periodic_fuzzy_delay}))
"""


def test_nova_and_cinder_services_stop_after_their_rpcs_within_the_agents_wait(
        openstack_venv, tmp_path):
    """A standby TERMs nova-conductor mid-build: Nova's own code gives its in-progress
    tasks time to finish (with graceful_shutdown_timeout 20 it gave them 0 s and the
    build failed), and the agent, which reads graceful_shutdown_timeout from the same
    files, waits that long within the stop operation's 120 s."""
    from pacestack.agents.openstack_service import OpenStackServiceAgent

    etc = tmp_path / "etc"
    controller.write_configs(etc, tmp_path / "state", openstack_venv, None, HOSTS,
                             controller.Secrets("db", "mq", "admin"), None)
    nova = _read_in_venv(openstack_venv, READ_NOVA_SHUTDOWN, [str(etc / "nova.conf")])
    assert nova["tasks"] >= 15 and nova["graceful"] >= nova["manager"] + 10, nova
    for resource, graceful in (("nova-conductor", nova["graceful"]),
                               ("nova-scheduler", nova["graceful"]),
                               ("cinder-scheduler", 20)):
        params = controller.daemon_params(resource, openstack_venv, etc)
        agent = OpenStackServiceAgent(
            {"OCF_RESKEY_binary": params["binary"], "OCF_RESKEY_config": params["config"],
             "OCF_RESKEY_stop_timeout": params["stop_timeout"],
             "OCF_RESKEY_CRM_meta_timeout": "120000"}, action="stop")
        assert agent.graceful_seconds() == graceful, resource
        assert agent.stop_seconds() == graceful + 2, resource


def test_nova_runs_its_periodic_tasks_at_once(openstack_venv, tmp_path):
    """lab up waits for the scheduler's host discovery, a periodic task: Nova's
    default first delay is a random 0-60 s."""
    etc = tmp_path / "etc"
    controller.write_configs(etc, tmp_path / "state", openstack_venv, None, HOSTS,
                             controller.Secrets("db", "mq", "admin"), None)
    nova = _read_in_venv(openstack_venv, READ_NOVA_SHUTDOWN, [str(etc / "nova.conf")])
    assert nova["fuzzy"] == 0, nova


# each service's config files as oslo.config reads them, with oslo.log's options
READ_DEBUG = """
import json, sys
from oslo_config import cfg
from oslo_log import log
out = {}
for service, paths in json.loads(sys.argv[1]).items():
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    conf(args=[], default_config_files=paths, project="lab")
    out[service] = [conf.debug, "oslo.messaging=DEBUG" in conf.default_log_levels]
print(json.dumps(out))
"""
# the file an API reads in its OS_*_CONFIG_DIR when given no OS_*_CONFIG_FILES
DIR_ONLY = {"placement-api": "placement.conf", "glance-api": "glance-api.conf"}


def _service_files(etc: Path) -> dict[str, list[str]]:
    """Every OpenStack process of the whole-profile lab -> the files it reads, from the
    lab's own tables: the APIs' environment and argv, the daemons' and agents'
    config parameters, and the compute's command lines (stack.start_compute)."""
    from pacestack.cluster.lab import neutron_agents

    out: dict[str, list[str]] = {}
    for name, api in controller.WSGI.items():
        env = dict(api.env)
        names = [f for var, rel in env.items() if var.endswith("_FILES")
                 for f in rel.split(";")] + [a for a in api.argv if a.endswith(".conf")]
        if not names:
            names = [DIR_ONLY[name]]  # a new API that reads only a directory: say which file
        base = etc / next((rel for var, rel in env.items() if var.endswith("_DIR")), "")
        out[name] = [str(base / f) for f in names if not f.endswith("paste.ini")]
    for name in controller.DAEMONS:
        out[name] = controller.daemon_params(name, Path("/venv"), etc)["config"].split()
    for name in neutron_agents.AGENTS:
        out[name] = neutron_agents.agent_params(name, Path("/venv"), etc)["config"].split()
    out["cinder-volume"] = controller.cinder_volume_params(Path("/venv"), etc)["config"].split()
    argv = neutron_agents.agent_argv("neutron-openvswitch-agent", Path("/venv"), etc)
    out["compute: neutron-openvswitch-agent"] = [
        *(a for a in argv if a.endswith((".conf", ".ini"))),
        str(etc / f"openvswitch_agent-{HOSTS.arbitrator[0]}.ini")]  # the wrapper's
    out["compute: nova-compute"] = [a for a in stack.nova_compute_argv(Path("/venv"), etc)
                                    if a.endswith(".conf")]
    return out


def test_service_debug_sets_oslo_log_debug_in_every_service_config(openstack_venv, tmp_path):
    """``lab up --service-debug``: every OpenStack process the whole profile runs
    (APIs, daemons, agents, the compute's) reads debug = true from its own files, as
    oslo.config merges them; without it none does and no file names debug.
    RabbitMQ's file is not an oslo.config one and stays as it was."""
    glance = tmp_path / "glance" / "venv"
    wanted: dict[str, list[str]] = {}
    written: dict[bool, dict[str, configparser.ConfigParser]] = {}
    for debug in (True, False):
        etc = tmp_path / str(debug) / "etc"
        controller.write_configs(etc, tmp_path / str(debug) / "state", openstack_venv, glance,
                                 HOSTS, controller.Secrets("db", "mq", "admin"), None,
                                 debug=debug)
        files = {}
        for path in sorted([*etc.rglob("*.conf"), *etc.rglob("*.ini")]):
            if path.name in ("rabbitmq.conf", "nova-api-paste.ini"):
                continue
            ini = configparser.ConfigParser(interpolation=None)
            ini.read(path)
            files[str(path.relative_to(etc))] = ini
        written[debug] = files
        wanted.update({f"{debug} {name}": paths
                       for name, paths in _service_files(etc).items()})
        assert "debug" not in (etc / "rabbitmq.conf").read_text()
    assert {"keystone.conf", "glance/glance-api.conf", "placement.conf", "nova.conf",
            "nova-compute.conf", "neutron.conf", "cinder.conf", "openvswitch_agent.ini",
            "dhcp_agent.ini", "l3_agent.ini", "metadata_agent.ini"} <= \
        {name for name, ini in written[True].items() if ini.defaults()}
    for name, ini in written[True].items():
        if ini.defaults():  # configparser's view of a file's [DEFAULT]
            assert ini.getboolean("DEFAULT", "debug"), name
    for name, ini in written[False].items():
        assert "debug" not in ini.defaults() and \
            not any(ini.has_option(s, "debug") for s in ini.sections()), name
    for paths in wanted.values():
        assert all(Path(p).is_file() for p in paths), paths
    # every resource of the lab but the three that are no OpenStack service, and the
    # compute's two
    clones, singles = controller.resource_names(glance=True)
    assert {f"True {n}" for n in [*clones, *singles]
            if n not in ("memcached", "rabbitmq", "openvswitch")} | \
        {"True compute: nova-compute", "True compute: neutron-openvswitch-agent"} == \
        {k for k in wanted if k.startswith("True ")}
    read = _read_in_venv(openstack_venv, READ_DEBUG, [json.dumps(wanted)])
    assert read.keys() == wanted.keys()
    # debug on, and oslo.messaging's RPC lines with it; neither without the flag
    assert {k: v for k, v in read.items() if v != [k.startswith("True ")] * 2} == {}


def test_service_debug_in_the_small_labs_configs(openstack_venv, tmp_path):
    """The small lab (Keystone, the Neutron API, cinder-volume) logs at debug level too."""
    for debug in (True, False):
        paths = services.write_openstack_configs(tmp_path / str(debug), tmp_path / "state",
                                                 openstack_venv, "db", None, debug=debug)
        for name in ("keystone.conf", "neutron.conf", "cinder.conf"):
            ini = configparser.ConfigParser(interpolation=None)
            ini.read(paths[name])
            assert ini.getboolean("DEFAULT", "debug", fallback=False) is debug, name


READ_QUEUE_MANAGER = """
import json, sys
from oslo_config import cfg
from oslo_messaging._drivers import impl_rabbit
out = {}
for service, paths in json.loads(sys.argv[1]).items():
    conf = cfg.ConfigOpts()
    conf.register_opts(impl_rabbit.rabbit_opts, group="oslo_messaging_rabbit")
    conf(args=[], default_config_files=paths, project="lab")
    out[service] = conf.oslo_messaging_rabbit.use_queue_manager
print(json.dumps(out))
"""


def test_the_rpc_servers_and_only_they_use_the_queue_manager(openstack_venv, tmp_path):
    """The processes that serve RPC topics (conductor, schedulers, cinder-volume and
    -backup, the Neutron RPC server, the Neutron agents on the controllers and the
    compute, nova-compute) read use_queue_manager = true, as oslo.messaging merges
    their files: their close() then deletes no fanout queue, whose wait read and
    acknowledged what the broker had handed the stopped listener. The APIs (under
    gunicorn: one process name for every worker) and the rest do not."""
    etc = tmp_path / "etc"
    controller.write_configs(etc, tmp_path / "state", openstack_venv, tmp_path / "glance",
                             HOSTS, controller.Secrets("db", "mq", "admin"), None)
    read = _read_in_venv(openstack_venv, READ_QUEUE_MANAGER,
                         [json.dumps(_service_files(etc))])
    assert sorted(k for k, v in read.items() if v) == [
        "cinder-backup", "cinder-scheduler", "cinder-volume",
        "compute: neutron-openvswitch-agent", "compute: nova-compute",
        "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent",
        "neutron-openvswitch-agent", "neutron-rpc-server", "nova-conductor",
        "nova-scheduler"]
    assert not any(read[name] for name in controller.WSGI)
