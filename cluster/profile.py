"""The built-in controller stack: what a description with just nodes and a VIP gets.

Every service is ``ocf:pacestack:openstack-service`` (or the Galera/cinder-volume
agents), not ``systemd:UNIT``: pcs cannot read a systemd unit's meta-data where
systemd does not run (the machine planning the change is often not a node), and
the pacestack agent runs the daemon itself when there is no systemd. Distribution
daemons that need their unit's environment (apache2, memcached, rabbitmq-server)
keep it through the agent's ``systemd_unit`` parameter.

The services are expected to reach the database, RabbitMQ and Keystone through the
VIP (the description's ``[vip] name``) and memcached on every controller: nothing
is tied to its own node's Galera, broker, cache or Keystone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pacestack.cluster.description import Resource

SERVICE = "ocf:pacestack:openstack-service"
GALERA = "ocf:pacestack:galera"
CINDER_VOLUME = "ocf:pacestack:cinder-volume"

# the API services a client reaches through the VIP
API_SERVICES = ("apache", "glance-api", "nova-api", "neutron-server", "cinder-api")

# What the services reach over the network, never on their own node only: the
# database, the message broker and Keystone through the VIP (the VIP runs with
# them: the description's default [vip] fronts), memcached on every controller
# (memcached_servers lists them all), neutron-server and cinder-scheduler over RPC.
# A service runs beside none of these, and reconnects to them on its own: a restart
# of one of them on a node restarts nothing else there.
REACHED_OVER_THE_NETWORK = ("galera", "rabbitmq", "memcached", "apache", "neutron-server",
                            "cinder-scheduler")


def _daemon(binary: str, configs: Sequence[str], user: str, url: str | None = None
            ) -> dict[str, str]:
    params = {"binary": binary, "config": " ".join(configs), "user": user}
    if url:
        params["monitor_url"] = url
    return params


def controller_stack(nodes: Sequence[tuple[str, str]], shared_host: str = "controller",
                     arbitrator: str | None = None) -> list[Resource]:
    """The standard HA controller: Galera, memcached, RabbitMQ, the OpenStack services.

    ``nodes`` are (name, address) pairs; ``arbitrator`` is garbd's address or host.
    """
    from pacestack.cluster.description import Resource

    gcomm = ",".join([*(addr for _, addr in nodes), *([arbitrator] if arbitrator else [])])
    host_map = ";".join(f"{name}:{addr}" for name, addr in nodes)
    nova = ("/etc/nova/nova.conf",)
    neutron = "/etc/neutron/neutron.conf"
    cinder = ("/etc/cinder/cinder.conf",)
    # only direct dependencies: apache already starts after (and runs with) Promoted
    # Galera, so what follows apache follows Galera too; fewer constraints, same result
    mq_auth = ("rabbitmq", "apache")
    clone = {"interleave": "true"}

    def svc(name: str, params: dict[str, str], after: Sequence[str], mode: str = "clone",
            agent: str = SERVICE) -> Resource:
        # colocated with what it starts after, not only ordered: the scheduler places
        # by colocation, so without it the VIP can stay on a node where an ordering
        # dependency failed and the services it fronts cannot run (verify finds this).
        # Not with what the services reach over the network: tied to the node's own
        # Galera, a mariadbd restart stopped every service of its node, and a
        # Keystone restart every service after it.
        with_ = tuple(a for a in after if a not in REACHED_OVER_THE_NETWORK)
        return Resource(name=name, agent=agent, params=params, mode=mode, after=tuple(after),
                        with_=with_, clone_meta=dict(clone) if mode != "single" else {},
                        clients_reconnect=name in REACHED_OVER_THE_NETWORK)

    return [
        Resource(name="galera", agent=GALERA,
                 params={"wsrep_cluster_address": f"gcomm://{gcomm}",
                         "cluster_host_map": host_map},
                 mode="promotable", clients_reconnect=True,
                 clone_meta={"interleave": "true", "notify": "true",
                             "promoted-max": str(len(nodes))}),
        svc("memcached", {"systemd_unit": "memcached"}, ()),
        svc("rabbitmq", {"systemd_unit": "rabbitmq-server"}, ()),
        # Keystone and Horizon are both WSGI applications of one apache2
        svc("apache", {"systemd_unit": "apache2", "monitor_url": "http://127.0.0.1:5000/v3"},
            ("galera", "memcached")),
        svc("glance-api", _daemon("/usr/bin/glance-api", ("/etc/glance/glance-api.conf",),
                                  "glance", "http://127.0.0.1:9292/healthcheck"),
            ("apache",)),
        svc("nova-api", _daemon("/usr/bin/nova-api", nova, "nova", "http://127.0.0.1:8774/"),
            mq_auth),
        svc("nova-scheduler", _daemon("/usr/bin/nova-scheduler", nova, "nova"), mq_auth),
        svc("nova-conductor", _daemon("/usr/bin/nova-conductor", nova, "nova"), mq_auth),
        svc("nova-novncproxy", _daemon("/usr/bin/nova-novncproxy", nova, "nova"), mq_auth),
        svc("neutron-server", _daemon(
            "/usr/bin/neutron-server", (neutron, "/etc/neutron/plugins/ml2/ml2_conf.ini"),
            "neutron", "http://127.0.0.1:9696/"), mq_auth),
        svc("neutron-openvswitch-agent", _daemon(
            "/usr/bin/neutron-openvswitch-agent",
            (neutron, "/etc/neutron/plugins/ml2/openvswitch_agent.ini"), "neutron"),
            ("neutron-server",)),
        svc("neutron-dhcp-agent", _daemon(
            "/usr/bin/neutron-dhcp-agent", (neutron, "/etc/neutron/dhcp_agent.ini"), "neutron"),
            ("neutron-openvswitch-agent",)),
        svc("neutron-l3-agent", _daemon(
            "/usr/bin/neutron-l3-agent", (neutron, "/etc/neutron/l3_agent.ini"), "neutron"),
            ("neutron-openvswitch-agent",)),
        svc("neutron-metadata-agent", _daemon(
            "/usr/bin/neutron-metadata-agent", (neutron, "/etc/neutron/metadata_agent.ini"),
            "neutron"), ("neutron-openvswitch-agent",)),
        svc("cinder-api", _daemon("/usr/bin/cinder-api", cinder, "cinder",
                                  "http://127.0.0.1:8776/"), mq_auth),
        svc("cinder-scheduler", _daemon("/usr/bin/cinder-scheduler", cinder, "cinder"),
            mq_auth),
        # stateful: one instance, under the shared host name on either controller
        svc("cinder-volume", {**_daemon("/usr/bin/cinder-volume", cinder, "cinder"),
                              "host": shared_host},
            ("cinder-scheduler",), mode="single", agent=CINDER_VOLUME),
        svc("cinder-backup", _daemon("/usr/bin/cinder-backup", cinder, "cinder"),
            ("cinder-volume",), mode="single"),
    ]
