"""Ports of one instance: compare the three records and decide the repair.

For each of the instance's VIFs there are three records: Nova's info cache
(what the guest will be plugged with), Neutron's port and binding (what the
network serves), and the old cloud's port (what the guest had). The seed's
operator detached and re-attached every port; most of that is not needed:

- port bound to another host, or as ``bridge`` (linuxbridge): **rebind** it to
  the target host through the Networking API; Neutron's OVS driver binds it as
  ``ovs`` and Nova's hard reboot rebuilds its cache from it. No detach, so Nova
  never gets the chance to delete a port it created.
- port gone from Neutron: **recreate** it from the old cloud's record (same MAC,
  fixed IPs, network, security groups, device owner) and attach it.
- still wrong after the reboot (cache not ``ovs``, or the port not on the
  instance): **replug** — set ``preserve_on_delete`` on the VIF in Nova's info
  cache first (Nova deletes a port it created on detach otherwise), then detach
  and attach.
"""

from __future__ import annotations

import dataclasses
import json

from pacestack.migrate import neutron, nova

OVS = neutron.VIF_TYPE_OVS
OVERLAY_TYPES = ("vxlan", "gre", "geneve")
OVERHEAD = neutron.VXLAN_OVERHEAD


@dataclasses.dataclass
class Repair:
    port: str  # the port id in the old cloud (or in nova's cache)
    mac: str
    action: str  # ok | rebound | recreated | replugged | attached
    detail: str = ""
    new_port: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def overlay_mtu(given: int | None, underlay: int, ip_version: int = 4) -> int:
    """The MTU a self-service network gets: the given one (the seed's 1422), or
    the underlay minus the encapsulation overhead."""
    return given if given else underlay - OVERHEAD.get(ip_version, 50)


def needs_rebind(port, host: str) -> str | None:
    """Why a Neutron port must be rebound to host, or None when it is right."""
    if port.binding_host_id != host:
        return f"bound to {port.binding_host_id or 'no host'}"
    if port.binding_vif_type != OVS:
        return f"bound as {port.binding_vif_type}"
    return None


def create_attrs(old) -> dict:
    """Port attributes that recreate the old cloud's port (an oldcloud.OldPort)."""
    attrs = {"network_id": old.network_id, "mac_address": old.mac_address,
             "fixed_ips": [dict(ip) for ip in old.fixed_ips],
             "device_owner": old.device_owner, "admin_state_up": old.admin_state_up,
             "name": old.name}
    if old.project_id:
        attrs["project_id"] = old.project_id
    if old.security_groups:
        attrs["security_group_ids"] = list(old.security_groups)
    return attrs


def cache_vifs(network_info: str | None) -> list[dict]:
    """The readable VIFs of nova's info cache (none when nova could not read it)."""
    return [v for v in nova.network_info_vifs(network_info) or [] if isinstance(v, dict)]


def set_preserve(network_info: str, port_ids: set[str]) -> tuple[str, list[str]]:
    """network_info with preserve_on_delete set on these VIFs; which ones changed."""
    vifs = json.loads(network_info)
    changed = []
    for vif in vifs:
        if isinstance(vif, dict) and vif.get("id") in port_ids and \
                not vif.get("preserve_on_delete"):
            vif["preserve_on_delete"] = True
            changed.append(vif["id"])
    return json.dumps(vifs), changed
