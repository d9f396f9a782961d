"""oslo.config options of ``pacestack migrate`` (namespace ``pacestack.migrate``)."""

from __future__ import annotations

from oslo_config import cfg

migrate_group = cfg.OptGroup(
    "migrate",
    title="Database rewrites of the cutover",
    help="How `pacestack migrate` reaches the new cloud's databases, journals its "
    "changes and checks the result.",
)

migrate_opts = [
    cfg.StrOpt("connection", secret=True,
               help="URL of a database user with rights on every service database and the "
               "journal database (mysql+pymysql://root:PW@controller.domain/). Unset: the "
               "services' own URLs are used; they must then name one server and one user."),
    cfg.BoolOpt("allow_other_server", default=False,
                help="Let [migrate] connection reach another server than the one the "
                "services' own URLs name (not the same server under another name, nor a "
                "member of the same Galera cluster). Off: such a run is refused, because "
                "pointed at the old controller migrate would rewrite the old cloud. "
                "--allow-other-server does the same for one command."),
    cfg.StrOpt("journal_database", default="pacestack", regex=r"^[A-Za-z0-9_$-]{1,64}$",
               help="Database on the same server that holds runs and before-images "
               "(letters, digits, '_', '-' and '$', at most 64)."),
    cfg.IntOpt("batch_size", default=5000, min=1, max=100000,
               help="Rows changed per transaction."),
    cfg.IntOpt("apply_connections", default=2, min=1, max=8,
               help="Batches of independent rows (ports, instances, volumes, endpoints) "
               "apply commits at once, each on its own connection to the same server; "
               "networks, services and mappings always go alone, in plan order. 1: one "
               "connection, everything in plan order."),
    cfg.IntOpt("lock_stale_seconds", default=30, min=3,
               help="Seconds without a heartbeat after which the journal's run lock is "
               "reported stale and may be taken over with --break-lock HOST:PID."),
    cfg.StrOpt("mapping_file", default="/etc/pacestack/migrate-mapping.conf",
               help="The mapping file (docs/migrate-mapping.md)."),
    cfg.StrOpt("openstack_bin_dir", default="/usr/bin",
               help="Where neutron-status, cinder-status, nova-status and placement-status "
               "are installed (a venv's bin/ on venv installs)."),
    cfg.StrOpt("openstack_python", default="/usr/bin/python3",
               help="Python interpreter that imports nova; verify reads rows back through "
               "nova's own objects with it."),
    cfg.IntOpt("status_check_timeout", default=300, min=10,
               help="Seconds allowed for each upstream `*-status upgrade check`."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if "migrate" not in conf:
        conf.register_group(migrate_group)
    conf.register_opts(migrate_opts, group=migrate_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(migrate_group, migrate_opts)]
