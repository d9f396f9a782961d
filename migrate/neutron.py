"""Neutron step: where network segments, their allocations, network MTUs, port
bindings (linuxbridge -> openvswitch), segment host mappings and stale
linuxbridge agents are rewritten.

Rules a rewrite must respect (all checked here, refused when broken):
- a target segmentation id must lie in the ranges of ml2_conf.ini and must not
  be used by another network, or by two rewritten segments at once;
- the allocation tables say what neutron will hand out next: new ids are
  marked allocated, old ones released, in the same transaction as the segment;
- ``ml2_port_bindings``/``ml2_port_binding_levels`` have the host in their
  primary key: a rename that would collide with an existing binding is refused.
"""

from __future__ import annotations

import dataclasses
import json

from pacestack.migrate.invariant import rows_found
from pacestack.migrate.model import StepPlan
from pacestack.migrate.residue import dhcp_device_prefix
from pacestack.migrate.tables import q

from pacestack import codes
from pacestack.findings import Finding

VIF_TYPE_OVS = "ovs"
VIF_TYPE_BRIDGE = "bridge"
LINUXBRIDGE_AGENT = "Linux bridge agent"
VXLAN_OVERHEAD = {4: 50, 6: 70}  # bytes of VXLAN + outer UDP/IP headers




@dataclasses.dataclass(frozen=True)
class NeutronRelease:
    """What neutron's own code writes differently, per release, in the rows this step
    writes (releases.SUPPORTED). Table columns it reads and writes are equal from 2024.1
    to 2026.2: networks.qinq (2025.1 on) and the evpn/pvlan tables are not touched."""

    # the openvswitch driver adds "ovs_create_tap": true to a kernel-datapath port's
    # vif_details without hybrid plug when [OVS_DRIVER] ovs_create_tap (default true)
    ovs_create_tap: bool


RELEASE_DIFFERENCES = {
    "2024.1": NeutronRelease(ovs_create_tap=False),
    "2025.1": NeutronRelease(ovs_create_tap=False),
    "2026.2": NeutronRelease(ovs_create_tap=True),
}


def ovs_vif_details(firewall_driver: str, bridge: str = "br-int", release: str = "2026.2",
                    create_tap: bool = True) -> dict:
    """vif_details as release's neutron openvswitch mechanism driver writes them
    (``create_tap``: the server's [OVS_DRIVER] ovs_create_tap)."""
    hybrid = firewall_driver == "iptables_hybrid"
    details = {
        "port_filter": firewall_driver != "noop",
        "connectivity": "l2",
        "ovs_hybrid_plug": hybrid,
    }
    if RELEASE_DIFFERENCES[release].ovs_create_tap and create_tap and not hybrid:
        details["ovs_create_tap"] = True
    details.update(datapath_type="system", bridge_name=bridge)
    return details


def vif_details_for(cloud, mapping) -> dict:
    """The vif_details every rewritten binding (and its nova info cache) gets."""
    release = cloud.release.release if cloud.release else "2026.2"
    return ovs_vif_details(mapping.firewall_driver, mapping.integration_bridge, release,
                           cloud.ml2.ovs_create_tap)


@dataclasses.dataclass
class NetworkTarget:
    network_id: str
    network_type: str  # the network's (first) segment type after the rewrite
    physical_network: str | None
    mtu: int
    old_mtu: int


def overlay_mtu(cloud, mapping) -> int:
    if mapping.overlay_mtu:
        return mapping.overlay_mtu
    underlay = mapping.underlay_mtu or cloud.ml2.path_mtu or cloud.ml2.global_physnet_mtu
    ipv = mapping.overlay_ip_version or cloud.ml2.overlay_ip_version
    return underlay - VXLAN_OVERHEAD[ipv]


def _segments(cloud) -> list[dict]:
    return cloud.rows(
        "SELECT s.id, s.network_id, s.network_type, s.physical_network, s.segmentation_id, "
        "s.segment_index, n.mtu FROM {neutron.networksegments} s "
        "JOIN {neutron.networks} n ON n.id = s.network_id "
        "ORDER BY s.network_id, s.segment_index, s.id")


def _segment_targets(cloud, mapping, sp: StepPlan | None,
                     segs: list[dict] | None = None) -> tuple[list, dict[str, NetworkTarget]]:
    """(segment, (type, physnet, id), rule) for segments that change; and every network's
    type/MTU after the rewrite (what nova's info caches must agree with)."""
    if segs is None:
        segs = _segments(cloud)
    mtu_overlay = overlay_mtu(cloud, mapping)
    changing = []
    nets: dict[str, NetworkTarget] = {}
    for s in segs:
        rule = mapping.segment_rule(s["network_id"], s["network_type"], s["physical_network"])
        new = (s["network_type"], s["physical_network"], s["segmentation_id"])
        if rule is not None:
            t = rule.target
            sid = t.segmentation_id if t.segmentation_id is not None else s["segmentation_id"]
            new = (t.network_type, t.physical_network, sid)
            if new != (s["network_type"], s["physical_network"], s["segmentation_id"]):
                if new[2] is None and t.network_type != "flat":
                    if sp is not None:
                        sp.refuse(codes.SEGMENT_NEEDS_ID(
                            f"neutron.networksegments id={s['id']}",
                            network_type=s["network_type"], network=s["network_id"],
                            line=f"{mapping.path}:{rule.line}"))
                    continue
                changing.append((s, new, rule))
        if s["segment_index"] == 0 or s["network_id"] not in nets:
            mtu = s["mtu"]
            if new[0] == "vxlan" and s["network_type"] != "vxlan":
                mtu = mtu_overlay
            nets[s["network_id"]] = NetworkTarget(s["network_id"], new[0], new[1], mtu, s["mtu"])
    return changing, nets


def network_targets(cloud, mapping) -> dict[str, NetworkTarget]:
    return _segment_targets(cloud, mapping, None)[1]


def _in_range(cloud, t: tuple) -> bool:
    kind, physnet, sid = t
    if kind == "vlan":
        return cloud.ml2.vlan_allowed(physnet, sid)
    if kind == "vxlan":
        return cloud.ml2.vni_allowed(sid)
    return cloud.ml2.flat_allowed(physnet)


def _segment_text(t: tuple) -> str:
    """("vlan", "provider", 100) -> "vlan provider 100", as the mapping spells it."""
    return " ".join(str(x) for x in t if x is not None)


def _ranges_text(cloud, t: tuple) -> str:
    if t[0] == "vlan":
        r = cloud.ml2.vlan_ranges.get(t[1])
        if r is None:
            return f"physical network {t[1]!r} is not in network_vlan_ranges"
        return "allowed: " + ", ".join(f"{a}-{b}" for a, b in r)
    if t[0] == "vxlan":
        return "vni_ranges: " + (", ".join(f"{a}-{b}" for a, b in cloud.ml2.vni_ranges) or "none")
    return "flat_networks: " + ", ".join(cloud.ml2.flat_networks)


def _plan_segments(cloud, mapping, sp: StepPlan) -> dict[str, NetworkTarget]:
    segs = _segments(cloud)
    changing, nets = _segment_targets(cloud, mapping, sp, segs)
    all_segs = {s["id"]: s for s in segs}
    known_nets = {s["network_id"] for s in all_segs.values()}
    for rule in mapping.segments:
        sel = rule.selector
        if sel.network_id and sel.network_id not in known_nets:
            sp.refuse(codes.MAPPING_UNKNOWN_NETWORK(f"{mapping.path}:{rule.line}",
                                                    network=sel.network_id))
        elif not sel.network_id and not any(r is rule for _, _, r in changing):
            sp.note(codes.MAPPING_SEGMENT_UNUSED(f"{mapping.path}:{rule.line}",
                                                 selector=str(sel)))
    changing_ids = {s["id"] for s, _, _ in changing}
    in_use = {}
    for s in all_segs.values():
        if s["id"] not in changing_ids and s["segmentation_id"] is not None:
            in_use[(s["network_type"], s["physical_network"], s["segmentation_id"])] = s
    claimed: dict[tuple, dict] = {}
    ok = []
    for s, new, rule in changing:
        subject = f"neutron.networksegments id={s['id']}"
        if not _in_range(cloud, new):
            sp.refuse(codes.SEGMENT_ID_OUT_OF_RANGE(
                subject, segment=_segment_text(new), network=s["network_id"],
                line=f"{mapping.path}:{rule.line}", ranges=_ranges_text(cloud, new)))
            continue
        if new[0] != "flat" and new in in_use:
            other = in_use[new]
            sp.refuse(codes.SEGMENT_ID_TAKEN(subject, segment=_segment_text(new),
                                             network=s["network_id"],
                                             other=f"network {other['network_id']}"))
            continue
        if new[0] != "flat" and new in claimed:
            sp.refuse(codes.SEGMENT_ID_DUPLICATE(
                subject, segment=_segment_text(new),
                networks=[claimed[new]["network_id"], s["network_id"]],
                line=f"{mapping.path}:{rule.line}"))
            continue
        if new[0] == "flat" and any(k[0] == "flat" and k[1] == new[1] for k in in_use):
            sp.refuse(codes.SEGMENT_ID_TAKEN(subject, segment=f"flat physical network {new[1]!r}",
                                             network=s["network_id"], other="another network"))
            continue
        claimed[new] = s
        ok.append((s, new))
    if sp.refusals:
        return nets
    _plan_allocations(cloud, sp, ok)
    for s, new in ok:
        unit = f"network:{s['network_id']}"
        sp.update("neutron", "networksegments", {"id": s["id"]},
                  {"network_type": s["network_type"], "physical_network": s["physical_network"],
                   "segmentation_id": s["segmentation_id"]},
                  {"network_type": new[0], "physical_network": new[1],
                   "segmentation_id": new[2] if new[0] != "flat" else None},
                  unit, why="segment mapping")
    done_nets = set()
    for s, _new in ok:
        n = nets[s["network_id"]]
        if n.network_id in done_nets:
            continue
        done_nets.add(n.network_id)
        sp.update("neutron", "networks", {"id": n.network_id}, {"mtu": n.old_mtu},
                  {"mtu": n.mtu}, f"network:{n.network_id}",
                  why="network becomes an overlay: MTU minus encapsulation")
    return nets


def _alloc_rows(cloud, table: str, where_cols: tuple, keys: list[tuple]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    if not keys:
        return out
    queries = {  # fixed statements, one per allocation table
        "ml2_vlan_allocations": "SELECT * FROM {neutron.ml2_vlan_allocations} "
                                "WHERE (physical_network, vlan_id) IN %s",
        "ml2_vxlan_allocations": "SELECT * FROM {neutron.ml2_vxlan_allocations} "
                                 "WHERE vxlan_vni IN %s",
        "ml2_flat_allocations": "SELECT * FROM {neutron.ml2_flat_allocations} "
                                "WHERE physical_network IN %s",
    }
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        param = tuple(chunk) if len(where_cols) > 1 else tuple(k[0] for k in chunk)
        for r in cloud.rows(queries[table], [param]):
            out[tuple(r[c] for c in where_cols)] = r
    return out


def _plan_allocations(cloud, sp: StepPlan, ok: list) -> None:
    vlan_keys, vxlan_keys, flat_keys = [], [], []
    for s, new in ok:
        for kind, physnet, sid in ((s["network_type"], s["physical_network"],
                                    s["segmentation_id"]), new):
            if kind == "vlan":
                vlan_keys.append((physnet, sid))
            elif kind == "vxlan":
                vxlan_keys.append((sid,))
            elif kind == "flat":
                flat_keys.append((physnet,))
    vlan = _alloc_rows(cloud, "ml2_vlan_allocations", ("physical_network", "vlan_id"), vlan_keys)
    vxlan = _alloc_rows(cloud, "ml2_vxlan_allocations", ("vxlan_vni",), vxlan_keys)
    flat = _alloc_rows(cloud, "ml2_flat_allocations", ("physical_network",), flat_keys)
    for s, new in ok:
        unit = f"network:{s['network_id']}"
        old = (s["network_type"], s["physical_network"], s["segmentation_id"])
        # release the old id
        if old[0] == "vlan" and (old[1], old[2]) in vlan and vlan[(old[1], old[2])]["allocated"]:
            sp.update("neutron", "ml2_vlan_allocations",
                      {"physical_network": old[1], "vlan_id": old[2]}, {"allocated": 1},
                      {"allocated": 0}, unit, why="old VLAN released")
        elif old[0] == "vxlan" and (old[2],) in vxlan and vxlan[(old[2],)]["allocated"]:
            sp.update("neutron", "ml2_vxlan_allocations", {"vxlan_vni": old[2]},
                      {"allocated": 1}, {"allocated": 0}, unit, why="old VNI released")
        elif old[0] == "flat" and (old[1],) in flat:
            sp.delete("neutron", "ml2_flat_allocations", {"physical_network": old[1]}, unit,
                      why="old flat network released")
        # claim the new one
        if new[0] == "vlan":
            row = vlan.get((new[1], new[2]))
            if row is None:
                sp.insert("neutron", "ml2_vlan_allocations",
                          {"physical_network": new[1], "vlan_id": new[2], "allocated": 1}, unit,
                          why="new VLAN allocated")
            elif not row["allocated"]:
                sp.update("neutron", "ml2_vlan_allocations",
                          {"physical_network": new[1], "vlan_id": new[2]}, {"allocated": 0},
                          {"allocated": 1}, unit, why="new VLAN allocated")
            else:
                sp.refuse(codes.ALLOCATION_LEAKED(
                    f"neutron.ml2_vlan_allocations {new[1]}:{new[2]}",
                    check="VLAN marked allocated with no segment",
                    row=f"physical_network={new[1]}, vlan_id={new[2]}"))
        elif new[0] == "vxlan":
            row = vxlan.get((new[2],))
            if row is None:
                sp.insert("neutron", "ml2_vxlan_allocations",
                          {"vxlan_vni": new[2], "allocated": 1}, unit, why="new VNI allocated")
            elif not row["allocated"]:
                sp.update("neutron", "ml2_vxlan_allocations", {"vxlan_vni": new[2]},
                          {"allocated": 0}, {"allocated": 1}, unit, why="new VNI allocated")
            elif old != new:
                sp.refuse(codes.ALLOCATION_LEAKED(f"neutron.ml2_vxlan_allocations {new[2]}",
                                                  check="VNI marked allocated with no segment",
                                                  row=f"vxlan_vni={new[2]}"))
        elif new[0] == "flat" and (new[1],) not in flat:
            sp.insert("neutron", "ml2_flat_allocations", {"physical_network": new[1]}, unit,
                      why="new flat network allocated")


def _plan_bindings(cloud, mapping, moves, nets: dict[str, NetworkTarget],
                   sp: StepPlan) -> None:
    hosts = dict(mapping.hosts)
    old_hosts = sorted(set(hosts) | set(moves.host_map))
    details = json.dumps(vif_details_for(cloud, mapping))
    # an empty IN () is a syntax error: a host name nobody uses stands in for "none"
    args = [VIF_TYPE_BRIDGE, tuple(old_hosts) or ("",)]
    # every binding of the ports concerned, in one read: the ones to rewrite (flagged by
    # the server, with its collation) and the others, whose hosts a rename must not take
    bindings = cloud.packed_rows(
        {"port_id": "b.port_id", "host": "b.host", "vif_type": "b.vif_type",
         "vif_details": "b.vif_details", "status": "b.status", "device_id": "p.device_id",
         "wanted": "(b.vif_type = %s OR b.host IN %s)"},
        "FROM {neutron.ml2_port_bindings} b "
        "JOIN {neutron.ports} p ON p.id = b.port_id WHERE b.port_id IN "
        "(SELECT w.port_id FROM {neutron.ml2_port_bindings} w "
        "WHERE w.vif_type = %s OR w.host IN %s)", "b.port_id, b.host", args=args,
        select_args=args, ints=frozenset({"wanted"}))
    bindings, dropped = _drop_inactive(cloud, bindings, sp)
    rows = [r for r in bindings if r["wanted"]]
    if not rows:
        return
    existing = {(r["port_id"], r["host"]) for r in bindings}
    new_host_of: dict[tuple[str, str], str] = {}
    for r in rows:
        new_host = r["host"]
        if r["host"] in hosts:
            new_host = hosts[r["host"]]
        elif r["device_id"] in moves.port_hosts:
            old, new = moves.port_hosts[r["device_id"]]
            # old None: an instance moved by an 'instance UUID' line; any other host follows
            if (old is None or r["host"] == old) and r["host"] != new:
                new_host = new
        if new_host != r["host"] and (r["port_id"], new_host) in existing:
            sp.refuse(codes.PORT_BINDING_CONFLICT(
                f"neutron.ml2_port_bindings port_id={r['port_id']}", port=r["port_id"],
                new_host=new_host, host=r["host"]))
            continue
        after = {"host": new_host}
        if r["vif_type"] == VIF_TYPE_BRIDGE:
            after.update(vif_type=VIF_TYPE_OVS, vif_details=details)
        unit = f"port:{r['port_id']}"
        sp.update("neutron", "ml2_port_bindings", {"port_id": r["port_id"], "host": r["host"]},
                  {"host": r["host"], "vif_type": r["vif_type"],
                   "vif_details": r["vif_details"]}, after, unit,
                  why="linuxbridge -> openvswitch" if "vif_type" in after else "host renamed")
        new_host_of[(r["port_id"], r["host"])] = new_host
    # binding levels follow their binding (same unit)
    for r in cloud.packed_rows({"port_id": "port_id", "host": "host", "level": "level",
                                "driver": "driver"},
                               "FROM {neutron.ml2_port_binding_levels} l WHERE l.driver = %s "
                               "OR l.host IN %s", "port_id, host, level",
                               ["linuxbridge", tuple(old_hosts) or ("",)],
                               ints=frozenset({"level"})):
        new_host = new_host_of.get((r["port_id"], r["host"]), r["host"])
        if (r["port_id"], r["host"]) in dropped or \
                (r["port_id"], r["host"]) not in new_host_of and r["driver"] != "linuxbridge":
            continue
        after = {"host": new_host}
        if r["driver"] == "linuxbridge":
            after["driver"] = "openvswitch"
        sp.update("neutron", "ml2_port_binding_levels",
                  {"port_id": r["port_id"], "host": r["host"], "level": r["level"]},
                  {"host": r["host"], "driver": r["driver"]}, after, f"port:{r['port_id']}",
                  why="binding level follows its binding")


def _drop_inactive(cloud, bindings: list[dict], sp: StepPlan) -> tuple[list[dict], set]:
    """A port keeps one binding: the INACTIVE ones an interrupted live migration left
    beside an ACTIVE one are deleted (whole rows journaled) with their levels, in the
    port's unit, before its ACTIVE binding is renamed (maybe onto their host)."""
    active = {r["port_id"] for r in bindings if r["status"] == "ACTIVE"}
    gone = [r for r in bindings if r["status"] == "INACTIVE" and r["port_id"] in active]
    if not gone:
        return bindings, set()
    for r in gone:
        sp.delete("neutron", "ml2_port_bindings", {"port_id": r["port_id"], "host": r["host"]},
                  f"port:{r['port_id']}", why="INACTIVE binding left by a live migration")
    keys = {(r["port_id"], r["host"]) for r in gone}
    for lv in cloud.rows("SELECT port_id, host, level FROM {neutron.ml2_port_binding_levels} "
                         "WHERE port_id IN %s", [tuple(sorted({k[0] for k in keys}))]):
        if (lv["port_id"], lv["host"]) in keys:
            sp.delete("neutron", "ml2_port_binding_levels",
                      {"port_id": lv["port_id"], "host": lv["host"], "level": lv["level"]},
                      f"port:{lv['port_id']}", why="level of an INACTIVE binding")
    return [r for r in bindings if (r["port_id"], r["host"]) not in keys], keys


def _plan_dhcp_devices(cloud, mapping, sp: StepPlan) -> None:
    """A DHCP port's device_id names its agent's host (dhcp<uuid5 of the host>-<network>):
    the agent under its new name must recognise the port as its own."""
    for old, new in mapping.hosts.items():
        prefix, new_prefix = dhcp_device_prefix(old), dhcp_device_prefix(new)
        for r in cloud.rows("SELECT id, device_id FROM {neutron.ports} WHERE device_owner = "
                            "'network:dhcp' AND device_id LIKE %s ORDER BY id",
                            [prefix + "-%"]):
            sp.update("neutron", "ports", {"id": r["id"]}, {"device_id": r["device_id"]},
                      {"device_id": new_prefix + r["device_id"][len(prefix):]},
                      f"port:{r['id']}", why=f"DHCP device id of {old} -> {new}")


# agent type -> its scheduling table, the table's agent column, the other key column
AGENT_BINDINGS = {"DHCP agent": ("networkdhcpagentbindings", "dhcp_agent_id", "network_id"),
                  "L3 agent": ("routerl3agentbindings", "l3_agent_id", "router_id")}
_AGENT_BINDING_SQL = {
    "networkdhcpagentbindings": "SELECT network_id AS k FROM {neutron.networkdhcpagentbindings} "
                                "WHERE dhcp_agent_id = %s ORDER BY network_id",
    "routerl3agentbindings": "SELECT router_id AS k FROM {neutron.routerl3agentbindings} "
                             "WHERE l3_agent_id = %s ORDER BY router_id",
}
AGENT_BINDINGS_TABLES = frozenset(t for t, _c, _o in AGENT_BINDINGS.values())


def agent_references(cloud, agent_ids: list[str]) -> dict[str, list[str]]:
    """agent id -> the tables (other than the two scheduling tables handled here) whose
    rows name it by foreign key: deleting the agent would let the server cascade-delete
    them unjournaled (HA router ports, say), so such an agent is refused instead."""
    if not agent_ids:
        return {}
    db = cloud.databases["neutron"]
    refs = cloud.rows("SELECT table_name AS t, column_name AS c FROM "
                      "information_schema.key_column_usage WHERE table_schema = %s AND "
                      "referenced_table_schema = %s AND referenced_table_name = 'agents' "
                      "AND referenced_column_name = 'id'", [db, db])
    out: dict[str, list[str]] = {}
    for r in refs:
        if r["t"] in AGENT_BINDINGS_TABLES:
            continue
        with cloud.conn.cursor() as cur:
            cur.execute(f"SELECT DISTINCT {q(r['c'])} FROM {q(db)}.{q(r['t'])} "  # noqa: S608 - names from information_schema, quoted
                        f"WHERE {q(r['c'])} IN %s", [tuple(agent_ids)])
            for (agent_id,) in cur.fetchall():
                out.setdefault(agent_id, []).append(r["t"])
    return out


def _plan_old_agents(cloud, mapping, sp: StepPlan) -> None:
    """The old controller's DHCP/L3/metadata agents. rename: the agent row takes the new
    host (its networks and routers stay scheduled on it); when the new host already runs
    an agent of that type, its networks and routers are handed to that agent and the old
    row goes. remove: the old row and its scheduling go (neutron reschedules)."""
    if not mapping.hosts:
        return
    agents = cloud.rows("SELECT id, agent_type, host FROM {neutron.agents} WHERE host IN %s "
                        "ORDER BY host, agent_type",
                        [tuple(mapping.hosts) + tuple(mapping.hosts.values())])
    by_type_host = {(a["agent_type"], a["host"]): a for a in agents}
    refs = agent_references(cloud, [a["id"] for a in agents if a["host"] in mapping.hosts])
    for a in agents:
        if a["host"] not in mapping.hosts or a["agent_type"] == LINUXBRIDGE_AGENT:
            continue
        new_host = mapping.hosts[a["host"]]
        unit = f"agent:{a['id']}"
        there = by_type_host.get((a["agent_type"], new_host))
        if (there is not None or mapping.neutron_agents == "remove") and a["id"] in refs:
            sp.refuse(codes.AGENT_REFERENCED(f"neutron.agents id={a['id']}",
                                             agent_type=a["agent_type"], host=a["host"],
                                             tables=sorted(refs[a["id"]])))
            continue
        if mapping.neutron_agents == "rename" and there is None:
            sp.update("neutron", "agents", {"id": a["id"]}, {"host": a["host"]},
                      {"host": new_host}, unit, why=f"{a['agent_type']} of {a['host']} renamed")
            continue
        table, col, other = AGENT_BINDINGS.get(a["agent_type"], (None, None, None))
        if table:
            keep = set() if there is None else \
                {r["k"] for r in cloud.rows(_AGENT_BINDING_SQL[table], [there["id"]])}
            for r in cloud.rows(_AGENT_BINDING_SQL[table], [a["id"]]):
                key = {other: r["k"], col: a["id"]}
                if mapping.neutron_agents == "rename" and r["k"] not in keep:
                    sp.update("neutron", table, key, {col: a["id"]}, {col: there["id"]}, unit,
                              why=f"scheduled on {new_host}'s {a['agent_type']} instead")
                else:
                    sp.delete("neutron", table, key, unit,
                              why=f"{a['agent_type']} of {a['host']} removed")
        merged = there is not None and mapping.neutron_agents == "rename"
        sp.delete("neutron", "agents", {"id": a["id"]}, unit,
                  why=f"{a['agent_type']} of {a['host']} " +
                      (f"merged into {new_host}'s" if merged else "removed"))


def _plan_host_mappings(cloud, mapping, moves, sp: StepPlan) -> None:
    renames = dict(mapping.hosts)
    renames.update(moves.whole_host_map)
    if not renames:
        return
    q = "SELECT segment_id, host FROM {neutron.segmenthostmappings} WHERE host IN %s"
    rows = cloud.rows(q, [tuple(renames)])
    present = {(r["segment_id"], r["host"]) for r in cloud.rows(q, [tuple(renames.values())])}
    for r in rows:
        new = renames[r["host"]]
        unit = f"shm:{r['segment_id']}:{r['host']}"
        if (r["segment_id"], new) in present:
            sp.delete("neutron", "segmenthostmappings", {"segment_id": r["segment_id"],
                                                         "host": r["host"]}, unit,
                      why=f"{new} already mapped to this segment")
        else:
            sp.update("neutron", "segmenthostmappings", {"segment_id": r["segment_id"],
                                                         "host": r["host"]},
                      {"host": r["host"]}, {"host": new}, unit, why="host renamed")


def _plan_agents(cloud, sp: StepPlan) -> None:
    for r in cloud.rows("SELECT id, host FROM {neutron.agents} "
                        "WHERE agent_type = %s ORDER BY host", [LINUXBRIDGE_AGENT]):
        sp.delete("neutron", "agents", {"id": r["id"]}, f"agent:{r['id']}",
                  why=f"stale linuxbridge agent on {r['host']}")


def plan(cloud, mapping, moves) -> StepPlan:
    sp = StepPlan("neutron")
    nets = _plan_segments(cloud, mapping, sp)
    _plan_bindings(cloud, mapping, moves, nets, sp)
    _plan_host_mappings(cloud, mapping, moves, sp)
    _plan_dhcp_devices(cloud, mapping, sp)
    _plan_agents(cloud, sp)
    _plan_old_agents(cloud, mapping, sp)
    return sp


def invariants(cloud, mapping) -> list[Finding]:
    """Every segment holds its allocation and no allocation is orphaned, no segmentation
    id is used twice, no binding or agent is linuxbridge's, no binding names an old host."""
    old_hosts = tuple(mapping.hosts) or ("",)
    return [
        *rows_found(cloud, codes.SEGMENT_NOT_ALLOCATED, "vlan segment without allocated VLAN row",
                    "SELECT s.id, s.physical_network, s.segmentation_id "
                    "FROM {neutron.networksegments} s "
                    "LEFT JOIN {neutron.ml2_vlan_allocations} a ON a.physical_network = "
                    "s.physical_network AND a.vlan_id = s.segmentation_id AND a.allocated = 1 "
                    "WHERE s.network_type = 'vlan' AND a.vlan_id IS NULL"),
        *rows_found(cloud, codes.SEGMENT_NOT_ALLOCATED, "vxlan segment without allocated VNI row",
                    "SELECT s.id, s.segmentation_id FROM {neutron.networksegments} s "
                    "LEFT JOIN {neutron.ml2_vxlan_allocations} a ON a.vxlan_vni = "
                    "s.segmentation_id AND a.allocated = 1 "
                    "WHERE s.network_type = 'vxlan' AND a.vxlan_vni IS NULL"),
        *rows_found(cloud, codes.ALLOCATION_LEAKED, "VLAN marked allocated with no segment",
                    "SELECT a.physical_network, a.vlan_id FROM {neutron.ml2_vlan_allocations} a "
                    "LEFT JOIN {neutron.networksegments} s ON s.network_type = 'vlan' AND "
                    "s.physical_network = a.physical_network AND s.segmentation_id = a.vlan_id "
                    "WHERE a.allocated = 1 AND s.id IS NULL"),
        *rows_found(cloud, codes.ALLOCATION_LEAKED, "VNI marked allocated with no segment",
                    "SELECT a.vxlan_vni FROM {neutron.ml2_vxlan_allocations} a "
                    "LEFT JOIN {neutron.networksegments} s ON s.network_type = 'vxlan' AND "
                    "s.segmentation_id = a.vxlan_vni WHERE a.allocated = 1 AND s.id IS NULL"),
        *rows_found(cloud, codes.SEGMENT_DUPLICATE, "segmentation id used twice",
                    "SELECT network_type, physical_network, segmentation_id, COUNT(*) AS n "
                    "FROM {neutron.networksegments} WHERE segmentation_id IS NOT NULL "
                    "GROUP BY network_type, physical_network, segmentation_id HAVING n > 1"),
        *rows_found(cloud, codes.BINDING_LINUXBRIDGE, "port binding still linuxbridge",
                    "SELECT port_id, host FROM {neutron.ml2_port_bindings} WHERE vif_type = %s",
                    [VIF_TYPE_BRIDGE]),
        *rows_found(cloud, codes.BINDING_LINUXBRIDGE, "binding level still linuxbridge",
                    "SELECT port_id, host FROM {neutron.ml2_port_binding_levels} "
                    "WHERE driver = %s", ["linuxbridge"]),
        *rows_found(cloud, codes.BINDING_OLD_HOST, "port binding on an old host",
                    "SELECT port_id, host FROM {neutron.ml2_port_bindings} WHERE host IN %s",
                    [old_hosts]),
        *rows_found(cloud, codes.AGENT_STALE, "linuxbridge agent left",
                    "SELECT id, host FROM {neutron.agents} WHERE agent_type = %s",
                    [LINUXBRIDGE_AGENT]),
    ]
