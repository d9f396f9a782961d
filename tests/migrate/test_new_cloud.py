"""After the cutover the NEW cloud starts on the result: the seed's cutover
(`pacestack migrate apply` with the seed's mapping on the real schemas), then the
new side started on those databases (tests/fixtures/new_cloud.py) and checked
through its APIs: servers on their new host, ports bound ovs on br-int with the
new MTU, a stopped server starting on its new host, a volume attaching and
detaching, migrated VLANs/VNIs refused to new networks, nothing up on an old host.

Time budget (measured, busy 2-core machine): ~10 s seed, apply, verify and update_cell;
33-45 s stack start; 5-10 s for all the checks; ~55-85 s for the module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from pacestack import proc
from tests.fixtures import openstack as ostack
from tests.fixtures.new_cloud import NewCloud, start_new_cloud
from tests.migrate import seed_cloud
from tests.migrate.conftest import Seeded, write_conf

TIMES: dict[str, float] = {}
OLD_RABBIT_SECRET = "old-rabbit-s3cret"


@pytest.fixture(scope="module")
def new_cloud(openstack_mariadb, openstack_venv, openstack_dump,
              tmp_path_factory) -> Iterator[tuple[Seeded, NewCloud]]:
    """The seed's cloud, migrated by `pacestack migrate apply`, running as the new cloud."""
    tmp = tmp_path_factory.mktemp("newcloud")
    cloud = ostack.Cloud(openstack_mariadb, openstack_venv, openstack_dump)
    stack = None
    try:
        cloud.load()
        ml2 = tmp / "ml2_conf.ini"
        ml2.write_text(seed_cloud.ML2_CONF)
        cloud.config_file("ml2_conf.ini").write_text(seed_cloud.ML2_CONF)
        conn = cloud.server.connect()
        try:
            seed = seed_cloud.build_seed(conn, cloud.db_names)
        finally:
            conn.close()
        journal_db = f"{cloud.prefix}_pacestack"
        mp = tmp / "mapping.conf"
        mp.write_text(seed_cloud.SEED_MAPPING)
        conf = write_conf(tmp / "pacestack.conf", cloud, ml2, journal_db)
        seeded = Seeded(cloud, seed, conf, mp, ml2, journal_db)
        # the old cloud's cell1 used the old controller's RabbitMQ
        cloud.execute("nova_api", "UPDATE cell_mappings SET transport_url = %s WHERE name = "
                      "'cell1'", (f"rabbit://openstack:{OLD_RABBIT_SECRET}@old-control:5672/",))
        t = time.monotonic()
        r = seeded.cli("apply", "--mapping", str(mp), "--format", "json")
        assert r.returncode == 0, r.stderr
        TIMES["migrate_apply"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        # the cutover moved cell1's bus to the new controller (host only: its secret kept)
        url = cloud.execute("nova_api", "SELECT transport_url FROM cell_mappings WHERE "
                            "name = 'cell1'")[0][0]
        assert url == f"rabbit://openstack:{OLD_RABBIT_SECRET}@controller:5672/", url
        # a cell still on the old controller's bus is named by verify, without its secret
        cloud.execute("nova_api", "UPDATE cell_mappings SET transport_url = %s WHERE name = "
                      "'cell1'", (f"rabbit://openstack:{OLD_RABBIT_SECRET}@old-control:5672/",))
        r = seeded.cli("verify", "--mapping", str(mp), "--skip-upstream", "--format", "json")
        cells = [f for f in json.loads(r.stdout)["findings"] if f["code"] == "CELL_OLD_HOST"]
        assert r.returncode == 1 and len(cells) == 1, r.stdout
        assert "old-control" in cells[0]["message"] and "update_cell" in cells[0]["subject"]
        assert OLD_RABBIT_SECRET not in r.stdout + r.stderr
        # and the operator does what it says (the new bus has its own password), with
        # nova's own tool
        cell1 = cloud.execute("nova_api", "SELECT uuid FROM cell_mappings WHERE name = 'cell1'")
        u = cloud.run("nova-manage", "cell_v2", "update_cell", "--cell_uuid", cell1[0][0],
                      "--transport-url", "rabbit://openstack:new@controller:5672/")
        assert u.returncode == 0, u.stderr[-800:]
        r = seeded.cli("verify", "--mapping", str(mp), "--skip-upstream", "--format", "json")
        assert r.returncode == 0, r.stdout
        TIMES["migrate_verify_and_update_cell"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        stack = start_new_cloud(cloud, seeded.mapping())
        TIMES["stack_start"] = round(time.monotonic() - t, 2)
        yield seeded, stack
    finally:
        if stack is not None:
            stack.cleanup(keep_logs=tmp)
        cloud.server.execute(f"DROP DATABASE IF EXISTS `{cloud.prefix}_pacestack`")
        cloud.drop()
        print("\nnew cloud smoke timings:", json.dumps(
            {**TIMES, "stack": stack.timings if stack else None}))


@pytest.fixture
def timed(request):
    t = time.monotonic()
    yield
    TIMES[request.node.name] = round(time.monotonic() - t, 2)


def _servers(stack: NewCloud) -> list[dict]:
    return stack.client.get("/servers/detail?all_tenants=1")["servers"]


def test_migrated_urls_name_no_old_host(new_cloud, timed):
    _seeded, stack = new_cloud
    assert stack.findings == []


def test_every_server_listed_on_its_new_host(new_cloud, timed):
    seeded, stack = new_cloud
    servers = {s["id"]: s for s in _servers(stack)}
    live = {u for n, u in seeded.seed.instances.items() if n != "vm-gone"}
    assert set(servers) == live
    for s in servers.values():
        assert (s["OS-EXT-SRV-ATTR:host"], s["OS-EXT-SRV-ATTR:hypervisor_hostname"]) == \
            ("compute05", "compute05.domain"), s["name"]


def test_ports_bound_ovs_on_br_int_with_the_new_mtu(new_cloud, timed):
    seeded, stack = new_cloud
    want_mtu = {"vm-a": 1422, "vm-b": 1500, "dhcp": 1422}
    want_host = {"vm-a": "compute05", "vm-b": "compute05", "dhcp": "controller"}
    for name, port_id in seeded.seed.ports.items():
        if name not in want_host:
            continue
        port = stack.client.network("GET", f"/ports/{port_id}")["port"]
        assert port["binding:vif_type"] == "ovs", (name, port["binding:vif_type"])
        assert port["binding:host_id"] == want_host[name]
        assert port["binding:vif_details"].get("bridge_name") == "br-int", name
        net = stack.client.network("GET", f"/networks/{port['network_id']}")["network"]
        assert net["mtu"] == want_mtu[name], (name, net["mtu"])
    # neutron's unbound port stays unbound
    unbound = stack.client.network("GET", f"/ports/{seeded.seed.ports['unbound']}")["port"]
    assert unbound["binding:vif_type"] == "unbound", unbound["binding:vif_type"]


def test_stopped_server_starts_on_its_new_host(new_cloud, timed):
    seeded, stack = new_cloud
    vm = seeded.seed.instances["vm-a"]
    stack.client.compute("POST", f"/servers/{vm}/action", {"os-start": None})

    def active() -> bool:
        s = stack.client.compute("GET", f"/servers/{vm}")["server"]
        assert s["status"] != "ERROR", s.get("fault")
        return s["status"] == "ACTIVE" and s["OS-EXT-STS:task_state"] is None
    assert proc.wait_for(active, 60, interval=0.5), stack.procs["nova-compute-compute05"].tail()
    s = stack.client.compute("GET", f"/servers/{vm}")["server"]
    assert s["OS-EXT-SRV-ATTR:host"] == "compute05"
    plugged = [p for p in stack.plugged("compute05") if p["instance"] == vm]
    assert [(p["port"], p["os_vif"], p["plugin"], p["bridge"], p["mtu"]) for p in plugged] == \
        [(seeded.seed.ports["vm-a"], "VIFOpenVSwitch", "ovs", "br-int", 1422)]


def test_volume_attaches_and_detaches(new_cloud, timed):
    seeded, stack = new_cloud
    vm, vol = seeded.seed.instances["vm-b"], seeded.seed.volumes["v2"]
    stack.client.compute("POST", f"/servers/{vm}/os-volume_attachments",
                         {"volumeAttachment": {"volumeId": vol}})
    v = stack.wait_volume(vol, "in-use")
    assert v["attachments"][0]["server_id"] == vm
    assert v["attachments"][0]["host_name"] == "compute05"
    assert v["os-vol-host-attr:host"].startswith("controller@rbd")
    stack.client.compute("DELETE", f"/servers/{vm}/os-volume_attachments/{vol}")
    stack.wait_volume(vol, "available")


@pytest.mark.parametrize("kind,physnet,sid", [("vlan", "provider", 100),
                                               ("vxlan", None, 1137)])
def test_new_network_on_a_migrated_segment_is_refused(new_cloud, timed, kind, physnet, sid):
    _seeded, stack = new_cloud
    body = {"network": {"name": f"reuse-{kind}-{sid}", "provider:network_type": kind,
                        "provider:segmentation_id": sid}}
    if physnet:
        body["network"]["provider:physical_network"] = physnet
    with pytest.raises(RuntimeError, match=r": 409 "):
        stack.client.network("POST", "/networks", body)


def test_nothing_up_on_an_old_host(new_cloud, timed):
    _seeded, stack = new_cloud
    old = stack.old_hosts
    nova = stack.client.get("/os-services")["services"]
    assert [s for s in nova if s["host"].lower() in old and s["state"] == "up"] == []
    assert {s["host"] for s in nova if s["state"] == "up"} >= {"controller", "compute05"}
    cinder = stack.volume("GET", "/os-services")["services"]
    assert [s for s in cinder if s["host"].split("@")[0].lower() in old
            and s["state"] == "up"] == []
    assert {s["host"] for s in cinder if s["state"] == "up"} >= {
        "controller", "controller@rbd", "controller@rbd2"}, \
        [(s["binary"], s["host"], s["state"], s["updated_at"]) for s in cinder]
    agents = stack.client.network("GET", "/agents")["agents"]
    assert [a for a in agents if a["host"].lower() in old and a["alive"]] == []
    assert {a["host"] for a in agents if a["alive"] and a["agent_type"] ==
            "Open vSwitch agent"} >= {"controller", "compute05"}
