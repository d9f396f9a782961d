"""The seed's cutover, done by `pacestack migrate` on the real schemas: its nine
segments become its "new neutron table", and the cinder and nova rewrites it did
by hand are done with everything the operator left out."""

from __future__ import annotations

import contextlib
import json

from pacestack.migrate import plan as planmod
from pacestack.migrate import verify

from tests.fixtures.openstack import every_release
from tests.migrate import seed_cloud

# every release of the matrix: its schemas, and verify runs its own *-status checks
pytestmark = every_release

SEG_ORDER = [name for name, *_ in seed_cloud.SEED_SEGMENTS]


def segments_in_seed_order(s) -> list[tuple]:
    rows = {r[0]: r[1:] for r in s.sql(
        "neutron", "SELECT n.name, g.network_type, g.physical_network, g.segmentation_id "
        "FROM networksegments g JOIN networks n ON n.id = g.network_id")}
    return [tuple(rows[name]) for name in SEG_ORDER]


def test_plan_writes_nothing_and_lists_every_change(seeded):
    before = seeded.checksums()
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] and out["changes_total"] == seed_cloud.SEED_CHANGES
    assert out["release"] == seeded.os.release
    steps = {s["step"]: s for s in out["steps"]}
    assert steps["neutron"]["counts"]["neutron.networksegments update"] == 9
    seg = [c for c in steps["neutron"]["changes"] if c["table"] == "neutron.networksegments"]
    dmz = next(c for c in seg if c["key"]["id"] == seeded.seed.segments["dmz"])
    assert dmz["before"] == {"network_type": "flat", "physical_network": "dmz",
                             "segmentation_id": None}
    assert dmz["after"] == {"network_type": "vlan", "physical_network": "provider",
                            "segmentation_id": 100}
    assert seeded.checksums() == before
    dbs = {r[0] for r in seeded.os.server.execute("SHOW DATABASES")}
    assert seeded.journal_db not in dbs  # plan does not even create the journal


def test_seed_cutover_apply_verify(seeded):
    assert segments_in_seed_order(seeded) == [
        (kind, phys, sid) for _n, kind, phys, sid in seed_cloud.SEED_SEGMENTS]
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["changes"] == seed_cloud.SEED_CHANGES and result["run_id"]
    assert result["release"] == seeded.os.release
    # the seed's "new neutron table"
    assert segments_in_seed_order(seeded) == seed_cloud.SEED_EXPECTED
    # allocations: new ids allocated, old ones released, flat physnets gone
    alloc = dict(((p, v), a) for p, v, a in seeded.sql(
        "neutron", "SELECT physical_network, vlan_id, allocated FROM ml2_vlan_allocations "
        "WHERE allocated = 1"))
    assert set(alloc) == {("provider", v) for v in (100, 300, 301, 302, 303)}
    assert {r[0] for r in seeded.sql("neutron", "SELECT vxlan_vni FROM ml2_vxlan_allocations "
                                                "WHERE allocated = 1")} == \
        {1137, 1169, 1199, 1130}
    assert seeded.sql("neutron", "SELECT * FROM ml2_flat_allocations") == ()
    # overlay MTU from the mapping (the seed's 1422), provider networks untouched
    mtus = dict(seeded.sql("neutron", "SELECT name, mtu FROM networks"))
    assert mtus["selfservice-1137"] == 1422 and mtus["dmz"] == 1500
    # bindings: ovs with the openvswitch firewall's details, on the new hosts
    b = {r[0]: r[1:] for r in seeded.sql(
        "neutron", "SELECT port_id, host, vif_type, vif_details FROM ml2_port_bindings")}
    p = seeded.seed.ports
    assert b[p["vm-a"]][:2] == ("compute05", "ovs")
    details = json.loads(b[p["vm-a"]][2])
    assert details["ovs_hybrid_plug"] is False
    # what that release's openvswitch driver writes for a kernel-datapath port
    assert details.get("ovs_create_tap", False) is (seeded.os.release == "2026.2")
    assert b[p["dhcp"]][:2] == ("controller", "ovs")
    assert set(seeded.sql("neutron", "SELECT driver, host FROM ml2_port_binding_levels")) == \
        {("openvswitch", "compute05"), ("openvswitch", "controller")}
    assert seeded.sql("neutron", "SELECT COUNT(*) FROM agents WHERE agent_type = "
                                 "'Linux bridge agent'")[0][0] == 0
    # cinder: host part renamed, backend and pool kept, deleted rows untouched
    v = seeded.seed.volumes
    hosts = dict(seeded.sql("cinder", "SELECT id, host FROM volumes"))
    assert hosts[v["v1"]] == "controller@rbd#rbd" and hosts[v["v3"]] == "controller@rbd2#pool-b"
    assert hosts[v["gone"]] == "old-control@rbd#rbd"
    svc_uuid = dict(seeded.sql("cinder", "SELECT id, service_uuid FROM volumes"))
    new_rbd = seed_cloud.uid("cinder-svc/new/rbd")
    assert svc_uuid[v["v1"]] == new_rbd and svc_uuid[v["v3"]] == seed_cloud.uid(
        "cinder-svc/old/rbd2")
    live = set(seeded.sql("cinder", "SELECT host, `binary` FROM services WHERE deleted = 0"))
    assert live == {("controller", "cinder-scheduler"), ("controller", "cinder-backup"),
                    ("controller@rbd", "cinder-volume"), ("controller@rbd2", "cinder-volume")}
    assert seeded.sql("cinder", "SELECT host FROM backups ORDER BY deleted") == \
        (("controller",), ("old-control",))
    assert seeded.sql("cinder", "SELECT attached_host FROM volume_attachment") == \
        (("compute05",),)
    # nova: host, node, launched_on, compute_id; deleted instance untouched
    inst = {r[0]: r[1:] for r in seeded.sql(
        "nova", "SELECT uuid, host, node, launched_on, compute_id, deleted FROM instances")}
    cn05 = seeded.sql("nova", "SELECT id FROM compute_nodes WHERE host = 'compute05'")[0][0]
    i = seeded.seed.instances
    assert inst[i["vm-a"]][:4] == ("compute05", "compute05.domain", "compute05", cn05)
    assert inst[i["vm-gone"]][0] == "compute01" and inst[i["vm-gone"]][4] != 0
    cache = json.loads(seeded.sql("nova", "SELECT network_info FROM instance_info_caches "
                                          "WHERE instance_uuid = %s", [i["vm-a"]])[0][0])
    assert cache[0]["type"] == "ovs" and cache[0]["network"]["bridge"] == "br-int"
    assert cache[0]["network"]["meta"]["mtu"] == 1422 and cache[0]["devname"] == \
        ("tap" + p["vm-a"])[:14]
    gone = json.loads(seeded.sql("nova", "SELECT network_info FROM instance_info_caches "
                                         "WHERE instance_uuid = %s", [i["vm-gone"]])[0][0])
    assert gone[0]["type"] == "bridge"
    assert seeded.sql("nova_api", "SELECT host FROM host_mappings ORDER BY host") == \
        (("compute01",), ("compute05",))
    rp05 = seeded.sql("placement", "SELECT id FROM resource_providers WHERE name = "
                                   "'compute05.domain'")[0][0]
    assert {r[0] for r in seeded.sql("placement", "SELECT resource_provider_id FROM "
                                                  "allocations")} == {rp05}
    # keystone: host replaced, port and path kept, a path merely naming it untouched
    urls = {r[0] for r in seeded.sql("keystone", "SELECT url FROM endpoint")}
    assert "http://controller.domain:8776/v3/%(project_id)s" in urls
    assert "https://controller.domain:9292/" in urls
    assert "http://swift.example:8080/v1/ocata-vm/AUTH_%(tenant_id)s" in urls
    assert not any("//ocata-vm" in u.lower() for u in urls)
    # a second run finds nothing left to do
    with contextlib.closing(seeded.cloud()) as c:
        assert planmod.build(c, seeded.mapping()).changes == []
        assert verify.invariants(c, seeded.mapping()) == []
    # the projects' own checks and nova's objects, through `pacestack migrate verify`
    r = seeded.cli("verify", "--mapping", str(seeded.mapping_path), "--format", "json")
    found = json.loads(r.stdout)["findings"]
    assert r.returncode == 0, [f for f in found if f["severity"] == "error"]
    ok = {f["subject"] for f in found if f["code"] == "UPSTREAM_CHECK_OK"}
    for check in ("cinder-status: Service UUIDs", "nova-status: Cells v2",
                  "nova-status: Older than N-1 computes", "placement-status: Missing Root "
                  "Provider IDs", "neutron-status: VLAN allocations valid segmentation ID check",
                  "neutron-status: NetworkSegments unique constraint check"):
        assert check in ok, (check, sorted(ok))
    assert any(f["code"] == "NOVA_READBACK_OK" for f in found)


def test_one_instance_moves_alone(seeded):
    i, p = seeded.seed.instances, seeded.seed.ports
    text = seed_cloud.SEED_MAPPING.replace(
        "compute01 = compute05 compute05.domain",
        f"instance {i['vm-a']} = compute05 compute05.domain")
    with contextlib.closing(seeded.cloud()) as c:
        from pacestack.migrate import apply as applymod
        r = applymod.apply(c, seeded.mapping(text))
    assert r.changes > 0
    hosts = dict(seeded.sql("nova", "SELECT uuid, host FROM instances WHERE deleted = 0"))
    assert hosts == {i["vm-a"]: "compute05", i["vm-b"]: "compute01"}
    b = dict(seeded.sql("neutron", "SELECT port_id, host FROM ml2_port_bindings"))
    assert b[p["vm-a"]] == "compute05" and b[p["vm-b"]] == "compute01"
    # vm-b stays, but its binding and cache are ovs now, consistent with each other
    assert seeded.sql("neutron", "SELECT COUNT(*) FROM ml2_port_bindings WHERE vif_type = "
                                 "'bridge'") == ((0,),)
    assert seeded.sql("placement", "SELECT COUNT(DISTINCT resource_provider_id) FROM "
                                   "allocations") == ((2,),)


def test_verify_fails_before_apply(seeded):
    r = seeded.cli("verify", "--mapping", str(seeded.mapping_path), "--skip-upstream")
    assert r.returncode == 1
    for code in ("BINDING_LINUXBRIDGE", "CINDER_OLD_HOST", "INSTANCE_OLD_HOST",
                 "INFO_CACHE_BRIDGE", "ENDPOINT_OLD_HOST", "AGENT_STALE"):
        assert code in r.stdout, code


def test_unversioned_cinder_service_is_reported(seeded):
    """A live services row without versions (Liberty-era, or written by hand) makes
    every new cinder service die with ServiceTooOld at start: verify names it."""
    seeded.sql("cinder", "UPDATE services SET rpc_current_version = NULL "
                         "WHERE host = 'old-control@rbd2'")
    with contextlib.closing(seeded.cloud()) as c:
        found = [f for f in verify.invariants(c, seeded.mapping(), only=["cinder"])
                 if f.code == "CINDER_SERVICE_UNVERSIONED"]
    assert len(found) == 1 and "old-control@rbd2" in found[0].message
    assert "cinder-manage service remove" in found[0].subject
