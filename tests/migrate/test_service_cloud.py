"""The cutover on a cloud nobody here wrote: `pacestack migrate` on the rows the
OpenStack services themselves wrote (tests/migrate/service_cloud/generate.py),
on the newest and the oldest release of the matrix, each cloud written by that
release's own code (the middle one adds ~6 min and no difference the two ends miss)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import timings
from tests.fixtures.openstack import newest_and_oldest_release
from tests.migrate import service_cloud
from tests.migrate.conftest import Seeded, write_conf
from tests.migrate.service_cloud.generate import OLD, uid


@pytest.fixture
def svc(openstack_mariadb, openstack_release, service_cloud_dirs, tmp_path):
    directory, venv = service_cloud_dirs(openstack_release)
    cloud = service_cloud.ServiceCloud(openstack_mariadb, venv, directory,
                                       release=openstack_release)
    try:
        cloud.load()
        timings.TIMINGS.setdefault("service_cloud_load", []).append(round(cloud.load_seconds, 2))
        ml2 = tmp_path / "ml2_conf.ini"
        ml2.write_text(service_cloud.ML2_CONF.read_text())
        cloud.config_file("ml2_conf.ini").write_text(service_cloud.ML2_CONF.read_text())
        mapping = tmp_path / "mapping.conf"
        mapping.write_text(service_cloud.MAPPING.read_text())
        journal = f"{cloud.prefix}_pacestack"
        conf = write_conf(tmp_path / "pacestack.conf", cloud, ml2, journal)
        yield Seeded(cloud, None, conf, mapping, ml2, journal)
        cloud.server.execute(f"DROP DATABASE IF EXISTS `{journal}`")
    finally:
        cloud.drop()


def all_checksums(s: Seeded) -> dict[str, object]:
    """CHECKSUM TABLE of every table of every service database."""
    out = {}
    for name, db in s.os.db_names.items():
        for (table,) in s.os.server.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE'", (db,)):
            out[f"{name}.{table}"] = s.os.server.execute(
                f"CHECKSUM TABLE `{db}`.`{table}`")[0][1]
    return out


def old_host_rows(s: Seeded) -> list[tuple[str, str, str, list]]:
    """(database, table, column, values) of every text column still naming the old
    controller or a moved compute (report aid, not the migrate residue scan)."""
    found = []
    for name, db in s.os.db_names.items():
        cols = s.os.server.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
            "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
            "WHERE c.table_schema = %s AND c.data_type IN "
            "('varchar', 'char', 'text', 'mediumtext', 'longtext')", (db,))
        for table, column in cols:
            values = s.os.server.execute(
                f"SELECT LEFT(`{column}`, 90) FROM `{db}`.`{table}` WHERE `{column}` REGEXP "  # noqa: S608
                "'(^|[^a-z0-9-])(old-control|compute01)([^a-z0-9-]|$)'")
            if values:
                found.append((name, table, column, [v for (v,) in values]))
    return found


# What the residue scan finds that no step covers yet on this cloud, each a gap in
# migrate (never in the scan): info caches of instances that stay where they are but
# whose ports the neutron step rebinds to ovs, in every cell; cell2's control services;
# the connector of an attachment on a moved compute; a Linux bridge agent's
# configurations. plan refuses them until a step covers them or an operator keeps them.
KNOWN_GAPS = {"cinder.volume_attachment.connector", "neutron.agents.configurations",
              "nova.instance_info_caches.network_info",
              "nova_cell2.instance_info_caches.network_info", "nova_cell2.services.host"}


@newest_and_oldest_release
def test_the_scan_refuses_every_old_name_no_step_covers(svc):
    before = all_checksums(svc)
    r = svc.cli("plan", "--force", "--mapping", str(svc.mapping_path), "--format", "json")
    assert r.returncode == 2, r.stdout + r.stderr
    refusals = json.loads(r.stdout)["refusals"]
    uncovered = {f["subject"] for f in refusals if f["code"] == "RESIDUE_UNCOVERED"}
    assert uncovered == KNOWN_GAPS, uncovered ^ KNOWN_GAPS
    # a path that merely contains the old name, and old-control-bak, are other names
    assert not [f for f in refusals if "old-control-bak" in f["message"]]
    accounting = json.loads(r.stdout)["accounting"]
    assert accounting["entries"], "the accounting lists what it found"
    r = svc.cli("apply", "--force", "--mapping", str(svc.mapping_path))
    assert r.returncode == 2 and "RESIDUE_UNCOVERED" in r.stderr, r.stderr
    assert all_checksums(svc) == before


@newest_and_oldest_release
def test_service_cloud_cutover(svc):
    # the known gaps kept explicitly (the operator's way), so the rest of the cutover,
    # verify and rollback run on what the services wrote
    text = svc.mapping_path.read_text().rstrip("\n") + "\n[keep]\n" + "".join(
        f"{c} = known gap, see KNOWN_GAPS\n" for c in sorted(KNOWN_GAPS))
    svc.mapping_path.write_text(text)
    mp = str(svc.mapping_path)
    # the services wrote the linuxbridge era: bridge bindings, linuxbridge levels
    assert svc.sql("neutron", "SELECT DISTINCT vif_type FROM ml2_port_bindings") == (
        ("bridge",),)
    assert svc.sql("neutron", "SELECT DISTINCT driver FROM ml2_port_binding_levels") == (
        ("linuxbridge",),)
    live_port = svc.sql("neutron", "SELECT id FROM ports WHERE name = 'vm/vm-live'")[0][0]
    assert set(svc.sql("neutron", "SELECT host, status FROM ml2_port_bindings "
                                  "WHERE port_id = %s", [live_port])) == {
        ("compute01", "ACTIVE"), ("compute02", "INACTIVE")}
    before = all_checksums(svc)

    # the interrupted live migration left vm-live active on compute01: refused
    r = svc.cli("plan", "--mapping", mp, "--format", "json")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "INSTANCE_NOT_STOPPED" in r.stdout + r.stderr
    assert all_checksums(svc) == before

    r = svc.cli("apply", "--force", "--mapping", mp, "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    # the interrupted live migration: one ACTIVE ovs binding on the mapped host
    assert set(svc.sql("neutron", "SELECT host, status, vif_type FROM ml2_port_bindings "
                                  "WHERE port_id = %s", [live_port])) == {
        ("compute05", "ACTIVE", "ovs")}

    # keystone: every endpoint host named by the mapping replaced; path kept
    urls = {u for (u,) in svc.sql("keystone", "SELECT url FROM endpoint")}
    assert "http://controller.domain:8776/v3/%(project_id)s" in urls
    assert "https://cloud.example:8774/v2.1" in urls
    assert f"https://cloud.example/{OLD}/image" in urls  # a path is not a host
    # neutron segments: linuxbridge's flat/vlan -> openvswitch's vlan/vxlan
    segs = dict(svc.sql("neutron", "SELECT n.name, CONCAT_WS(' ', g.network_type, "
                        "g.physical_network, g.segmentation_id) FROM networksegments g "
                        "JOIN networks n ON n.id = g.network_id"))
    assert segs["dmz"] == "vlan provider 100" and segs["selfservice-1137"] == "vxlan 1137"
    assert segs["floating"] == "vlan provider 303"
    alloc = {(p, v) for p, v in svc.sql("neutron", "SELECT physical_network, vlan_id FROM "
                                        "ml2_vlan_allocations WHERE allocated = 1")}
    assert alloc == {("provider", v) for v in (100, 300, 301, 302, 303)}
    mtus = dict(svc.sql("neutron", "SELECT name, mtu FROM networks"))
    assert mtus["selfservice-1169"] == 1422 and mtus["prod"] == 1500
    assert svc.sql("neutron", "SELECT DISTINCT vif_type FROM ml2_port_bindings") == (
        ("ovs",),)
    assert svc.sql("neutron", "SELECT DISTINCT driver FROM ml2_port_binding_levels") == (
        ("openvswitch",),)
    dhcp_hosts = {h for (h,) in svc.sql(
        "neutron", "SELECT b.host FROM ml2_port_bindings b JOIN ports p ON p.id = b.port_id "
        "WHERE p.device_owner = 'network:dhcp'")}
    assert dhcp_hosts == {"controller"}
    # cinder: host part renamed, @backend#pool kept; old-control-bak is another host
    vols = dict(svc.sql("cinder", "SELECT display_name, host FROM volumes"))
    assert vols["v1"] == "controller@rbd#rbd" and vols["v3"] == "controller@rbd2#pool-b"
    assert vols["v-bak"] == "old-control-bak@rbd#rbd" and vols["v-never"] is None
    assert vols["v-gone"] == f"{OLD}@rbd#rbd"  # deleted rows stay as they were
    # nova: instances of compute01 on compute05, others untouched
    inst = {r[0]: r[1:] for r in svc.sql("nova", "SELECT display_name, host, node, deleted "
                                                 "FROM instances")}
    assert inst["vm-a"][:2] == ("compute05", "compute05.domain")
    assert inst["vm-bak"][0] == "old-control-bak" and inst["vm-02"][0] == "compute02"
    assert inst["vm-gone"][0] == "compute01" and inst["vm-gone"][2] != 0
    # placement: vm-a's allocation on compute05's provider
    rp = svc.sql("placement", "SELECT r.name FROM allocations a JOIN resource_providers r "
                              "ON r.id = a.resource_provider_id WHERE a.consumer_id = %s",
                 [uid("instance/vm-a")])
    assert {n for (n,) in rp} == {"compute05.domain"}

    r = svc.cli("verify", "--mapping", mp, "--format", "json")
    findings = json.loads(r.stdout)["findings"] if r.stdout.strip() else []
    uncovered = {f["subject"] for f in findings if f["code"] == "RESIDUE_UNCOVERED"}
    assert uncovered <= KNOWN_GAPS, uncovered - KNOWN_GAPS
    errors = [f for f in findings if f["severity"] == "error"]
    print("verify exit", r.returncode, "errors:", json.dumps(errors, indent=1))
    residue = old_host_rows(svc)
    print("rows still naming old-control/compute01 after apply:")
    for row in residue:
        print("  ", *row)
    # a live row naming the old host in a column no step covers: verify fails on it
    svc.sql("keystone", "UPDATE endpoint SET extra = '{\"was\": \"http://old-control:5000/\"}' "
                        "WHERE url = 'https://cloud.example:8774/v2.1'")
    r = svc.cli("verify", "--mapping", mp, "--format", "json")
    planted = {f["subject"] for f in json.loads(r.stdout)["findings"]
               if f["code"] == "RESIDUE_UNCOVERED"}
    assert r.returncode != 0 and planted - uncovered == {"keystone.endpoint.extra"}, planted
    svc.sql("keystone", "UPDATE endpoint SET extra = '{}' "
                        "WHERE url = 'https://cloud.example:8774/v2.1'")

    r = svc.cli("rollback", run_id, "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    after = all_checksums(svc)
    assert {k: v for k, v in after.items() if v != before.get(k)} == {}
