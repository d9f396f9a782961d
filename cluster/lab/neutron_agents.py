"""The Neutron agents of the whole-profile lab and the Open vSwitch they drive.

Open vSwitch runs in every lab host with the userspace (netdev) datapath, which
needs no kernel module: ovsdb-server and ovs-vswitchd started by one script, a
Pacemaker clone on the controllers (a real node's systemd starts
openvswitch-switch; a lab node has no systemd) and a plain daemon on the compute.
Its database lives in the host's /run: a rebooted host starts with an empty
switch and the agent builds its bridges again.

The agents keep their state (DHCP namespaces' files, the metadata socket, locks)
in the host's own /run/neutron, not in the state directory the hosts share: two
DHCP agents writing one network's files, or two metadata agents binding one
socket, would break each other. Each host's Open vSwitch agent needs its own
tunnel address, so a wrapper adds the host's own file (named after the host) to
the shared ones.

Plain text builders: controller.py writes them and names the resources.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from .services import RPC_SERVER_CONF, _ini

OVS_SCRIPT = "lab-openvswitch"
OVS_AGENT_SCRIPT = "lab-neutron-openvswitch-agent"
# resource -> (binary in the venv, its own config file after neutron.conf)
AGENTS = {
    "neutron-openvswitch-agent": ("neutron-openvswitch-agent", "openvswitch_agent.ini"),
    "neutron-dhcp-agent": ("neutron-dhcp-agent", "dhcp_agent.ini"),
    "neutron-l3-agent": ("neutron-l3-agent", "l3_agent.ini"),
    "neutron-metadata-agent": ("neutron-metadata-agent", "metadata_agent.ini"),
}
# agent_type in Neutron's agents API -> resource, what `network agent list` shows
AGENT_TYPES = {
    "Open vSwitch agent": "neutron-openvswitch-agent",
    "DHCP agent": "neutron-dhcp-agent",
    "L3 agent": "neutron-l3-agent",
    "Metadata agent": "neutron-metadata-agent",
}
STATE = "/run/neutron"

_OVS = """\
#!/bin/sh
# Open vSwitch of this lab host, userspace datapath; stops both daemons on TERM.
set -e
run=/run/openvswitch
export OVS_RUNDIR=$run OVS_DBDIR=$run OVS_LOGDIR=/var/log/openvswitch
mkdir -p $run $OVS_LOGDIR
[ -f $run/conf.db ] || ovsdb-tool create $run/conf.db /usr/share/openvswitch/vswitch.ovsschema
# the managers the agents set (ovsdb's tcp 127.0.0.1:6640) come from the database
ovsdb-server $run/conf.db --remote=punix:$run/db.sock \\
    --remote=db:Open_vSwitch,Open_vSwitch,manager_options \\
    --pidfile=$run/ovsdb-server.pid --log-file &
db=$!
trap 'kill $db 2>/dev/null' EXIT
ovs-vsctl --retry --timeout=20 --no-wait init
ovs-vswitchd unix:$run/db.sock --pidfile=$run/ovs-vswitchd.pid --log-file &
vs=$!
trap 'kill $vs $db 2>/dev/null; wait' TERM INT
# either daemon ending ends the script: the agent's monitor sees it
wait $vs
"""


def ovs_script() -> str:
    return _OVS


def ovs_agent_script(venv: Path, config_dir: Path) -> str:
    return ("#!/bin/sh\n# the host's own tunnel address: its file after the shared ones\n"
            f"exec {shlex.quote(str(venv / 'bin' / 'neutron-openvswitch-agent'))} \"$@\" "
            f"--config-file {shlex.quote(str(config_dir))}/openvswitch_agent-$(hostname).ini\n")


def host_file(address: str) -> dict[str, dict[str, str]]:
    return {"ovs": {"local_ip": address}}


def configs(vip_name: str, metadata_secret: str) -> dict[str, dict[str, dict[str, str]]]:
    """The agents' own files (read after neutron.conf)."""
    # as root already: "env" runs privsep-helper and ip without sudo, from PATH
    common = {"state_path": STATE, "use_stderr": "true"}
    agent = {"root_helper": "env", "report_interval": "5"}
    locks = {"lock_path": f"{STATE}/lock"}
    return {
        "openvswitch_agent.ini": {
            "DEFAULT": common,
            "ovs": {"datapath_type": "netdev", "integration_bridge": "br-int",
                    "tunnel_bridge": "br-tun", "of_listen_address": "127.0.0.1"},
            "agent": {**agent, "tunnel_types": "vxlan"},
            "securitygroup": {"firewall_driver": "openvswitch"},
            "oslo_concurrency": locks,
        },
        "dhcp_agent.ini": {
            # no haproxy here: no metadata proxy in the DHCP namespaces
            "DEFAULT": {**common, "interface_driver": "openvswitch",
                        "enable_isolated_metadata": "false"},
            "agent": agent,
            "ovs": {"integration_bridge": "br-int"},
            "oslo_concurrency": locks,
        },
        "l3_agent.ini": {
            "DEFAULT": {**common, "interface_driver": "openvswitch", "agent_mode": "legacy",
                        "enable_metadata_proxy": "false"},
            "agent": agent,
            "ovs": {"integration_bridge": "br-int"},
            "oslo_concurrency": locks,
        },
        "metadata_agent.ini": {
            "DEFAULT": {**common, "nova_metadata_host": vip_name,
                        "metadata_proxy_shared_secret": metadata_secret,
                        "metadata_workers": "1"},
            "agent": agent,
            "oslo_concurrency": locks,
        },
    }


def write(config_dir: Path, venv: Path, vip_name: str, metadata_secret: str,
          hosts: list[tuple[str, str]], writer, debug: bool = False) -> None:
    """Every agent file, each host's tunnel file and the two scripts (``debug``: the
    agents log at debug level)."""
    for name, sections in configs(vip_name, metadata_secret).items():
        writer(config_dir / name, _ini(sections, debug))
    for host, address in hosts:
        writer(config_dir / f"openvswitch_agent-{host}.ini", _ini(host_file(address)))
    for name, text in ((OVS_SCRIPT, ovs_script()),
                       (OVS_AGENT_SCRIPT, ovs_agent_script(venv, config_dir))):
        path = config_dir / name
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0o755)


def _path(venv: Path) -> str:
    # privsep-helper from the venv; ip, ovs-vsctl, dnsmasq from the system
    return f"PATH={venv}/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def ovs_params(config_dir: Path) -> dict[str, str]:
    return {"binary": str(config_dir / OVS_SCRIPT), "environment": _path(Path("/usr")),
            "pid": "/run/pacestack-openvswitch.pid",
            "log": "/var/log/pacestack-openvswitch.log", "stop_timeout": "10"}


def _exe(resource: str, venv: Path, config_dir: Path) -> Path:
    if resource == "neutron-openvswitch-agent":
        return config_dir / OVS_AGENT_SCRIPT
    return venv / "bin" / AGENTS[resource][0]


def agent_argv(resource: str, venv: Path, config_dir: Path) -> list[str]:
    """The agent's command line outside Pacemaker (the compute host's)."""
    argv = [str(_exe(resource, venv, config_dir))]
    for name in _config_files(resource):
        argv += ["--config-file", str(config_dir / name)]
    return argv


def _config_files(resource: str) -> tuple[str, str, str]:
    return ("neutron.conf", AGENTS[resource][1], RPC_SERVER_CONF)


def agent_params(resource: str, venv: Path, config_dir: Path) -> dict[str, str]:
    # the Open vSwitch agent leaves its loop within 2 s of TERM but its process stays
    # (its OpenFlow controller's threads): killed after 5 s, not after 15
    stop = "5" if resource == "neutron-openvswitch-agent" else "10"
    return {"binary": str(_exe(resource, venv, config_dir)),
            "config": " ".join(str(config_dir / n) for n in _config_files(resource)),
            "environment": _path(venv),
            "pid": f"/run/pacestack-{resource}.pid",
            "log": f"/var/log/pacestack-{resource}.log", "stop_timeout": stop}


def compute_env(venv: Path) -> dict[str, str]:
    return {"PATH": _path(venv).split("=", 1)[1]}
