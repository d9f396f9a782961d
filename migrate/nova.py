"""Nova step: where an instance is moved to a new compute host (``instances``
host/node/launched_on/compute_id), its ``instance_info_caches.network_info``
made consistent with its rewritten port bindings, ``nova_api.host_mappings``
completed, and its placement allocations moved to the new resource provider.

Rows with ``deleted != 0`` (nova marks them ``deleted = id``; its online
migrations add a deleted placeholder instance) are never read or written.
An instance that is not stopped is refused unless the caller forces it: nova
would not expect its host to change under a running guest.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterator

from pacestack.migrate import neutron
from pacestack.migrate.invariant import rows_found
from pacestack.migrate.model import StepPlan

from pacestack import codes
from pacestack.findings import Finding

NIC_NAME_LEN = 14  # nova.network.model.NIC_NAME_LEN: tap device names are cut here
_INSTANCES = ("SELECT id, uuid, host, node, compute_id, launched_on, vm_state, task_state "
              "FROM {nova.instances} WHERE deleted = 0 ")
_HOST_MAPPING = "SELECT id, cell_id FROM {nova_api.host_mappings} WHERE host = %s"


@dataclasses.dataclass
class Move:
    uuid: str
    instance_id: int
    old_host: str
    old_node: str | None
    old_compute_id: int | None
    launched_on: str | None
    new_host: str
    new_node: str
    line: int


@dataclasses.dataclass
class Moves:
    """Which instances move where; computed once, shared by the nova, neutron and
    cinder steps so that bindings and attachments follow their instance."""

    moving: dict[str, Move] = dataclasses.field(default_factory=dict)
    # instance uuid -> (old host or None for "any", new host): moving now or already moved
    instance_hosts: dict[str, tuple[str | None, str]] = dataclasses.field(default_factory=dict)
    host_map: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    refusals: list = dataclasses.field(default_factory=list)
    compute_nodes: dict[tuple[str, str], dict] = dataclasses.field(default_factory=dict)
    # old compute host -> its one node, renamed in place to (new host, new node)
    renames: dict[str, dict] = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def whole_host_map(self) -> dict[str, str]:
        return {old: new for old, (new, _node) in self.host_map.items()}

    # neutron's name for the same thing: device_id of a port is the instance uuid
    @property
    def port_hosts(self) -> dict[str, tuple[str | None, str]]:
        return self.instance_hosts

    def only_done(self) -> Moves:
        """Without the nova step, only instances already moved take their ports along."""
        done = {u: h for u, h in self.instance_hosts.items() if u not in self.moving}
        return Moves({}, done, {}, [], self.compute_nodes, {})


def _instances_on(cloud, host: str) -> list[dict]:
    """_INSTANCES on one host in id order, read packed (an old compute holds thousands)."""
    return cloud.packed_rows(
        {c: c for c in ("id", "uuid", "host", "node", "compute_id", "launched_on", "vm_state",
                        "task_state")},
        "FROM {nova.instances} WHERE deleted = 0 AND host = %s", "id", [host],
        ints=frozenset({"id", "compute_id"}))


def _compute_node(cloud, host: str, node: str) -> dict | None:
    rows = cloud.rows("SELECT id, uuid, host, hypervisor_hostname FROM "
                      "{nova.compute_nodes} WHERE host = %s AND "
                      "hypervisor_hostname = %s AND deleted = 0", [host, node])
    return rows[0] if rows else None


def _rename_in_place(cloud, rule, mv: Moves, where: str) -> dict | None:
    """'rename': the old host, with its one node, is renamed in place (its service, node
    and resource provider keep their uuids, so allocations and the node's id stay).
    Says so in a note."""

    nodes = cloud.rows("SELECT id, uuid, host, hypervisor_hostname, service_id FROM "
                       "{nova.compute_nodes} WHERE host = %s AND deleted = 0",
                       [rule.old_host])
    if len(nodes) != 1:
        return None
    node = dict(nodes[0])
    mv.renames[rule.old_host] = {**node, "new_host": rule.new_host, "new_node": rule.new_node}
    mv.notes.append(codes.COMPUTE_RENAMED_IN_PLACE(
        where, old_host=rule.old_host, old_node=node["hypervisor_hostname"],
        new_host=rule.new_host, new_node=rule.new_node, uuid=node["uuid"]))
    return {**node, "host": rule.new_host, "hypervisor_hostname": rule.new_node}


def instance_moves(cloud, mapping, force: bool = False) -> Moves:

    mv = Moves()
    known_hosts = {r["host"] for r in cloud.rows(
        "SELECT DISTINCT host FROM {nova.services} WHERE deleted = 0")}
    for rule in mapping.computes:
        where = f"{mapping.path}:{rule.line}"
        node = _compute_node(cloud, rule.new_host, rule.new_node)
        if rule.rename:
            if node is not None and rule.old_host in known_hosts:
                mv.refusals.append(codes.COMPUTE_ALREADY_REGISTERED(
                    where, new_host=rule.new_host, new_node=rule.new_node,
                    old_host=rule.old_host))
                continue
            node = node or _rename_in_place(cloud, rule, mv, where)
        if node is None:
            mv.refusals.append(codes.NEW_COMPUTE_NOT_REGISTERED(
                where, new_host=rule.new_host, new_node=rule.new_node,
                alternative=(f", or add 'rename' to rename {rule.old_host} in place"
                             if rule.old_host else "")))
            continue
        mv.compute_nodes[(rule.new_host, rule.new_node)] = node
        if rule.old_host:
            rows = _instances_on(cloud, rule.old_host)
            if rule.old_host not in known_hosts and not rows:
                moved = cloud.rows(_INSTANCES + "AND host = %s", [rule.new_host])
                if not moved:
                    mv.refusals.append(codes.MAPPING_UNKNOWN_HOST(
                        where, users="nova service or instance", host=rule.old_host))
                    continue
            mv.host_map[rule.old_host] = (rule.new_host, rule.new_node)
            # instances moved by an earlier (interrupted) run still take their ports along
            for r in cloud.rows(_INSTANCES + "AND host = %s", [rule.new_host]):
                mv.instance_hosts.setdefault(r["uuid"], (rule.old_host, rule.new_host))
        else:
            rows = cloud.rows(_INSTANCES + "AND uuid = %s", [rule.instance_uuid])
            if not rows:
                mv.refusals.append(codes.MAPPING_UNKNOWN_INSTANCE(
                    where, instance=rule.instance_uuid))
                continue
            if rows[0]["host"] == rule.new_host:
                mv.instance_hosts[rows[0]["uuid"]] = (None, rule.new_host)
                continue
        for r in rows:
            if r["host"] == rule.new_host:
                continue
            if not force and (r["vm_state"] != "stopped" or r["task_state"]):
                mv.refusals.append(codes.INSTANCE_NOT_STOPPED(
                    f"nova.instances uuid={r['uuid']}", instance=r["uuid"], host=str(r["host"]),
                    state=f"{r['vm_state']}"
                          f"{'/' + r['task_state'] if r['task_state'] else ''}",
                    remedy="stop it or pass --force"))
                continue
            mv.moving[r["uuid"]] = Move(r["uuid"], r["id"], r["host"], r["node"],
                                        r["compute_id"], r["launched_on"], rule.new_host,
                                        rule.new_node, rule.line)
            mv.instance_hosts[r["uuid"]] = (r["host"], rule.new_host)
    return mv


def rewrite_vif(vif: dict, target: neutron.NetworkTarget | None, details: dict,
                bridge: str) -> dict:
    """One network_info VIF as nova builds it for an ovs-bound port."""
    if vif.get("type") != neutron.VIF_TYPE_BRIDGE and target is None:
        return vif
    # copy only the dicts that change (a deep copy of 10,000 caches costs seconds)
    vif = dict(vif)
    net = vif["network"] = dict(vif.get("network") or {})
    meta = net["meta"] = dict(net.get("meta") or {})
    if vif.get("type") == neutron.VIF_TYPE_BRIDGE:
        vif["type"] = neutron.VIF_TYPE_OVS
        vif["details"] = dict(details)
        vif["ovs_interfaceid"] = vif.get("id")
        vif["devname"] = ("tap" + str(vif.get("id", "")))[:NIC_NAME_LEN]
        net["bridge"] = bridge[:NIC_NAME_LEN]
        # nova sets it for linuxbridge only: on the network (and in meta where a
        # Network was built with it as a keyword)
        net.pop("should_create_bridge", None)
        meta.pop("should_create_bridge", None)
    if target is not None:
        meta["mtu"] = target.mtu
        meta["tunneled"] = target.network_type == "vxlan"
        meta["physical_network"] = target.physical_network
    return vif


def network_info_vifs(network_info: str | None) -> list | None:
    """The VIF list of an info cache's network_info (empty: none); None when it is not
    a JSON list, which nova could not read either."""
    try:
        vifs = json.loads(network_info or "[]")
    except ValueError:
        return None
    return vifs if isinstance(vifs, list) else None


_CACHES = ("FROM {nova.instance_info_caches} c JOIN {nova.instances} i ON i.uuid = "
           "c.instance_uuid WHERE c.deleted = 0 AND i.deleted = 0")
PACKED_CHUNK = 4 << 20  # bytes of network_info per packed read: below max_allowed_packet


def _info_caches(cloud, db: str) -> Iterator[dict]:
    """A cell's live caches in id order, read packed (10,000 caches of ~4 kB cost the
    client a fraction of 10,000 result rows) in id ranges of about PACKED_CHUNK bytes:
    a packed value larger than the server's max_allowed_packet is not sent at all."""
    sizes = cloud.packed_rows({"id": "c.id", "n": "LENGTH(c.network_info)"}, _CACHES, "c.id",
                              ints=frozenset({"id", "n"}), cell=db)
    start = 0
    while start < len(sizes):
        end, total = start, 0
        while end < len(sizes) and (end == start or total + (sizes[end]["n"] or 0)
                                    <= PACKED_CHUNK):
            total += sizes[end]["n"] or 0
            end += 1
        yield from cloud.packed_rows(
            {"id": "c.id", "instance_uuid": "c.instance_uuid",
             "network_info": "c.network_info"}, _CACHES + " AND c.id BETWEEN %s AND %s",
            "c.id", [sizes[start]["id"], sizes[end - 1]["id"]], ints=frozenset({"id"}),
            cell=db)
        start = end


def _plan_info_caches(cloud, mapping, nets, sp: StepPlan) -> None:
    """Every cell's caches: an instance that stays on its host has its ports rebound too."""
    details = neutron.vif_details_for(cloud, mapping)
    for db in cloud.nova_databases():
        for r in _info_caches(cloud, db):
            _plan_info_cache(db, r, nets, details, mapping.integration_bridge, sp)


# json.dumps' output (same separators, ensure_ascii) without its cycle check: a value
# json.loads made holds no cycles, and the check's bookkeeping is a sixth of the encoding
_dumps = json.JSONEncoder(check_circular=False).encode


def _plan_info_cache(db: str, r: dict, nets, details: dict, bridge: str,
                     sp: StepPlan) -> None:
    if not r["network_info"]:
        return
    vifs = network_info_vifs(r["network_info"])
    if vifs is None:
        sp.note(codes.INFO_CACHE_UNREADABLE(f"{db}.instance_info_caches id={r['id']}",
                                            instance=r["instance_uuid"]))
        return
    new = []
    for vif in vifs:
        if not isinstance(vif, dict):
            new.append(vif)
            continue
        net_id = (vif.get("network") or {}).get("id")
        new.append(rewrite_vif(vif, nets.get(net_id), details, bridge))
    if new != vifs:
        sp.update(db, "instance_info_caches", {"id": r["id"]},
                  {"network_info": r["network_info"]}, {"network_info": _dumps(new)},
                  f"instance:{r['instance_uuid']}",
                  why="VIFs consistent with their ovs bindings")


def _plan_renames(cloud, moves: Moves, sp: StepPlan) -> None:
    """A compute host renamed in place: service, node, resource provider, host mapping.
    One barrier unit, planned before its instances follow."""
    for old, n in sorted(moves.renames.items()):
        unit = f"compute-host:{old}"
        new_host, new_node = n["new_host"], n["new_node"]
        for s in cloud.rows("SELECT id, host FROM {nova.services} WHERE deleted = 0 AND "
                            "host = %s AND `binary` = 'nova-compute'", [old]):
            sp.update("nova", "services", {"id": s["id"]}, {"host": old}, {"host": new_host},
                      unit, why=f"compute {old} renamed in place")
        sp.update("nova", "compute_nodes", {"id": n["id"]},
                  {"host": old, "hypervisor_hostname": n["hypervisor_hostname"]},
                  {"host": new_host, "hypervisor_hostname": new_node}, unit,
                  why=f"compute {old} renamed in place")
        for rp in cloud.rows("SELECT id, name FROM {placement.resource_providers} WHERE "
                             "uuid = %s", [n["uuid"]]):
            sp.update("placement", "resource_providers", {"id": rp["id"]}, {"name": rp["name"]},
                      {"name": new_node}, unit, why="provider named after its node")
        if cloud.rows(_HOST_MAPPING, [old]) and not cloud.rows(_HOST_MAPPING, [new_host]):
            sp.update("nova_api", "host_mappings", {"host": old}, {"host": old},
                      {"host": new_host}, unit, why=f"compute {old} renamed in place")


def _plan_host_mappings(cloud, moves: Moves, sp: StepPlan) -> None:
    renamed = {n["new_host"] for n in moves.renames.values()}
    new_hosts = sorted({m.new_host for m in moves.moving.values()} - renamed)
    for host in new_hosts:
        if cloud.rows(_HOST_MAPPING, [host]):
            continue
        olds = sorted({m.old_host for m in moves.moving.values() if m.new_host == host})
        cell = cloud.rows(_HOST_MAPPING, [olds[0]])
        if not cell:
            sp.refuse(codes.HOST_MAPPING_MISSING(f"nova_api.host_mappings host={host}",
                                                 host=host, old_host=olds[0]))
            continue
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
        sp.insert("nova_api", "host_mappings",
                  {"host": host, "cell_id": cell[0]["cell_id"], "created_at": now},
                  f"host-mapping:{host}", why="new compute host mapped to its cell")


def _provider_ids(cloud, uuids: list[str]) -> dict[str, int]:
    if not uuids:
        return {}
    return {r["uuid"]: r["id"] for r in cloud.rows(
        "SELECT id, uuid FROM {placement.resource_providers} WHERE uuid IN %s", [tuple(uuids)])}


def _plan_moves(cloud, moves: Moves, sp: StepPlan) -> None:
    if not moves.moving:
        return
    old_ids = sorted({m.old_compute_id for m in moves.moving.values() if m.old_compute_id})
    old_nodes = {}
    if old_ids:
        old_nodes = {r["id"]: r for r in cloud.rows(
            "SELECT id, uuid FROM {nova.compute_nodes} WHERE id IN %s", [tuple(old_ids)])}
    # an instance without compute_id: find its old node by host/node name
    by_name = {}
    for m in moves.moving.values():
        if m.old_compute_id is None and (m.old_host, m.old_node) not in by_name:
            by_name[(m.old_host, m.old_node)] = _compute_node(cloud, m.old_host, m.old_node or "")
    rp_uuids = [n["uuid"] for n in old_nodes.values()] + \
        [n["uuid"] for n in by_name.values() if n] + \
        [n["uuid"] for n in moves.compute_nodes.values()]
    rp = _provider_ids(cloud, rp_uuids)
    uuids = sorted(moves.moving)
    allocs: dict[str, list[dict]] = {}
    for i in range(0, len(uuids), 1000):
        chunk = uuids[i:i + 1000]
        # a consumer's allocations in id order (what the consumer_id index gives)
        for a in cloud.packed_rows({"id": "id", "consumer_id": "consumer_id",
                                    "resource_provider_id": "resource_provider_id"},
                                   "FROM {placement.allocations} WHERE consumer_id IN %s",
                                   "consumer_id, id", [tuple(chunk)],
                                   ints=frozenset({"id", "resource_provider_id"})):
            allocs.setdefault(a["consumer_id"], []).append(a)
    for u in uuids:
        m = moves.moving[u]
        node = moves.compute_nodes[(m.new_host, m.new_node)]
        unit = f"instance:{u}"
        new_rp = rp.get(node["uuid"])
        old_node = old_nodes.get(m.old_compute_id) if m.old_compute_id else \
            by_name.get((m.old_host, m.old_node))
        old_rp = rp.get(old_node["uuid"]) if old_node else None
        if allocs.get(u) and new_rp is None:
            sp.refuse(codes.NEW_PROVIDER_MISSING(
                f"placement.resource_providers uuid={node['uuid']}", host=m.new_host))
            continue
        sp.update("nova", "instances", {"id": m.instance_id},
                  {"host": m.old_host, "node": m.old_node, "launched_on": m.launched_on,
                   "compute_id": m.old_compute_id},
                  {"host": m.new_host, "node": m.new_node, "launched_on": m.new_host,
                   "compute_id": node["id"]}, unit, why=f"moved to {m.new_host}")
        for a in allocs.get(u, []):
            if old_rp is not None and a["resource_provider_id"] == old_rp:
                sp.update("placement", "allocations", {"id": a["id"]},
                          {"resource_provider_id": old_rp}, {"resource_provider_id": new_rp},
                          unit, why="allocation follows its instance")


def rewrite_hosts_url(url: str | None, hosts: dict[str, str]) -> str | None:
    """A transport or database URL with every mapped host of its netloc replaced
    (oslo.messaging's ``rabbit://u:p@h1:5672,u:p@h2:5672/`` names several); scheme,
    credentials, ports, path and query stay. None: nothing to change."""
    if not url or "://" not in url:
        return None
    scheme, _, rest = url.partition("://")
    cut = min([i for i in (rest.find(ch) for ch in "/?#") if i != -1], default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    parts = []
    for part in netloc.split(","):
        userinfo, at, hostport = part.rpartition("@")
        if hostport.startswith("["):
            host, port = hostport[:hostport.find("]") + 1], hostport[hostport.find("]") + 1:]
        else:
            host, colon, port = hostport.partition(":")
            port = colon + port
        new = hosts.get(host.lower())
        parts.append(f"{userinfo}{at}{new if new else host}{port}")
    out = f"{scheme}://{','.join(parts)}{tail}"
    return out if out != url else None


def url_hosts(url: str | None) -> list[str]:
    """The host names of a URL that may list several hosts (rabbit://u:p@h1:5672,u:p@h2/),
    lower case."""
    if not url or "://" not in url:
        return []
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    hosts = []
    for part in netloc.split(","):
        part = part.rsplit("@", 1)[-1]
        host = part[1:part.find("]")] if part.startswith("[") else part.split(":")[0]
        if host:
            hosts.append(host.lower())
    return hosts


def _plan_cell_mappings(cloud, mapping, sp: StepPlan) -> None:
    hosts = {k.lower(): v for k, v in {**mapping.hosts, **mapping.endpoints}.items()}
    if not hosts:
        return
    for c in cloud.rows("SELECT id, name, transport_url, database_connection FROM "
                        "{nova_api.cell_mappings} ORDER BY id"):
        after = {}
        for col in ("transport_url", "database_connection"):
            new = rewrite_hosts_url(c[col], hosts)
            if new is not None:
                after[col] = new
        if after:
            sp.update("nova_api", "cell_mappings", {"id": c["id"]},
                      {k: c[k] for k in after}, after, f"cell:{c['id']}",
                      why=f"cell {c['name']}'s URLs name the new controller")


def _plan_control_services(cloud, mapping, sp: StepPlan) -> None:
    """nova services other than nova-compute on an old service host, in every cell (a
    cell's conductor registers in its cell's database). rename: they take the new
    host; where the new host already registered that service in that cell, or the
    mapping says remove, the old row is soft-deleted the way nova deletes a service."""
    if not mapping.hosts:
        return
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    for db in cloud.nova_databases():
        rows = cloud.rows("SELECT id, host, `binary`, topic FROM {nova.services} WHERE "
                          "deleted = 0 AND `binary` != 'nova-compute' AND host IN %s "
                          "ORDER BY id", [tuple(mapping.hosts) + tuple(mapping.hosts.values())],
                          cell=db)
        live = {(r["host"], r["binary"]) for r in rows}
        where = "" if db == "nova" else f" in {db}"
        for r in rows:
            if r["host"] not in mapping.hosts:
                continue
            new = mapping.hosts[r["host"]]
            unit = f"nova-service:{r['id']}" if db == "nova" else f"nova-service:{db}:{r['id']}"
            if mapping.nova_control_services == "rename" and (new, r["binary"]) not in live:
                sp.update(db, "services", {"id": r["id"]}, {"host": r["host"]},
                          {"host": new}, unit, why=f"{r['binary']} of {r['host']}{where} renamed")
                continue
            why = "removed (mapping)" if mapping.nova_control_services == "remove" else \
                f"{new} already runs it: old row retired"
            sp.update(db, "services", {"id": r["id"]}, {"deleted": 0, "deleted_at": None},
                      {"deleted": r["id"], "deleted_at": now}, unit,
                      why=f"{r['binary']} of {r['host']}{where} {why}")


def plan(cloud, mapping, moves: Moves) -> StepPlan:
    sp = StepPlan("nova")
    sp.refusals.extend(moves.refusals)
    sp.notes.extend(moves.notes)
    nets = neutron.network_targets(cloud, mapping)
    _plan_renames(cloud, moves, sp)
    _plan_moves(cloud, moves, sp)
    _plan_info_caches(cloud, mapping, nets, sp)
    _plan_host_mappings(cloud, moves, sp)
    _plan_control_services(cloud, mapping, sp)
    _plan_cell_mappings(cloud, mapping, sp)
    return sp


def _cells_on_old_hosts(cloud, old: set[str]) -> list[Finding]:
    """A cell mapping still naming the old controller: the new conductor and API would
    send that cell's RPC to a message bus (or read a database) that is gone. The URLs
    hold passwords: findings name the cell and the host only."""
    out = []
    for r in cloud.rows("SELECT uuid, name, transport_url, database_connection "
                        "FROM {nova_api.cell_mappings}"):
        for column, option in (("transport_url", "--transport-url"),
                               ("database_connection", "--database_connection")):
            hosts = [h for h in url_hosts(r[column]) if h in old]
            if hosts:
                out.append(codes.CELL_OLD_HOST(
                    f"nova-manage cell_v2 update_cell --cell_uuid {r['uuid']} {option} ...",
                    cell=str(r["name"] or r["uuid"]), column=column, host=hosts[0]))
    return out


def invariants(cloud, mapping) -> list[Finding]:
    """No cell mapping names an old controller; no stopped instance left on an old
    compute; every instance's compute node, info cache and allocations agree with it."""
    olds = tuple(m.old_host for m in mapping.computes if m.old_host) or ("",)
    return [
        *_cells_on_old_hosts(cloud, {h.lower() for h in (*mapping.hosts, *mapping.endpoints)}),
        *rows_found(cloud, codes.INSTANCE_OLD_HOST,
                    "live stopped instance left on an old compute",
                    "SELECT uuid, host FROM {nova.instances} WHERE deleted = 0 AND host IN %s "
                    "AND vm_state = 'stopped'", [olds]),
        *rows_found(cloud, codes.INSTANCE_COMPUTE_ID, "instance compute_id names another node",
                    "SELECT i.uuid, i.host, i.node FROM {nova.instances} i "
                    "JOIN {nova.compute_nodes} c ON c.id = i.compute_id WHERE i.deleted = 0 "
                    "AND (c.host != i.host OR c.hypervisor_hostname != i.node)"),
        # network_info is nova's json.dumps: "key": "value" with those spaces
        *rows_found(cloud, codes.INFO_CACHE_BRIDGE, "info cache with a linuxbridge VIF",
                    "SELECT c.instance_uuid FROM {nova.instance_info_caches} c "
                    "JOIN {nova.instances} i ON i.uuid = c.instance_uuid WHERE c.deleted = 0 "
                    "AND i.deleted = 0 AND c.network_info LIKE %s",
                    [f'%"type": "{neutron.VIF_TYPE_BRIDGE}"%']),
        *rows_found(cloud, codes.ALLOCATION_ELSEWHERE, "allocation not on the instance's node",
                    "SELECT a.consumer_id, rp.uuid FROM {placement.allocations} a "
                    "JOIN {placement.resource_providers} rp ON rp.id = a.resource_provider_id "
                    "JOIN {nova.instances} i ON i.uuid = a.consumer_id "
                    "JOIN {nova.compute_nodes} c ON c.id = i.compute_id "
                    "WHERE i.deleted = 0 AND rp.uuid != c.uuid"),
    ]
