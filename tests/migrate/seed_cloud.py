"""The seed's linuxbridge-era cloud, inserted into the real (freshly synced) schemas.

What the operator's account of the seed cutover shows, plus what its operator did not
mention but a real cloud has: the nine segments of its "old neutron table",
volumes on ``old-control@BACKEND#POOL`` with services, backups, groups and an
attachment, instances on an old compute host with ``bridge`` bindings and info
caches, endpoints on ``ocata-vm``, stale linuxbridge agents, and deleted rows
that must survive untouched. Also ``synthetic(...)`` for the benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

NOW = "2026-01-01 00:00:00"
# Cinder's service versions as `cinder-manage db sync --bump-versions` leaves them after
# an offline upgrade like the seed's (cinder 29, the pinned one). A row without them
# makes every new cinder service refuse to start (ServiceTooOld).
CINDER_RPC = {"cinder-volume": "3.20", "cinder-scheduler": "3.12", "cinder-backup": "2.4"}
CINDER_OBJECTS = "1.39"

# (network name, type, physnet, segmentation id) in the order of the seed's table
SEED_SEGMENTS = [
    ("dmz", "flat", "dmz", None),
    ("selfservice-1137", "vlan", "physnet1", 1137),
    ("selfservice-1169", "vlan", "physnet1", 1169),
    ("prod", "flat", "prod", None),
    ("selfservice-1199", "vlan", "physnet1", 1199),
    ("pxe", "flat", "pxe", None),
    ("selfservice-1130", "vlan", "physnet1", 1130),
    ("team", "flat", "team", None),
    ("floating", "flat", "floating", None),
]

# the "new neutron table" the mapping in examples/seed-mapping.conf must produce
SEED_EXPECTED = [
    ("vlan", "provider", 100), ("vxlan", None, 1137), ("vxlan", None, 1169),
    ("vlan", "provider", 300), ("vxlan", None, 1199), ("vlan", "provider", 301),
    ("vxlan", None, 1130), ("vlan", "provider", 302), ("vlan", "provider", 303),
]

ML2_CONF = """\
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
[ml2_type_flat]
flat_networks =
[ml2_type_vlan]
network_vlan_ranges = provider:100:400
[ml2_type_vxlan]
vni_ranges = 1000:2000
"""

SEED_MAPPING = """\
[hosts]
old-control = controller
[endpoints]
ocata-vm = controller.domain
[segments]
flat dmz = vlan provider 100
flat prod = vlan provider 300
flat pxe = vlan provider 301
flat team = vlan provider 302
flat floating = vlan provider 303
vlan physnet1 = vxlan
[computes]
compute01 = compute05 compute05.domain
[options]
overlay_mtu = 1422
firewall_driver = openvswitch
"""

# row changes of the seed's cutover: 15 endpoints (the fixture bootstraps keystone's own on
# controller.domain already), 65 neutron, 11 cinder, 14 nova/nova_api/placement
SEED_CHANGES = 105

# instance_extra.flavor as nova 34 stores it ({"cur": Flavor primitive, ...})
FLAVOR = json.dumps({"cur": {
    "nova_object.name": "Flavor", "nova_object.namespace": "nova",
    "nova_object.version": "1.2",
    "nova_object.data": {"id": 1, "name": "m1.small", "memory_mb": 512, "vcpus": 1,
                         "root_gb": 1, "ephemeral_gb": 0, "flavorid": "seed-small",
                         "swap": 0, "rxtx_factor": 1.0, "vcpu_weight": 0,
                         "disabled": False, "is_public": True, "extra_specs": {},
                         "description": None, "created_at": None, "updated_at": None,
                         "deleted_at": None, "deleted": False}},
    "old": None, "new": None})

LB_DETAILS = json.dumps({"port_filter": True, "connectivity": "l2"})
# os-brick's connector properties of compute01, as cinder stores them (jsonutils.dumps)
CONNECTOR = json.dumps({"platform": "x86_64", "os_type": "linux", "ip": "10.0.0.31",
                        "host": "compute01", "multipath": False,
                        "initiator": "iqn.1994-05.com.redhat:5f3c8e1a9b2d",
                        "do_local_attach": False,
                        "system uuid": "4c4c4544-0031-3010-8052-b4c04f4e3432"})
# cell1's transport URL on the old controller (the password is a test value)
OLD_TRANSPORT_URL = "rabbit://openstack:seed-rabbit-pw@old-control:5672/"


def dhcp_device_id(host: str, network_id: str) -> str:
    """neutron.common.utils.get_dhcp_agent_device_id: how the DHCP agent on HOST names
    its port's device."""
    return f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, host.split('.')[0])}-{network_id}"


def uid(name: str) -> str:
    """Stable UUIDs: the tests can name rows without querying for them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "pacestack-seed/" + name))


@dataclasses.dataclass
class Seed:
    networks: dict[str, str]  # name -> network id
    segments: dict[str, str]  # network name -> segment id
    instances: dict[str, str]  # name -> uuid
    ports: dict[str, str]  # name -> port id
    volumes: dict[str, str]


class Writer:
    """executemany into db.table with named columns; db names from the fixture."""

    def __init__(self, conn, dbs: dict[str, str]):
        self.conn = conn
        self.dbs = dbs
        self.cur = conn.cursor()

    def insert(self, db: str, table: str, rows: list[dict]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        names = ", ".join(f"`{c}`" for c in cols)
        marks = ", ".join(["%s"] * len(cols))
        sql = f"INSERT INTO `{self.dbs[db]}`.`{table}` ({names}) VALUES ({marks})"  # noqa: S608
        for i in range(0, len(rows), 5000):
            self.cur.executemany(sql, [tuple(r[c] for c in cols) for r in rows[i:i + 5000]])

    def scalar(self, sql: str, args=None):
        self.cur.execute(sql, args)
        return self.cur.fetchone()[0]

    def std_attrs(self, kind: str, n: int) -> list[int]:
        """n standardattributes rows; their ids. Galera spaces auto-increment ids by the
        cluster size, so they are read back, never assumed consecutive."""
        db = self.dbs["neutron"]
        self.cur.executemany(f"INSERT INTO `{db}`.standardattributes "  # noqa: S608
                             "(resource_type, created_at, revision_number) VALUES (%s, %s, 1)",
                             [(kind, NOW)] * n)
        self.cur.execute(f"SELECT id FROM `{db}`.standardattributes "  # noqa: S608
                         "WHERE resource_type = %s ORDER BY id DESC LIMIT %s", [kind, n])
        return sorted(r[0] for r in self.cur.fetchall())


def _free_allocations(w: Writer) -> None:
    """What neutron-server writes at start from ml2_conf.ini: every id in range, free."""
    w.insert("neutron", "ml2_vlan_allocations",
             [{"physical_network": "provider", "vlan_id": v, "allocated": 0}
              for v in range(100, 401)])
    w.insert("neutron", "ml2_vxlan_allocations",
             [{"vxlan_vni": v, "allocated": 0} for v in range(1000, 2001)])


def _agent(host: str, kind: str, binary: str) -> dict:
    return {"id": uid(f"agent/{kind}/{host}"), "agent_type": kind, "binary": binary,
            "topic": "N/A", "host": host, "admin_state_up": 1, "created_at": NOW,
            "started_at": NOW, "heartbeat_timestamp": NOW, "configurations": "{}",
            "load": 0}


def vif(port_id: str, net_id: str, mac: str, ip: str, mtu: int = 1500) -> dict:
    """A network_info VIF as nova cached it for a linuxbridge port."""
    return {
        "id": port_id, "address": mac, "type": "bridge",
        "details": {"port_filter": True, "connectivity": "l2"},
        "devname": ("tap" + port_id)[:14], "ovs_interfaceid": None,
        "qbh_params": None, "qbg_params": None, "active": True, "vnic_type": "normal",
        "profile": {}, "preserve_on_delete": False, "meta": {},
        "network": {"id": net_id, "bridge": ("brq" + net_id)[:14], "label": "net",
                    "meta": {"injected": False, "tenant_id": "p1", "mtu": mtu},
                    "subnets": [{"cidr": "10.0.0.0/24", "ips": [
                        {"address": ip, "type": "fixed", "version": 4, "meta": {},
                         "floating_ips": []}],
                        "gateway": {"address": "10.0.0.1", "type": "gateway", "version": 4,
                                    "meta": {}},
                        "dns": [], "routes": [], "version": 4, "meta": {"dhcp_server": None}}]},
    }


def build_seed(conn, dbs: dict[str, str]) -> Seed:
    """Insert the seed's cloud. dbs: service -> real database name."""
    w = Writer(conn, dbs)
    # --- keystone: the services' endpoints still name the upgrade VM
    svc = [("compute", "nova", "http://ocata-vm:8774/v2.1"),
           ("network", "neutron", "http://ocata-vm:9696"),
           ("volumev3", "cinderv3", "http://ocata-vm:8776/v3/%(project_id)s"),
           ("placement", "placement", "http://ocata-vm:8778"),
           ("image", "glance", "https://OCATA-VM:9292/"),
           ("object-store", "swift", "http://swift.example:8080/v1/ocata-vm/AUTH_%(tenant_id)s")]
    w.insert("keystone", "service", [{"id": uid(f"svc/{t}").replace("-", ""), "type": t,
                                      "enabled": 1, "extra": json.dumps({"name": n})}
                                     for t, n, _u in svc])
    w.insert("keystone", "endpoint", [
        {"id": uid(f"ep/{t}/{i}").replace("-", ""), "legacy_endpoint_id": None, "interface": i,
         "service_id": uid(f"svc/{t}").replace("-", ""), "url": u, "extra": "{}", "enabled": 1,
         "region_id": "RegionOne"}
        for t, _n, u in svc for i in ("public", "internal", "admin")])
    # --- neutron
    _free_allocations(w)
    nets = {name: uid(f"net/{name}") for name, *_ in SEED_SEGMENTS}
    segs = {name: uid(f"seg/{name}") for name, *_ in SEED_SEGMENTS}
    sa = w.std_attrs("networks", len(nets))
    w.insert("neutron", "networks", [
        {"project_id": "p1", "id": nets[name], "name": name, "status": "ACTIVE",
         "admin_state_up": 1, "mtu": 1500, "standard_attr_id": sa[i]}
        for i, (name, *_r) in enumerate(SEED_SEGMENTS)])
    sa = w.std_attrs("segments", len(segs))
    w.insert("neutron", "networksegments", [
        {"id": segs[name], "network_id": nets[name], "network_type": kind,
         "physical_network": phys, "segmentation_id": sid, "is_dynamic": 0, "segment_index": 0,
         "standard_attr_id": sa[i], "name": None}
        for i, (name, kind, phys, sid) in enumerate(SEED_SEGMENTS)])
    w.insert("neutron", "ml2_flat_allocations",
             [{"physical_network": phys} for _n, kind, phys, _s in SEED_SEGMENTS
              if kind == "flat"])
    w.insert("neutron", "ml2_vlan_allocations",
             [{"physical_network": phys, "vlan_id": sid, "allocated": 1}
              for _n, kind, phys, sid in SEED_SEGMENTS if kind == "vlan"])
    w.insert("neutron", "agents", [
        _agent("compute01", "Linux bridge agent", "neutron-linuxbridge-agent"),
        _agent("old-control", "Linux bridge agent", "neutron-linuxbridge-agent"),
        _agent("old-control", "DHCP agent", "neutron-dhcp-agent"),
        _agent("old-control", "L3 agent", "neutron-l3-agent"),
        _agent("old-control", "Metadata agent", "neutron-metadata-agent"),
        _agent("compute05", "Open vSwitch agent", "neutron-openvswitch-agent"),
        _agent("controller", "Open vSwitch agent", "neutron-openvswitch-agent"),
        # the new controller's DHCP agent already registered: the old one's networks go to it
        _agent("controller", "DHCP agent", "neutron-dhcp-agent"),
    ])
    # what the schedulers wrote: networks on the old DHCP agent, a router on its L3 agent
    w.insert("neutron", "networkdhcpagentbindings", [
        {"network_id": nets[n], "dhcp_agent_id": uid("agent/DHCP agent/old-control"),
         "binding_index": 1} for n in ("selfservice-1137", "selfservice-1169")])
    w.insert("neutron", "networkdhcpagentbindings", [
        {"network_id": nets["selfservice-1169"],
         "dhcp_agent_id": uid("agent/DHCP agent/controller"), "binding_index": 2}])
    sa = w.std_attrs("routers", 1)
    w.insert("neutron", "routers", [{"project_id": "p1", "id": uid("router/r1"), "name": "r1",
                                     "status": "ACTIVE", "admin_state_up": 1, "enable_snat": 1,
                                     "standard_attr_id": sa[0]}])
    w.insert("neutron", "routerl3agentbindings", [
        {"router_id": uid("router/r1"), "l3_agent_id": uid("agent/L3 agent/old-control"),
         "binding_index": 1}])
    # ports: two instances on compute01 (one per kind of network), a DHCP port on old-control
    ports = {"vm-a": uid("port/vm-a"), "vm-b": uid("port/vm-b"), "dhcp": uid("port/dhcp"),
             "vm-gone": uid("port/vm-gone"), "unbound": uid("port/unbound")}
    inst = {"vm-a": uid("inst/vm-a"), "vm-b": uid("inst/vm-b"), "vm-gone": uid("inst/vm-gone")}
    port_rows = [("vm-a", "selfservice-1137", inst["vm-a"], "compute:nova", "compute01",
                  "fa:16:3e:f9:82:bf"),
                 ("vm-b", "dmz", inst["vm-b"], "compute:nova", "compute01", "fa:16:3e:00:00:0b"),
                 ("dhcp", "selfservice-1137", dhcp_device_id("old-control",
                                                             nets["selfservice-1137"]),
                  "network:dhcp", "old-control", "fa:16:3e:00:00:0d"),
                 # created before the port was ever bound: stays unbound
                 ("unbound", "selfservice-1169", "", "", "", "fa:16:3e:00:00:0e")]
    sa = w.std_attrs("ports", len(port_rows))
    w.insert("neutron", "ports", [
        {"project_id": "p1", "id": ports[p], "name": "", "network_id": nets[n],
         "mac_address": mac, "admin_state_up": 1, "status": "ACTIVE", "device_id": dev,
         "device_owner": owner, "standard_attr_id": sa[i], "ip_allocation": "immediate"}
        for i, (p, n, dev, owner, _h, mac) in enumerate(port_rows)])
    bound = [r for r in port_rows if r[4]]
    w.insert("neutron", "ml2_port_bindings", [
        {"port_id": ports[p], "host": h, "vif_type": "bridge", "vnic_type": "normal",
         "profile": "", "vif_details": LB_DETAILS, "status": "ACTIVE"}
        for p, _n, _d, _o, h, _m in bound] + [
        # neutron's unbound port: host '', vif_type unbound (portbindings.VIF_TYPE_UNBOUND)
        {"port_id": ports["unbound"], "host": "", "vif_type": "unbound", "vnic_type": "normal",
         "profile": "", "vif_details": "", "status": "ACTIVE"},
        # a live migration of vm-a to compute05 that never finished: neutron's second,
        # INACTIVE binding for the destination (multiple port bindings), with its level
        {"port_id": ports["vm-a"], "host": "compute05", "vif_type": "bridge",
         "vnic_type": "normal", "profile": "", "vif_details": LB_DETAILS,
         "status": "INACTIVE"}])
    w.insert("neutron", "ml2_port_binding_levels", [
        {"port_id": ports[p], "host": h, "level": 0, "driver": "linuxbridge",
         "segment_id": segs[n]} for p, n, _d, _o, h, _m in bound] + [
        {"port_id": ports["vm-a"], "host": "compute05", "level": 0, "driver": "linuxbridge",
         "segment_id": segs["selfservice-1137"]}])
    w.insert("neutron", "segmenthostmappings", [
        {"segment_id": segs[name], "host": h} for name, kind, *_r in SEED_SEGMENTS
        for h in ("compute01", "old-control")])
    # --- cinder
    s_vol = {"rbd": uid("cinder-svc/old/rbd"), "rbd2": uid("cinder-svc/old/rbd2"),
             "new-rbd": uid("cinder-svc/new/rbd")}
    base = {"created_at": NOW, "deleted": 0, "report_count": 1, "disabled": 0,
            "availability_zone": "nova", "cluster_name": None,
            "object_current_version": CINDER_OBJECTS}
    vol = {**base, "binary": "cinder-volume", "topic": "cinder-volume",
           "rpc_current_version": CINDER_RPC["cinder-volume"]}
    w.insert("cinder", "services", [
        {**base, "host": "old-control", "binary": "cinder-scheduler",
         "topic": "cinder-scheduler", "uuid": uid("cinder-svc/old/sched"),
         "rpc_current_version": CINDER_RPC["cinder-scheduler"]},
        {**base, "host": "old-control", "binary": "cinder-backup", "topic": "cinder-backup",
         "uuid": uid("cinder-svc/old/backup"),
         "rpc_current_version": CINDER_RPC["cinder-backup"]},
        {**vol, "host": "old-control@rbd", "uuid": s_vol["rbd"]},
        {**vol, "host": "old-control@rbd2", "uuid": s_vol["rbd2"]},
        # the new controller's cinder-volume already registered this backend
        {**vol, "host": "controller@rbd", "uuid": s_vol["new-rbd"]},
    ])
    vt = uid("voltype")
    w.insert("cinder", "volume_types", [{"id": vt, "name": "rbd", "deleted": 0,
                                          "is_public": 1, "created_at": NOW}])
    vols = {n: uid(f"vol/{n}") for n in ("v1", "v2", "v3", "gone")}
    vbase = {"created_at": NOW, "size": 1, "availability_zone": "nova", "attach_status":
             "detached", "volume_type_id": vt, "user_id": "u1", "project_id": "p1",
             "use_quota": 1}
    w.insert("cinder", "volumes", [
        {**vbase, "id": vols["v1"], "deleted": 0, "status": "in-use",
         "host": "old-control@rbd#rbd", "service_uuid": s_vol["rbd"],
         "cluster_name": None},
        {**vbase, "id": vols["v2"], "deleted": 0, "status": "available",
         "host": "old-control@rbd#rbd", "service_uuid": s_vol["rbd"], "cluster_name": None},
        {**vbase, "id": vols["v3"], "deleted": 0, "status": "available",
         "host": "old-control@rbd2#pool-b", "service_uuid": s_vol["rbd2"],
         "cluster_name": None},
        {**vbase, "id": vols["gone"], "deleted": 1, "status": "deleted",
         "host": "old-control@rbd#rbd", "service_uuid": s_vol["rbd"], "cluster_name": None},
    ])
    w.insert("cinder", "volume_attachment", [
        {"id": uid("att/v1"), "volume_id": vols["v1"], "attached_host": "compute01",
         "instance_uuid": inst["vm-a"], "deleted": 0, "attach_status": "attached",
         "created_at": NOW, "mountpoint": "/dev/vdb", "connector": CONNECTOR}])
    # cinder's image-volume cache: the volume's host, as image_volume_cache_create stores it
    w.insert("cinder", "image_volume_cache_entries", [
        {"host": "old-control@rbd#rbd", "cluster_name": None, "image_id": uid("image/cirros"),
         "volume_id": vols["v2"], "size": 1, "image_updated_at": NOW, "last_used": NOW}])
    w.insert("cinder", "backups", [
        {"id": uid("backup/1"), "volume_id": vols["v2"], "host": "old-control", "deleted": 0,
         "status": "available", "created_at": NOW},
        {"id": uid("backup/gone"), "volume_id": vols["v2"], "host": "old-control",
         "deleted": 1, "status": "deleted", "created_at": NOW}])
    w.insert("cinder", "group_types", [{"id": uid("gt"), "name": "gt", "deleted": 0,
                                         "is_public": 1, "created_at": NOW}])
    w.insert("cinder", "groups", [
        {"id": uid("group/1"), "host": "old-control@rbd#rbd", "deleted": 0,
         "status": "available", "group_type_id": uid("gt"), "created_at": NOW,
         "cluster_name": None}])
    # --- nova: compute01 (old), compute05 (new, already running nova-compute)
    nbase = {"created_at": NOW, "deleted": 0, "report_count": 1, "disabled": 0,
             "forced_down": 0, "version": 74}  # nova 34's SERVICE_VERSION
    w.insert("nova", "services", [
        {**nbase, "host": "compute01", "binary": "nova-compute", "topic": "compute",
         "uuid": uid("nova-svc/compute01")},
        {**nbase, "host": "compute05", "binary": "nova-compute", "topic": "compute",
         "uuid": uid("nova-svc/compute05")},
        # the old controller's control services, still registered (and "up" until their
        # report times out); the new controller's scheduler already registered itself
        {**nbase, "host": "old-control", "binary": "nova-conductor", "topic": "conductor",
         "uuid": uid("nova-svc/old-control/conductor")},
        {**nbase, "host": "old-control", "binary": "nova-scheduler", "topic": "scheduler",
         "uuid": uid("nova-svc/old-control/scheduler")},
        {**nbase, "host": "controller", "binary": "nova-scheduler", "topic": "scheduler",
         "uuid": uid("nova-svc/controller/scheduler")}])
    cn_uuid = {"compute01": uid("cn/compute01"), "compute05": uid("cn/compute05")}
    cn = {"vcpus": 8, "memory_mb": 16384, "local_gb": 100, "vcpus_used": 0,
          "memory_mb_used": 0, "local_gb_used": 0, "hypervisor_type": "QEMU",
          "hypervisor_version": 8000000, "cpu_info": "{}", "deleted": 0, "created_at": NOW}
    svc_ids = {h: w.scalar(f"SELECT id FROM `{dbs['nova']}`.services "  # noqa: S608
                           "WHERE host = %s", [h]) for h in cn_uuid}
    w.cur.execute(f"UPDATE `{dbs['nova_api']}`.cell_mappings "  # noqa: S608
                  "SET transport_url = %s WHERE name = 'cell1'", [OLD_TRANSPORT_URL])
    w.insert("nova", "compute_nodes", [
        {**cn, "service_id": svc_ids[h], "host": h, "hypervisor_hostname": f"{h}.domain",
         "uuid": cn_uuid[h]} for h in cn_uuid])
    cn_ids = {h: w.scalar(f"SELECT id FROM `{dbs['nova']}`.compute_nodes "  # noqa: S608
                          "WHERE host = %s", [h]) for h in cn_uuid}
    cell1 = w.scalar(f"SELECT id FROM `{dbs['nova_api']}`.cell_mappings "  # noqa: S608
                     "WHERE name = 'cell1'")
    w.insert("nova_api", "host_mappings", [{"created_at": NOW, "cell_id": cell1,
                                             "host": "compute01"}])
    ibase = {"created_at": NOW, "user_id": "u1", "project_id": "p1", "memory_mb": 512,
             "vcpus": 1, "root_gb": 1, "host": "compute01", "node": "compute01.domain",
             "launched_on": "compute01", "compute_id": cn_ids["compute01"],
             "availability_zone": "nova", "power_state": 4, "vm_state": "stopped",
             "task_state": None, "launched_at": NOW}
    gone_id = None
    w.insert("nova", "instances", [
        {**ibase, "uuid": inst["vm-a"], "display_name": "vm-a", "hostname": "vm-a",
         "deleted": 0},
        {**ibase, "uuid": inst["vm-b"], "display_name": "vm-b", "hostname": "vm-b",
         "deleted": 0},
        {**ibase, "uuid": inst["vm-gone"], "display_name": "vm-gone", "hostname": "vm-gone",
         "deleted": 0, "vm_state": "deleted"},
    ])
    gone_id = w.scalar(f"SELECT id FROM `{dbs['nova']}`.instances "  # noqa: S608
                       "WHERE uuid = %s", [inst["vm-gone"]])
    w.cur.execute(f"UPDATE `{dbs['nova']}`.instances SET deleted = id "  # noqa: S608
                  "WHERE id = %s", [gone_id])
    w.insert("nova", "instance_info_caches", [
        {"created_at": NOW, "instance_uuid": inst["vm-a"], "deleted": 0, "network_info":
         json.dumps([vif(ports["vm-a"], nets["selfservice-1137"], "fa:16:3e:f9:82:bf",
                         "10.0.0.5")])},
        {"created_at": NOW, "instance_uuid": inst["vm-b"], "deleted": 0, "network_info":
         json.dumps([vif(ports["vm-b"], nets["dmz"], "fa:16:3e:00:00:0b", "10.0.1.5")])},
        {"created_at": NOW, "instance_uuid": inst["vm-gone"], "deleted": 1, "network_info":
         json.dumps([vif(ports["vm-gone"], nets["dmz"], "fa:16:3e:00:00:0c", "10.0.1.6")])},
    ])
    # every instance nova creates has its flavor in instance_extra: the API and
    # compute load it for any listing or action
    w.insert("nova", "instance_extra", [
        {"created_at": NOW, "instance_uuid": u, "deleted": 0, "flavor": FLAVOR}
        for u in inst.values()])
    w.insert("nova_api", "instance_mappings", [
        {"created_at": NOW, "instance_uuid": u, "cell_id": cell1, "project_id": "p1",
         "user_id": "u1", "queued_for_delete": 0} for u in inst.values()])
    # --- placement: a provider per compute node, allocations of the instances on compute01
    w.insert("placement", "resource_providers", [
        {"created_at": NOW, "uuid": cn_uuid[h], "name": f"{h}.domain", "generation": 1}
        for h in cn_uuid])
    w.cur.execute(f"UPDATE `{dbs['placement']}`.resource_providers "  # noqa: S608
                  "SET root_provider_id = id")
    rp = {h: w.scalar(f"SELECT id FROM `{dbs['placement']}`.resource_providers "  # noqa: S608
                      "WHERE uuid = %s", [cn_uuid[h]]) for h in cn_uuid}
    w.insert("placement", "inventories", [
        {"created_at": NOW, "resource_provider_id": rp[h], "resource_class_id": rc,
         "total": total, "reserved": 0, "min_unit": 1, "max_unit": total, "step_size": 1,
         "allocation_ratio": 1.0}
        for h in rp for rc, total in ((0, 8), (1, 16384), (2, 100))])
    w.insert("placement", "projects", [{"created_at": NOW, "external_id": "p1"}])
    w.insert("placement", "users", [{"created_at": NOW, "external_id": "u1"}])
    pid = w.scalar(f"SELECT id FROM `{dbs['placement']}`.projects")  # noqa: S608
    uid_ = w.scalar(f"SELECT id FROM `{dbs['placement']}`.users")  # noqa: S608
    w.insert("placement", "consumers", [
        {"created_at": NOW, "uuid": inst[n], "project_id": pid, "user_id": uid_,
         "generation": 1} for n in ("vm-a", "vm-b")])
    w.insert("placement", "allocations", [
        {"created_at": NOW, "resource_provider_id": rp["compute01"], "consumer_id": inst[n],
         "resource_class_id": rc, "used": used}
        for n in ("vm-a", "vm-b") for rc, used in ((0, 1), (1, 512), (2, 1))])
    conn.commit()
    w.cur.close()
    return Seed(nets, segs, inst, ports, vols)
