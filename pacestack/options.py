"""Options shared by every part: where the OpenStack services' own config files
are, and optional explicit database URLs.

Each part registers its own groups in its own ``options`` module and lists them
under the ``oslo.config.opts`` entry point group; ``pacestack config sample``
collects every namespace whose name is ``pacestack`` or starts with
``pacestack.``. Group names ending in ``:NAME`` are templates for repeated,
operator-named groups (``[resource:keystone]``, like cinder's backends).
"""

from __future__ import annotations

from oslo_config import cfg

TEMPLATE_SUFFIX = ":NAME"

openstack_group = cfg.OptGroup(
    "openstack",
    title="OpenStack service configuration files",
    help="Where pacestack finds the services' own config files. Database credentials are "
    "read from their [database] connection options, never taken from the command line.",
)

openstack_opts = [
    cfg.StrOpt("keystone_config", default="/etc/keystone/keystone.conf",
               help="keystone.conf; its [database] connection names the Keystone database."),
    cfg.StrOpt("neutron_config", default="/etc/neutron/neutron.conf",
               help="neutron.conf; its [database] connection names the Neutron database."),
    cfg.StrOpt("ml2_config", default="/etc/neutron/plugins/ml2/ml2_conf.ini",
               help="ml2_conf.ini; its VLAN and VXLAN ranges bound the segmentation ids "
               "a migration may assign."),
    cfg.StrOpt("cinder_config", default="/etc/cinder/cinder.conf",
               help="cinder.conf; its [database] connection and host options."),
    cfg.StrOpt("nova_config", default="/etc/nova/nova.conf",
               help="nova.conf; its [database] and [api_database] connections."),
    cfg.StrOpt("placement_config", default="/etc/placement/placement.conf",
               help="placement.conf; its [placement_database] connection."),
]

database_group = cfg.OptGroup(
    "database",
    title="Explicit database URLs",
    help="Optional oslo.db style URLs (mysql+pymysql://USER:PASSWORD@HOST:PORT/DB) that "
    "override what is read from the services' config files. Keep this file mode 0600.",
)

SERVICE_DATABASES = ("keystone", "neutron", "cinder", "nova", "nova_api", "placement")

database_opts = [
    cfg.StrOpt(f"{name}_connection", secret=True,
               help=f"URL of the {name} database; unset means: read it from the service's "
               "own config file.")
    for name in SERVICE_DATABASES
] + [
    cfg.IntOpt("connect_timeout", default=10, min=1, max=600,
               help="Seconds to wait for a database server to answer before giving up."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(openstack_group)
    conf.register_opts(openstack_opts, group=openstack_group)
    conf.register_group(database_group)
    conf.register_opts(database_opts, group=database_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """oslo.config.opts entry point for namespace ``pacestack``."""
    return [(openstack_group, openstack_opts), (database_group, database_opts)]
