"""The new cloud starts on the cutover of the cloud the OpenStack services wrote
(tests/migrate/service_cloud/): `pacestack migrate apply` with the service-cloud
tests' mapping, then the new side's real services (tests/fixtures/new_cloud.py)
on the result, checked through their APIs, and last `migrate rollback` refusing
the rows the new cloud changed since.

One cloud for the module: the tests run in file order and build on each other
(the live migration needs the started server, the rollback the new cloud's work).
The mapping keeps nothing: every old name is rewritten or kept by a named rule.

Time (measured, busy 2-core machine, dump cached): ~3 s load and apply, 45-115 s
stack start (two computes), ~40 s checks and rollback; ~2-3.5 min for the module.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pacestack import proc
from tests.fixtures import openstack_build as build
from tests.fixtures import timings
from tests.fixtures.new_cloud import NewCloud, start_new_cloud
from tests.migrate import service_cloud
from tests.migrate.conftest import Seeded, write_conf
from tests.migrate.service_cloud.generate import uid

TIMES: dict[str, float] = {}
# a compute host the new cloud adds after the cutover, for a live migration
GROWN = "compute06"


@dataclass
class Smoke:
    svc: Seeded
    stack: NewCloud
    run_id: str


@pytest.fixture(scope="module")
def smoke(openstack_mariadb, service_cloud_dirs, tmp_path_factory) -> Iterator[Smoke]:
    tmp = tmp_path_factory.mktemp("svc-newcloud")
    t = time.monotonic()
    directory, venv = service_cloud_dirs(build.NEWEST)
    cloud = service_cloud.ServiceCloud(openstack_mariadb, venv, directory, release=build.NEWEST)
    stack = None
    journal = f"{cloud.prefix}_pacestack"
    try:
        cloud.load()
        ml2 = tmp / "ml2_conf.ini"
        ml2.write_text(service_cloud.ML2_CONF.read_text())
        cloud.config_file("ml2_conf.ini").write_text(service_cloud.ML2_CONF.read_text())
        # the service-cloud tests' mapping
        mapping = tmp / "mapping.conf"
        mapping.write_text(service_cloud.MAPPING.read_text())
        conf = write_conf(tmp / "pacestack.conf", cloud, ml2, journal)
        svc = Seeded(cloud, None, conf, mapping, ml2, journal)
        TIMES["load"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        # --force: the interrupted live migration of vm-live is part of this cloud
        r = svc.cli("apply", "--force", "--mapping", str(mapping), "--format", "json")
        assert r.returncode == 0, r.stdout + r.stderr
        run_id = json.loads(r.stdout)["run_id"]
        TIMES["migrate_apply"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        stack = start_new_cloud(cloud, svc.mapping(), grown={GROWN: f"{GROWN}.domain"})
        TIMES["stack_start"] = round(time.monotonic() - t, 2)
        yield Smoke(svc, stack, run_id)
    finally:
        if stack is not None:
            stack.cleanup(keep_logs=tmp)
        for log in cloud.base_dir.glob("*-api.log"):
            shutil.copy(log, tmp / log.name)
        cloud.server.execute(f"DROP DATABASE IF EXISTS `{journal}`")
        cloud.drop()
        timings.TIMINGS["service_new_cloud"] = {
            **TIMES, "stack": stack.timings if stack else None}
        print("\nservice-cloud new cloud smoke timings:", json.dumps(
            timings.TIMINGS["service_new_cloud"]))


@pytest.fixture
def timed(request):
    t = time.monotonic()
    yield
    TIMES[request.node.name] = round(time.monotonic() - t, 2)


def _server(stack: NewCloud, name: str) -> dict:
    return stack.client.compute("GET", f"/servers/{uid('instance/' + name)}")["server"]


def _port(stack: NewCloud, name: str) -> dict:
    ports = stack.client.network("GET", f"/ports?name={name}")["ports"]
    assert len(ports) == 1, (name, ports)
    return ports[0]


def _net(stack: NewCloud, name: str) -> dict:
    nets = stack.client.network("GET", f"/networks?name={name}")["networks"]
    assert len(nets) == 1, (name, nets)
    return nets[0]


def test_urls_and_bus_name_no_old_host(smoke, timed):
    # every endpoint and cell URL the cutover left names a host of the new cloud
    assert smoke.stack.findings == []


def test_conductor_serves_over_the_live_rabbitmq(smoke, timed):
    stack = smoke.stack
    services = stack.client.get("/os-services")["services"]
    up = {(s["binary"], s["host"]) for s in services if s["state"] == "up"}
    assert {("nova-conductor", "controller"), ("nova-scheduler", "controller"),
            ("nova-compute", "compute05"), ("nova-compute", GROWN)} <= up, up
    # nova-compute has no database: its service and node records reach the database
    # through the conductor over RabbitMQ (RPC calls), so an up compute05 with its
    # node listed is a round trip through the new bus
    hosts = stack.client.get("/os-hypervisors/detail")["hypervisors"]
    assert "compute05.domain" in {h["hypervisor_hostname"] for h in hosts
                                  if h["state"] == "up"}


def test_moved_instances_listed_on_their_new_compute(smoke, timed):
    stack = smoke.stack
    servers = {s["name"]: s for s in
               stack.client.get("/servers/detail?all_tenants=1")["servers"]}
    # vm-gone was deleted; vm-never never left cell0
    assert set(servers) == {"vm-a", "vm-b", "vm-live", "vm-02", "vm-bak", "vm-c2",
                            "vm-never"}, set(servers)
    where = {n: (s["OS-EXT-SRV-ATTR:host"], s["OS-EXT-SRV-ATTR:hypervisor_hostname"])
             for n, s in servers.items()}
    for name in ("vm-a", "vm-b", "vm-live"):
        assert where[name] == ("compute05", "compute05.domain"), (name, where[name])
    assert where["vm-02"] == ("compute02", "compute02.domain")
    assert where["vm-c2"] == ("compute03", "compute03.domain")  # cell2
    assert where["vm-bak"] == ("old-control-bak", "old-control-bak.domain")
    # the interrupted live migration: nova-compute on compute05 found vm-live there
    # and cleared the task it was in, as it does on start
    assert proc.wait_for(lambda: _server(stack, "vm-live")["OS-EXT-STS:task_state"] is None,
                         30, interval=0.5), _server(stack, "vm-live")
    assert _server(stack, "vm-live")["status"] == "ACTIVE"


def test_ports_bound_ovs_on_the_new_hosts(smoke, timed):
    stack = smoke.stack
    want = {"vm/vm-a": ("compute05", 1422), "vm/vm-b": ("compute05", 1500),
            "vm/vm-live": ("compute05", 1500), "vm/vm-02": ("compute02", 1422),
            "dhcp/dmz": ("controller", 1500), "dhcp/selfservice-1137": ("controller", 1422)}
    for name, (host, mtu) in want.items():
        port = _port(stack, name)
        assert (port["binding:vif_type"], port["binding:host_id"]) == ("ovs", host), (
            name, port["binding:vif_type"], port["binding:host_id"])
        assert port["binding:vif_details"].get("bridge_name") == "br-int", name
        net = stack.client.network("GET", f"/networks/{port['network_id']}")["network"]
        assert net["mtu"] == mtu, (name, net["mtu"])
    agents = stack.client.network("GET", "/agents")["agents"]
    assert {a["host"] for a in agents if a["alive"] and a["agent_type"] ==
            "Open vSwitch agent"} >= {"controller", "compute05"}


def test_stopped_moved_server_starts_and_plugs_ovs(smoke, timed):
    stack = smoke.stack
    vm = uid("instance/vm-a")
    stack.client.compute("POST", f"/servers/{vm}/action", {"os-start": None})

    def active() -> bool:
        s = stack.client.compute("GET", f"/servers/{vm}")["server"]
        assert s["status"] != "ERROR", s.get("fault")
        return s["status"] == "ACTIVE" and s["OS-EXT-STS:task_state"] is None
    assert proc.wait_for(active, 60, interval=0.5), stack.procs["nova-compute-compute05"].tail()
    plugged = [p for p in stack.plugged("compute05") if p["instance"] == vm]
    assert [(p["port"], p["os_vif"], p["plugin"], p["bridge"], p["mtu"]) for p in plugged] == \
        [(_port(stack, "vm/vm-a")["id"], "VIFOpenVSwitch", "ovs", "br-int", 1422)]


def _attachment(svc: Seeded, volume: str) -> dict:
    rows = svc.sql("cinder", "SELECT id, instance_uuid, attached_host, connector, "
                   "attach_status FROM volume_attachment WHERE volume_id = %s AND deleted = 0",
                   [volume])
    assert len(rows) == 1, rows
    aid, inst, host, connector, status = rows[0]
    return {"id": aid, "instance": inst, "host": host, "status": status,
            "connector": json.loads(connector) if connector else None}


def test_moved_attachment_on_the_new_compute(smoke, timed):
    stack, v1 = smoke.stack, uid("volume/v1")
    vol = stack.volume("GET", f"/volumes/{v1}")["volume"]
    assert vol["status"] == "in-use" and vol["os-vol-host-attr:host"] == "controller@rbd#rbd"
    assert [(a["server_id"], a["host_name"]) for a in vol["attachments"]] == [
        (uid("instance/vm-a"), "compute05")]
    att = stack.volume("GET", f"/attachments/{vol['attachments'][0]['attachment_id']}",
                       version="volume 3.27")["attachment"]
    assert att["status"] == "attached" and att["instance"] == uid("instance/vm-a")


def test_moved_attachment_connector_names_the_new_compute(smoke, timed):
    # the connector is what cinder-volume hands its driver on detach: the host that
    # holds the connection, compute05 after the move
    att = _attachment(smoke.svc, uid("volume/v1"))
    assert (att["host"], att["connector"]["host"]) == ("compute05", "compute05"), att


def test_volume_attaches_and_detaches_on_a_moved_server(smoke, timed):
    stack = smoke.stack
    vm, vol = uid("instance/vm-b"), uid("volume/v2")
    stack.client.compute("POST", f"/servers/{vm}/os-volume_attachments",
                         {"volumeAttachment": {"volumeId": vol}})
    v = stack.wait_volume(vol, "in-use")
    assert [(a["server_id"], a["host_name"]) for a in v["attachments"]] == [(vm, "compute05")]
    assert _attachment(smoke.svc, vol)["connector"]["host"] == "compute05"
    stack.client.compute("DELETE", f"/servers/{vm}/os-volume_attachments/{vol}")
    stack.wait_volume(vol, "available")


def test_new_server_boots_from_a_migrated_volume(smoke, timed):
    stack = smoke.stack
    net = _net(stack, "selfservice-1169")
    v3 = uid("volume/v3")
    stack.volume("POST", f"/volumes/{v3}/action", {"os-set_bootable": {"bootable": True}})
    body = {"server": {"name": "vm-new", "flavorRef": "2",
                       "networks": [{"uuid": net["id"]}],
                       "block_device_mapping_v2": [{
                           "boot_index": 0, "uuid": v3, "source_type": "volume",
                           "destination_type": "volume", "delete_on_termination": False}]}}
    sid = stack.client.compute("POST", "/servers", body)["server"]["id"]

    def active() -> bool:
        s = stack.client.compute("GET", f"/servers/{sid}")["server"]
        assert s["status"] != "ERROR", s.get("fault")
        return s["status"] == "ACTIVE"
    assert proc.wait_for(active, 90, interval=0.5), \
        stack.procs["nova-conductor"].tail() + stack.procs["nova-compute-compute05"].tail()
    host = stack.client.compute("GET", f"/servers/{sid}")["server"]["OS-EXT-SRV-ATTR:host"]
    assert host in ("compute05", GROWN)
    ports = stack.client.network("GET", f"/ports?device_id={sid}")["ports"]
    assert [(p["binding:vif_type"], p["binding:host_id"], p["network_id"]) for p in ports] == \
        [("ovs", host, net["id"])]
    v = stack.volume("GET", f"/volumes/{v3}")["volume"]
    assert v["status"] == "in-use" and v["os-vol-host-attr:host"] == "controller@rbd2#pool-b"


def test_moved_attachment_detaches_on_the_new_cloud(smoke, timed):
    # cinder-volume ends the connection the cutover moved (its driver gets the row's
    # connector), through cinder's attachments API
    stack, v1 = smoke.stack, uid("volume/v1")
    att = _attachment(smoke.svc, v1)
    stack.volume("DELETE", f"/attachments/{att['id']}", version="volume 3.27")
    assert proc.wait_for(lambda: stack.volume("GET", f"/volumes/{v1}")["volume"]["status"]
                         == "available", 60, interval=0.5), stack.procs["cinder-volume"].tail()


def test_moved_server_live_migrates_to_a_grown_compute(smoke, timed):
    # the new cloud's own work on a row the cutover wrote: vm-a (started above) moves
    # on from compute05, through nova's live migration and neutron's port bindings
    stack, vm = smoke.stack, uid("instance/vm-a")
    stack.client.compute("POST", f"/servers/{vm}/action",
                         {"os-migrateLive": {"host": GROWN, "block_migration": "auto"}})

    def moved() -> bool:
        s = stack.client.compute("GET", f"/servers/{vm}")["server"]
        assert s["status"] != "ERROR", s.get("fault")
        return s["OS-EXT-SRV-ATTR:host"] == GROWN and s["OS-EXT-STS:task_state"] is None
    assert proc.wait_for(moved, 90, interval=0.5), \
        stack.procs["nova-compute-compute05"].tail() + stack.procs[f"nova-compute-{GROWN}"].tail()
    port = _port(stack, "vm/vm-a")
    assert (port["binding:vif_type"], port["binding:host_id"]) == ("ovs", GROWN)


def test_nothing_up_on_an_old_host(smoke, timed):
    stack = smoke.stack
    old = stack.old_hosts
    nova = stack.client.get("/os-services")["services"]
    assert [s["host"] for s in nova if s["host"].lower() in old and s["state"] == "up"] == []
    cinder = stack.volume("GET", "/os-services")["services"]
    assert [s["host"] for s in cinder if s["host"].split("@")[0].lower() in old
            and s["state"] == "up"] == []
    assert {s["host"] for s in cinder if s["state"] == "up"} >= {
        "controller", "controller@rbd", "controller@rbd2"}
    agents = stack.client.network("GET", "/agents")["agents"]
    assert [(a["host"], a["agent_type"]) for a in agents
            if a["host"].lower() in old and a["alive"]] == []


def test_rollback_refuses_what_the_new_cloud_changed(smoke, timed):
    svc, stack = smoke.svc, smoke.stack
    vm_a, vm_b = uid("instance/vm-a"), uid("instance/vm-b")
    # the new cloud stops (its heartbeats would change rows under the rollback)
    stack.stop()
    before = svc.checksums()
    r = svc.cli("rollback", smoke.run_id, "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["refused"] and doc["rows"] == 0, doc
    assert svc.checksums() == before
    moved = [c for c in doc["conflicts"] if c["table"] == "nova.instances"
             and c["state"] == "changed"
             and any(col["column"] == "host" and (col["written"], col["now"]) ==
                     ("compute05", GROWN) for col in c["columns"])]
    assert len(moved) == 1, doc["conflicts"]
    count = len(doc["conflicts"])
    wrong = svc.cli("rollback", smoke.run_id, "--force", str(count - 1))
    assert wrong.returncode == 1
    assert f"--force {count - 1} given, the count is {count}" in wrong.stderr, wrong.stderr
    assert svc.checksums() == before
    ok = svc.cli("rollback", smoke.run_id, "--force", str(count), "--format", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["kept"] == count
    # the new cloud's live migration stays; what it never touched is the old cloud's again
    assert svc.sql("nova", "SELECT host, node FROM instances WHERE uuid = %s", [vm_a]) == \
        ((GROWN, f"{GROWN}.domain"),)
    assert svc.sql("nova", "SELECT host, node FROM instances WHERE uuid = %s", [vm_b]) == \
        (("compute01", "compute01.domain"),)
    port_b = svc.sql("neutron", "SELECT id FROM ports WHERE name = 'vm/vm-b'")[0][0]
    assert svc.sql("neutron", "SELECT host, vif_type FROM ml2_port_bindings WHERE "
                   "port_id = %s", [port_b]) == (("compute01", "bridge"),)
    again = svc.cli("rollback", smoke.run_id, "--format", "json")
    assert json.loads(again.stdout)["kept"] == count, again.stdout
