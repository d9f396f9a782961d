"""The whole-profile lab's generated service configs, read by the pinned venv's own
oslo.config, oslo.messaging and keystonemiddleware (no lab started). Budget: ~10 s."""

from __future__ import annotations

import configparser
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from pacestack.cluster.lab import controller, services

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
    out[path] = [r.heartbeat_timeout_threshold, r.heartbeat_rate]
print(json.dumps(out))
"""


def test_rabbit_clients_send_a_heartbeat_every_few_seconds(openstack_venv, tmp_path):
    """Independent brokers behind the VIP: a client still connected to the old
    broker notices the move only when it sends (the new holder resets it); until
    then what others publish for it is dropped. Its idle heartbeat is that send."""
    users = _lab_configs(openstack_venv, tmp_path, lambda ini: ini.get(
        "DEFAULT", "transport_url", fallback="").startswith("rabbit://"))
    assert {Path(p).name for p in users} >= {"nova.conf", "nova-compute.conf",
                                             "neutron.conf", "cinder.conf"}
    for path, (threshold, rate) in _read_in_venv(openstack_venv, READ_RABBIT, users).items():
        # py-amqp sends a heartbeat when nothing was sent for threshold / rate seconds
        assert threshold / rate <= 5, (path, threshold, rate)


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
