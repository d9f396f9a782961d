"""``pacestack migrate rehome`` onto a real hypervisor: compute05's nova-compute
runs Nova's libvirt driver (virt_type qemu: QEMU under TCG) against a libvirtd
and an Open vSwitch with the userspace datapath in this run's namespaces
(tests/fixtures/hypervisor.py); compute01, the old host, is the fake driver's
and is stopped before the move, as in tests/migrate/test_rehome.py.

Two guests (Debian's kernel + a busybox initramfs, tests/fixtures/guest.py) run
the old way first: a tap on the network's Linux bridge ``brq…``, their ports'
MACs and IPs by DHCP at MTU 1500. Then the old compute goes away, Neutron loses
one guest's port, and rehome moves both. Asserted from the outside: each guest
boots on compute05 (its console marker in Nova's console.log), plugged by
libvirt into ``br-int`` with its port id, gets its old IP by DHCP at the new MTU
1422 and answers ping from the DHCP namespace: 1394 bytes with DF pass, 1472 do
not. The lost port is recreated with the same MAC and IP, hot-plugged, and works.

Stand-ins: no Glance (the guests' kernel and ramdisk are already in their
instance directories, where the libvirt driver looks before fetching), no
neutron-openvswitch-agent or -dhcp-agent (dnsmasq serves what Neutron's API
says; nova-compute does not wait for vif-plugged events no agent would send).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from tests.fixtures import guest as guestmod
from tests.fixtures import hypervisor as hv
from tests.fixtures import openstack as ostack
from tests.fixtures import timings
from tests.fixtures.nova import NovaStack, Seeder
from tests.migrate.test_rehome import PACESTACK, _write_conf

NEW_MTU = 1422


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    missing = hv.available()
    if missing:
        pytest.fail(missing)
    compute = hv.ComputeHost(tmp_path_factory.mktemp("compute05"))
    try:
        compute.start()
        compute.ovs_bridge("br-int")
        yield compute
    finally:
        compute.stop()


@pytest.fixture(scope="module")
def stack(request, host, openstack_mariadb):
    venv = request.getfixturevalue("openstack_venv")
    dump = request.getfixturevalue("openstack_dump")
    site = hv.libvirt_python(venv)
    cloud = ostack.Cloud(openstack_mariadb, venv, dump)
    cloud.load()
    s = NovaStack(cloud, ("compute01", "compute05"),
                  host_env={"compute05": {"PYTHONPATH": str(site)}},
                  agent_config={"compute05": {"datapath_type": "netdev"}})
    conf = hv.nova_compute_config(host, venv, s.etc)
    # no OVS agent here to report the port up: no vif-plugged event would come
    conf["DEFAULT"]["vif_plugging_timeout"] = "0"
    s.host_config = {"compute05": conf}
    try:
        s.start()
        yield s
    finally:
        s.cleanup()
        cloud.drop()


def _addr(line: str) -> tuple[str, int, str]:
    # PACESTACK-GUEST-ADDR eth0 10.20.0.5/24 mtu 1422 mac fa:16:3e:...
    words = line.split()
    return words[2].split("/")[0], int(words[4]), words[6]


def test_rehome_moves_real_guests_from_brq_to_br_int(host, stack, tmp_path):
    guest = guestmod.ensure_guest()
    client = stack.client
    sd = Seeder(stack)
    # the guest's kernel needs more than the fake driver's 64 MB
    client.compute("POST", "/flavors", {"flavor": {
        "name": "rehome.guest", "id": "rehome-guest", "ram": 256, "vcpus": 1, "disk": 1}})
    sd.flavor_id = "rehome-guest"
    net = sd.network("guests", "10.20.0.0/24")
    cidr = net["subnet"]["cidr"]
    dhcp_port = client.network("POST", "/ports", {"port": {
        "network_id": net["id"], "device_owner": "network:dhcp", "name": "dhcp",
        "project_id": sd.project_id}})["port"]
    kernel_id, ramdisk_id = str(uuid.uuid4()), str(uuid.uuid4())
    keeps, loses = insts = sd.ports(2, net, prefix="guest")
    for inst in insts:
        inst["fields"] = {"kernel_id": kernel_id, "ramdisk_id": ramdisk_id}
        inst["mac"] = inst["port"]["mac_address"]
        inst["ip"] = inst["port"]["fixed_ips"][0]["ip_address"]
    sd.seed(insts)
    sd.linuxbridge_era(insts)
    stack.stop_compute("compute01")
    old = sd.snapshot_old_cloud()
    server = stack.cloud.server
    server.execute("UPDATE routers SET admin_state_up = 0 WHERE id = %s",
                   (net["router"]["id"],), database=old["neutron"])

    # the old cloud: both guests on brq…, DHCP at 1500
    brq = ("brq" + net["id"])[:14]
    host.linux_bridge(brq)
    dhcp = host.dhcp_namespace(cidr, dhcp_port["fixed_ips"][0]["ip_address"])
    dhcp.plug(brq, ovs=False)
    dhcp.serve([(i["mac"], i["ip"]) for i in insts], 1500)
    t0 = time.monotonic()
    for n, inst in enumerate(insts):
        inst["old_console"] = host.boot(
            f"old-{n}", str(uuid.uuid4()), guest,
            [hv.Nic(inst["mac"], brq, ("tap" + inst["port"]["id"])[:14], 1500)])
    for inst in insts:  # both booting at once, on the machine's 2 cores
        hv.wait_console(inst["old_console"], guestmod.BOOT_MARKER, 180)
        timings.record("guest boot to console marker (TCG, libvirt, 2 at once)",
                       time.monotonic() - t0)
    for inst in insts:
        line, _ = hv.wait_console(inst["old_console"], guestmod.ADDR_MARKER, 60)
        assert _addr(line) == (inst["ip"], 1500, inst["mac"])
        assert dhcp.ping(inst["ip"], size=1472, dont_fragment=True).returncode == 0

    # the move: the old compute stops, Neutron has lost one port, rehome runs
    client.network("DELETE", f"/ports/{loses['port']['id']}")
    pingers = {i["ip"]: dhcp.pinger(i["ip"]) for i in insts}
    time.sleep(1)
    for n in range(len(insts)):
        host.destroy(f"old-{n}")
    for inst in insts:  # where the libvirt driver finds them instead of asking Glance
        idir = host.base / "instances" / inst["uuid"]
        idir.mkdir(parents=True, exist_ok=True)
        shutil.copy(guest.kernel, idir / "kernel")
        shutil.copy(guest.initrd, idir / "ramdisk")
        with open(idir / "disk", "wb") as fh:
            fh.truncate(1 << 20)
    journal_db = f"{stack.cloud.prefix}_pacestack"
    conf = tmp_path / "pacestack.conf"
    _write_conf(conf, stack, journal_db, old)
    t1 = time.monotonic()
    run = subprocess.run(
        [PACESTACK, "--config-file", str(conf), "migrate", "rehome", keeps["uuid"],
         loses["uuid"], "--to-host", "compute05", "--mtu", str(NEW_MTU), "--parallel", "2",
         "--format", "json"],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(stack.clouds_yaml)},
        capture_output=True, text=True, timeout=600)
    timings.record("rehome of 2 guests, --parallel 2 (libvirt)", time.monotonic() - t1)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    report = json.loads(run.stdout)
    for r in report["instances"]:
        timings.record("rehome seconds per step (libvirt)", r.get("seconds", {}))
        assert r["status"] == "done", r

    # Neutron's DHCP agent would now serve the network on br-int at its new MTU
    mtu = client.network("GET", f"/networks/{net['id']}")["network"]["mtu"]
    assert mtu == NEW_MTU
    ports = {p["mac_address"]: p for p in client.network(
        "GET", f"/ports?network_id={net['id']}&device_owner=compute:nova")["ports"]}
    assert set(ports) == {i["mac"] for i in insts}
    dhcp.plug("br-int", ovs=True)
    dhcp.set_mtu(mtu)
    dhcp.serve([(m, p["fixed_ips"][0]["ip_address"]) for m, p in ports.items()], mtu)

    for inst in insts:
        console = host.base / "instances" / inst["uuid"] / "console.log"
        hv.wait_console(console, guestmod.BOOT_MARKER, 180)
        line, _ = hv.wait_console(console, guestmod.ADDR_MARKER, 120)
        assert _addr(line) == (inst["ip"], NEW_MTU, inst["mac"])
        port_id = ports[inst["mac"]]["id"]
        tap = ("tap" + port_id)[:14]
        assert host.vsctl("get", "Interface", tap, "external_ids:iface-id").strip('"\n') \
            == port_id
        deadline = time.monotonic() + 30
        while dhcp.ping(inst["ip"], count=1, wait=1).returncode != 0:
            assert time.monotonic() < deadline, f"{inst['ip']} never answered on br-int"
    for ip, pinger in pingers.items():
        down = hv.down_time(pinger.stop())
        assert down is not None, f"no outage and recovery seen for {ip}"
        timings.record(f"guest {ip} network down (libvirt rehome)", down)

    assert ports[loses["mac"]]["id"] != loses["port"]["id"]  # recreated, same MAC and IP
    assert ports[loses["mac"]]["fixed_ips"][0]["ip_address"] == loses["ip"]
    assert ports[keeps["mac"]]["id"] == keeps["port"]["id"]
    for inst in insts:
        fits = dhcp.ping(inst["ip"], size=NEW_MTU - 28, dont_fragment=True)
        assert fits.returncode == 0 and "0% packet loss" in fits.stdout, fits.stdout
        too_big = dhcp.ping(inst["ip"], size=1472, dont_fragment=True)
        assert too_big.returncode != 0
        assert f"message too long, mtu={NEW_MTU}" in too_big.stderr + too_big.stdout
