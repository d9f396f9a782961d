"""The cluster description's options, for oslo.config and ``pacestack config sample|check``.

The description is an ordinary pacestack configuration file. Fixed groups:
``[cluster]``, ``[vip]``, ``[arbitrator]``. Repeated, operator-named groups use the
``:NAME`` template convention of pacestack/options.py: ``[resource:NAME]`` (one per
managed service, like cinder's backends) and ``[fencing:NAME]`` (one per fencing
device).
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg, types

from pacestack.options import TEMPLATE_SUFFIX

MODES = ("clone", "single", "promotable")


class KeyValueLines(types.ConfigType):
    """``key=value`` pairs, one per line (continuation lines are indented).

    Not oslo.config's DictOpt: agent parameters such as Galera's
    ``gcomm://controller01,controller02`` contain commas and colons.
    """

    def __init__(self) -> None:
        super().__init__(type_name="key=value lines")

    def __call__(self, value: Any) -> dict[str, str]:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        out: dict[str, str] = {}
        for line in str(value).splitlines():
            line = line.strip()
            if not line:
                continue
            key, sep, val = line.partition("=")
            key = key.strip()
            if not sep or not key or any(c.isspace() for c in key):
                raise ValueError(f"expected key=value, got {line!r}")
            if key in out:
                raise ValueError(f"{key} is given twice")
            out[key] = val.strip()
        return out

    def _formatter(self, value: Any) -> str:
        return "\n".join(f"{k}={v}" for k, v in (value or {}).items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyValueLines)


def _pairs(name: str, help_text: str) -> cfg.Opt:
    return cfg.Opt(name, type=KeyValueLines(), default={}, help=help_text
                   + " One key=value per line, continuation lines indented.")

cluster_group = cfg.OptGroup(
    "cluster", title="The Pacemaker cluster",
    help="The controller nodes and how pacestack builds their Pacemaker configuration.")

cluster_opts = [
    cfg.StrOpt("name", default="openstack",
               help="Cluster name written to corosync.conf."),
    cfg.ListOpt("nodes", default=[],
                help="Pacemaker node names, in order (for example controller01,controller02)."),
    cfg.ListOpt("addresses", default=[],
                help="Corosync ring address of each node, in the same order as nodes."),
    cfg.StrOpt("profile", default="controller",
               choices=[("controller", "VIP, Galera, memcached, RabbitMQ and the OpenStack "
                         "controller services"),
                        ("none", "only the [resource:NAME] groups")],
               help="Built-in resources: 'controller' adds the standard OpenStack controller "
               "stack (any entry can be overridden or disabled with a [resource:NAME] group); "
               "'none' uses only the [resource:NAME] groups of the file."),
    cfg.StrOpt("shared_host", default="controller",
               help="The host name both controllers use for cinder-volume and cinder-backup "
               "(cinder.conf [DEFAULT] host), so volumes stay manageable after a failover."),
    cfg.StrOpt("corosync_conf",
               help="Where `pacestack cluster apply` writes corosync.conf for the nodes "
               "(unset: corosync.conf is not written)."),
]

vip_group = cfg.OptGroup(
    "vip", title="The virtual IP",
    help="The address clients use (its name is what the Keystone endpoints point at).")

# what the built-in profile's clients reach through the VIP: it must run with them
VIP_FRONTS = ("galera", "rabbitmq", "apache", "glance-api", "nova-api", "neutron-server",
              "cinder-api")

vip_opts = [
    cfg.IPOpt("address", help="The virtual IP address."),
    cfg.IntOpt("cidr_netmask", default=24, min=1, max=128, help="Its prefix length."),
    cfg.StrOpt("nic", help="Interface to put it on (unset: the one routing the subnet)."),
    cfg.HostnameOpt("name", default="controller.domain",
                    help="The DNS name of the VIP; every endpoint must use it."),
    cfg.StrOpt("resource", default="vip", help="The Pacemaker resource id of the VIP."),
    cfg.ListOpt("fronts", default=list(VIP_FRONTS),
                help="Resources the VIP fronts: it must always run where they run "
                "(names that are disabled or absent are ignored). The built-in profile's "
                "services reach the database and the broker through the VIP."),
]

arbitrator_group = cfg.OptGroup(
    "arbitrator", title="Galera arbitrator",
    help="A third host running garbd, so one surviving controller keeps Galera Primary; "
    "for the same reason the third member of the RabbitMQ cluster (quorum queues need "
    "two of three members), outside Pacemaker as garbd is.")

arbitrator_opts = [
    cfg.HostnameOpt("host", help="Its host name (unset: no arbitrator)."),
    cfg.IPOpt("address", help="Its address, added to Galera's cluster address list."),
]

resource_group = cfg.OptGroup(
    "resource" + TEMPLATE_SUFFIX, title="A managed resource",
    help="One group per resource, for example [resource:nova-api]. A group named like a "
    "built-in profile entry overrides only the options it sets.")

resource_opts = [
    cfg.StrOpt("agent",
               help="Resource agent: ocf:PROVIDER:TYPE (ocf:pacestack:openstack-service, "
               "ocf:heartbeat:IPaddr2, ...) or systemd:UNIT."),
    _pairs("params", "Agent parameters."),
    cfg.StrOpt("mode", default="clone",
               choices=[("clone", "one instance on every controller"),
                        ("single", "one active instance (stateful services)"),
                        ("promotable", "on every controller, promoted by the agent")],
               help="clone: on every controller; single: one active instance; "
               "promotable: on every controller, promoted where the agent says so."),
    cfg.ListOpt("after", default=[],
                help="Resources this one starts after (promoted, for promotable ones)."),
    cfg.ListOpt("with", default=[],
                help="Resources this one must run with (on the same node)."),
    cfg.BoolOpt("clients_reconnect", default=False,
                help="What starts after this resource reconnects to it on its own "
                "(a database, a message broker, a cache): their ordering is "
                "symmetrical=false, so they start only after it but a restart of this one "
                "alone stops none of them; an Optional stop order still stops them first "
                "when one transition stops both on a node (standby)."),
    _pairs("meta", "Extra meta attributes of the resource."),
    _pairs("clone_meta", "Extra meta attributes of its clone (clone and promotable modes)."),
    cfg.IntOpt("monitor_interval", min=1,
               help="Seconds between monitors (unset: the agent's own monitor operations)."),
    cfg.BoolOpt("enabled", default=True,
                help="false removes this resource (for example a built-in profile entry)."),
]

fencing_group = cfg.OptGroup(
    "fencing" + TEMPLATE_SUFFIX, title="A fencing device",
    help="One group per stonith device, for example [fencing:ipmi-controller01]. "
    "Without any, stonith-enabled is false and verify/preflight warn.")

fencing_opts = [
    cfg.StrOpt("agent", help="Fence agent name, for example fence_ipmilan."),
    _pairs("params", "Fence agent parameters (pcmk_host_list, ip, ...)."),
]

FIXED_GROUPS = {
    "cluster": (cluster_group, cluster_opts),
    "vip": (vip_group, vip_opts),
    "arbitrator": (arbitrator_group, arbitrator_opts),
}
TEMPLATES = {
    "resource": resource_opts,
    "fencing": fencing_opts,
}


def register_opts(conf: cfg.ConfigOpts) -> None:
    for group, opts in FIXED_GROUPS.values():
        conf.register_group(group)
        conf.register_opts(opts, group=group)


def register_named_group(conf: cfg.ConfigOpts, kind: str, name: str) -> str:
    """Register one ``[kind:name]`` group (found in the files) and return its name."""
    gname = f"{kind}:{name}"
    conf.register_group(cfg.OptGroup(gname))
    conf.register_opts(TEMPLATES[kind], group=gname)
    return gname


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """oslo.config.opts entry point for namespace ``pacestack.cluster``."""
    return [(group, opts) for group, opts in FIXED_GROUPS.values()] + [
        (resource_group, resource_opts),
        (fencing_group, fencing_opts),
    ]

