"""The old cloud's record, read from its databases (read only).

The old controller keeps running while instances move one by one (the seed's
case), so its nova database says whether an instance is still running there,
and its neutron database holds every port as it was: the data a port that the
new cloud lost is recreated from.
"""

from __future__ import annotations

import dataclasses
import threading

from pacestack import db
from pacestack.errors import RuntimeFailure

ROUTER_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                 "network:ha_router_replicated_interface")
SHUTDOWN = 4  # nova.compute.power_state.SHUTDOWN
SHUTOFF_STATES = ("stopped",)


@dataclasses.dataclass
class OldPort:
    id: str
    network_id: str
    mac_address: str
    fixed_ips: list[dict]  # [{"subnet_id", "ip_address"}]
    security_groups: list[str]
    device_owner: str
    project_id: str
    name: str
    admin_state_up: bool
    binding_host: str | None
    vif_type: str | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class OldInstance:
    uuid: str
    host: str | None
    vm_state: str
    power_state: int | None

    @property
    def stopped(self) -> bool:
        return self.vm_state in SHUTOFF_STATES and self.power_state in (SHUTDOWN, 0, None)


@dataclasses.dataclass
class Router:
    id: str
    name: str
    admin_state_up: bool


class OldCloud:
    """One connection per database, shared by the workers under a lock (reads only)."""

    def __init__(self, nova_url: str | None, neutron_url: str | None, timeout: int = 10):
        self._lock = threading.Lock()
        self.nova = self.neutron = None
        self.source = []
        if nova_url:
            u = db.parse_url(nova_url, source="[rehome] old_nova_connection")
            self.nova = db.connect(u, timeout=timeout, autocommit=True)
            self.source.append(u.masked())
        if neutron_url:
            u = db.parse_url(neutron_url, source="[rehome] old_neutron_connection")
            self.neutron = db.connect(u, timeout=timeout, autocommit=True)
            self.source.append(u.masked())

    @property
    def reachable(self) -> bool:
        return self.nova is not None

    def _rows(self, conn, sql: str, args=None) -> list[tuple]:
        if conn is None:
            return []
        with self._lock:
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    return list(cur.fetchall())
            except Exception as exc:  # noqa: BLE001 - one line naming the old cloud
                raise RuntimeFailure(f"reading the old cloud's database failed: {exc}") from None

    def instance(self, uuid: str) -> OldInstance | None:
        rows = self._rows(self.nova, "SELECT uuid, host, vm_state, power_state FROM instances "
                          "WHERE uuid = %s AND deleted = 0", [uuid])
        return OldInstance(*rows[0]) if rows else None

    def ports(self, device_id: str) -> list[OldPort]:
        rows = self._rows(self.neutron, "SELECT id, network_id, mac_address, device_owner, "
                          "project_id, name, admin_state_up FROM ports WHERE device_id = %s "
                          "ORDER BY mac_address", [device_id])
        out = []
        for pid, net, mac, owner, project, name, up in rows:
            ips = [{"subnet_id": s, "ip_address": a} for a, s in self._rows(
                self.neutron, "SELECT ip_address, subnet_id FROM ipallocations WHERE port_id = %s "
                "ORDER BY ip_address", [pid])]
            sgs = [r[0] for r in self._rows(
                self.neutron, "SELECT security_group_id FROM securitygroupportbindings WHERE "
                "port_id = %s ORDER BY security_group_id", [pid])]
            bind = self._rows(self.neutron, "SELECT host, vif_type FROM ml2_port_bindings WHERE "
                              "port_id = %s AND status = 'ACTIVE'", [pid])
            host, vif = bind[0] if bind else (None, None)
            out.append(OldPort(pid, net, mac, ips, sgs, owner or "", project or "", name or "",
                               bool(up), host, vif))
        return out

    def routers_on(self, network_id: str) -> list[Router]:
        rows = self._rows(self.neutron, "SELECT DISTINCT r.id, r.name, r.admin_state_up FROM "
                          "ports p JOIN routers r ON r.id = p.device_id WHERE p.network_id = %s "
                          "AND p.device_owner IN %s ORDER BY r.id", [network_id, ROUTER_OWNERS])
        return [Router(i, n or "", bool(up)) for i, n, up in rows]

    def close(self) -> None:
        for conn in (self.nova, self.neutron):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
