"""oslo.config options of ``pacestack migrate rehome`` (group ``[rehome]``)."""

from __future__ import annotations

from oslo_config import cfg

rehome_group = cfg.OptGroup(
    "rehome",
    title="Moving instances to the new compute hosts",
    help="How `pacestack migrate rehome` reaches the new cloud's APIs and the old "
    "cloud's records. The new cloud's databases are found as for `pacestack migrate`.",
)

rehome_opts = [
    cfg.StrOpt("os_cloud",
               help="clouds.yaml entry of the new cloud (as `openstack --os-cloud`); "
               "--os-cloud overrides it. Unset: the OS_CLOUD environment variable."),
    cfg.StrOpt("old_nova_connection", secret=True,
               help="URL of the old cloud's nova database (read only): its record of each "
               "instance's power state. Unset: the old cloud is treated as unreachable."),
    cfg.StrOpt("old_neutron_connection", secret=True,
               help="URL of the old cloud's neutron database (read only): its record of "
               "ports (MAC, fixed IPs, security groups) and routers."),
    cfg.IntOpt("overlay_mtu", min=576, max=9000,
               help="MTU for self-service (VXLAN) networks, such as the seed's 1422. Unset: "
               "the underlay MTU (neutron.conf global_physnet_mtu) minus 50 (VXLAN/IPv4) "
               "or 70 (IPv6)."),
    cfg.IntOpt("wait_timeout", default=300, min=5,
               help="Seconds to wait for one instance to reach a state (ACTIVE, SHUTOFF)."),
    cfg.IntOpt("parallel", default=1, min=1, max=64,
               help="Instances handled at the same time (--parallel overrides it)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    if "rehome" not in conf:
        conf.register_group(rehome_group)
    conf.register_opts(rehome_opts, group=rehome_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(rehome_group, rehome_opts)]
