"""rollback never writes a before-image over newer work: after the cutover the new
cloud moves an instance on (through nova's own objects, as a live migration's
last step writes it), neutron moves its port binding, creates a flat network
on a physnet the run freed and removes a host mapping; rollback then refuses,
lists those rows and changes nothing, and with their count typed back restores
everything else and keeps them."""

from __future__ import annotations

import contextlib
import json
import subprocess

from pacestack.migrate import apply as applymod

from tests.migrate import seed_cloud

# nova's post-live-migration step on the destination (ComputeManager.
# _post_live_migration_update_host and post_live_migration_at_destination): the
# instance's host and node become the destination's, through Instance.save()
_NOVA_MOVE = r"""
import sys, uuid
from nova import config, context, objects
config.parse_args(["pacestack-test", "--config-file", sys.argv[1]])
objects.register_all()
ctx = context.get_admin_context()
# the destination as its nova-compute registers itself
svc = objects.Service(ctx, host="compute06", binary="nova-compute", topic="compute",
                      report_count=0, disabled=False, uuid=str(uuid.uuid4()))
svc.create()
cn = objects.ComputeNode(ctx, host="compute06", hypervisor_hostname="compute06.domain",
                         service_id=svc.id, uuid=str(uuid.uuid4()), vcpus=8,
                         memory_mb=16384, local_gb=100, vcpus_used=0, memory_mb_used=0,
                         local_gb_used=0, hypervisor_type="QEMU", hypervisor_version=8000000,
                         cpu_info="{}", running_vms=0, free_ram_mb=16384, free_disk_gb=100,
                         current_workload=0, disk_available_least=100,
                         cpu_allocation_ratio=16.0, ram_allocation_ratio=1.5,
                         disk_allocation_ratio=1.0)
cn.create()
inst = objects.Instance.get_by_uuid(ctx, sys.argv[2])
assert inst.host == "compute05", inst.host
inst.host = "compute06"
inst.node = "compute06.domain"
inst.compute_id = cn.id
inst.task_state = None
inst.progress = 0
inst.save()
print(objects.Instance.get_by_uuid(ctx, sys.argv[2]).host)
"""


def _nova_moves(seeded, uuid: str) -> None:
    p = subprocess.run([str(seeded.os.venv / "bin" / "python"), "-c", _NOVA_MOVE,
                        str(seeded.os.config_file("nova.conf")), uuid],
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0 and p.stdout.strip().endswith("compute06"), p.stderr[-2000:]


def _neutron_moves_binding(seeded, port: str) -> None:
    """What ML2 writes for a live migration with multiple port bindings: a binding for
    the destination is created INACTIVE, activated (the source's goes INACTIVE), then
    the source's binding is deleted (Ml2Plugin.create_port_binding / activate /
    delete_port_binding); the binding levels follow their binding."""
    seeded.sql("neutron", "INSERT INTO ml2_port_bindings (port_id, host, vif_type, vnic_type, "
               "profile, vif_details, status) SELECT port_id, 'compute06', vif_type, vnic_type, "
               "profile, vif_details, 'INACTIVE' FROM ml2_port_bindings WHERE port_id = %s "
               "AND host = 'compute05'", [port])
    seeded.sql("neutron", "INSERT INTO ml2_port_binding_levels (port_id, host, level, driver, "
               "segment_id) SELECT port_id, 'compute06', level, driver, segment_id FROM "
               "ml2_port_binding_levels WHERE port_id = %s AND host = 'compute05'", [port])
    seeded.sql("neutron", "UPDATE ml2_port_bindings SET status = IF(host = 'compute06', "
               "'ACTIVE', 'INACTIVE') WHERE port_id = %s", [port])
    seeded.sql("neutron", "DELETE FROM ml2_port_binding_levels WHERE port_id = %s AND "
               "host = 'compute05'", [port])
    seeded.sql("neutron", "DELETE FROM ml2_port_bindings WHERE port_id = %s AND "
               "host = 'compute05'", [port])


def test_rollback_refuses_over_newer_work_then_keeps_it(seeded):
    s = seeded
    with contextlib.closing(s.cloud()) as c:
        r = applymod.apply(c, s.mapping(), batch_size=7)
    assert r.changes == seed_cloud.SEED_CHANGES
    vm_a, port_a = s.seed.instances["vm-a"], s.seed.ports["vm-a"]
    vm_b = s.seed.instances["vm-b"]
    freed = s.sql("neutron", "SELECT physical_network FROM ml2_flat_allocations")
    flat = {p for _n, kind, p, _i in seed_cloud.SEED_SEGMENTS if kind == "flat"} - \
        {row[0] for row in freed}
    assert flat, "the seed's apply frees a flat physnet"
    physnet = sorted(flat)[0]

    # the new cloud at work after the cutover
    _nova_moves(s, vm_a)
    _neutron_moves_binding(s, port_a)
    # a new flat network on the physnet the run freed (the flat type driver reserves it)
    s.sql("neutron", "INSERT INTO ml2_flat_allocations (physical_network) VALUES (%s)",
          [physnet])
    # `nova-manage cell_v2 delete_host compute05`: the host mapping the run inserted
    s.sql("nova_api", "DELETE FROM host_mappings WHERE host = 'compute05'")
    before = s.checksums()

    # refused, listed, nothing changed
    out = s.cli("rollback", r.run_id)
    assert out.returncode == 1, out.stderr
    err = [line for line in out.stderr.splitlines() if not line.startswith("pacestack migrate:")]
    assert len(err) == 1 and "4 rows changed since" in err[0] and "--force 4" in err[0], err
    assert "nova.instances" in out.stdout and "compute06" in out.stdout, out.stdout
    assert s.checksums() == before
    js = s.cli("rollback", r.run_id, "--format", "json")
    assert js.returncode == 1
    doc = json.loads(js.stdout)
    assert doc["refused"] and doc["rows"] == 0 and doc["already_gone"] == 1
    got = {(c["table"], c["state"]): c for c in doc["conflicts"]}
    assert set(got) == {("nova.instances", "changed"), ("neutron.ml2_port_bindings", "gone"),
                        ("neutron.ml2_port_binding_levels", "gone"),
                        ("neutron.ml2_flat_allocations", "back")}, doc["conflicts"]
    moved = {c["column"]: (c["written"], c["now"])
             for c in got[("nova.instances", "changed")]["columns"]}
    assert moved["host"] == ("compute05", "compute06")
    assert moved["node"] == ("compute05.domain", "compute06.domain")
    assert set(moved) == {"host", "node", "compute_id"}
    # a wrong count refuses too
    wrong = s.cli("rollback", r.run_id, "--force", "3")
    assert wrong.returncode == 1 and "--force 3 given, the count is 4" in wrong.stderr
    assert s.checksums() == before
    assert s.sql("nova", "SELECT host FROM instances WHERE uuid = %s", [vm_a]) == \
        (("compute06",),)

    # forced: the four rows stay as the new cloud left them, the rest is restored
    ok = s.cli("rollback", r.run_id, "--force", "4")
    assert ok.returncode == 0, ok.stderr
    assert "4 changed since kept as they are" in ok.stdout
    assert s.sql("nova", "SELECT host, node FROM instances WHERE uuid = %s", [vm_a]) == \
        (("compute06", "compute06.domain"),)
    assert s.sql("nova", "SELECT host, node FROM instances WHERE uuid = %s", [vm_b]) == \
        (("compute01", "compute01.domain"),)
    # the binding the new cloud moved stays; the run's other change to that port, the
    # removal of an interrupted live migration's INACTIVE leftover, is undone like the rest
    assert set(s.sql("neutron", "SELECT host, status FROM ml2_port_bindings WHERE "
                                "port_id = %s", [port_a])) == {("compute06", "ACTIVE"),
                                                                ("compute05", "INACTIVE")}
    assert s.sql("neutron", "SELECT host, vif_type FROM ml2_port_bindings WHERE port_id = %s",
                 [s.seed.ports["vm-b"]]) == (("compute01", "bridge"),)
    assert s.sql("neutron", "SELECT COUNT(*) FROM ml2_flat_allocations WHERE "
                 "physical_network = %s", [physnet]) == ((1,),)
    from tests.migrate.test_faults import segments
    assert segments(s) == [(k, p, i) for _n, k, p, i in seed_cloud.SEED_SEGMENTS]
    # done: a second rollback has nothing left to do
    again = s.cli("rollback", r.run_id, "--format", "json")
    assert json.loads(again.stdout)["kept"] == 4
