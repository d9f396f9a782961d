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
not. The lost port is recreated with the same MAC and IP, attached, and works.
The guest that needs no port repaired keeps running after its hard reboot.

Stand-ins: no Glance (the guests' kernel and ramdisk are already in their
instance directories, where the libvirt driver looks before fetching), no
neutron-openvswitch-agent or -dhcp-agent (dnsmasq on br-int from the moment the
old cloud is gone, serving what Neutron's API says, polled every 0.5 s;
nova-compute does not wait for vif-plugged events no agent would send).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures import guest as guestmod
from tests.fixtures import hypervisor as hv
from tests.fixtures import openstack as ostack
from tests.fixtures import timings
from tests.fixtures.nova import NovaStack, Seeder
from tests.migrate.test_rehome import PACESTACK, _write_conf

NEW_MTU = 1422


def start_host(base: Path) -> hv.ComputeHost:
    """compute05's libvirtd and Open vSwitch, with br-int."""
    missing = hv.available()
    if missing:
        raise hv.HypervisorError(missing)
    compute = hv.ComputeHost(base)
    try:
        compute.start()
        compute.ovs_bridge("br-int")
    except BaseException:
        compute.stop()
        raise
    return compute


def start_stack(host: hv.ComputeHost, server, venv: Path, dump: Path) -> NovaStack:
    """The Compute stack with compute05 on the libvirt driver; the caller cleans up
    (stack.cleanup(), stack.cloud.drop())."""
    site = hv.libvirt_python(venv)
    cloud = ostack.Cloud(server, venv, dump)
    cloud.load()
    s = NovaStack(cloud, ("compute01", "compute05"),
                  host_env={"compute05": {"PYTHONPATH": str(site)}},
                  agent_config={"compute05": {"datapath_type": "netdev"}})
    conf = hv.nova_compute_config(host, venv, s.etc)
    # no OVS agent here to report the port up: no vif-plugged event would come
    conf["DEFAULT"]["vif_plugging_timeout"] = "0"
    # on SIGTERM the libvirt driver's nova-compute never finished its graceful stop:
    # the teardown waited out the fixture's 20 s before SIGKILL; oslo.service exits
    # by itself after this many seconds
    conf["DEFAULT"]["graceful_shutdown_timeout"] = "3"
    s.host_config = {"compute05": conf}
    try:
        s.start()
    except BaseException:
        s.cleanup()
        cloud.drop()
        raise
    return s


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    try:
        compute = start_host(tmp_path_factory.mktemp("compute05"))
    except hv.HypervisorError as e:
        pytest.fail(str(e))
    try:
        yield compute
    finally:
        compute.stop()


@pytest.fixture(scope="module")
def stack(request, host, openstack_mariadb):
    venv = request.getfixturevalue("openstack_venv")
    dump = request.getfixturevalue("openstack_dump")
    s = start_stack(host, openstack_mariadb, venv, dump)
    try:
        yield s
    finally:
        s.cleanup()
        s.cloud.drop()


def _addr(line: str) -> tuple[str, int, str]:
    # PACESTACK-GUEST-ADDR eth0 10.20.0.5/24 mtu 1422 mac fa:16:3e:...
    words = line.split()
    return words[2].split("/")[0], int(words[4]), words[6]


@dataclasses.dataclass
class OldCloud:
    """Guests running the linuxbridge way on compute05, their rows in the old shape."""

    net: dict
    insts: list[dict]
    dhcp: hv.DhcpNamespace
    old: dict  # the old cloud's database names
    boot_seconds: float  # all guests booted at once, to the last console marker


def old_cloud(host: hv.ComputeHost, stack: NovaStack, guest: guestmod.Guest,
              count: int = 2, cidr: str = "10.20.0.0/24") -> OldCloud:
    """Seed ``count`` imported instances on compute01 (stopped), and run them as
    guests on a tap in the network's ``brq…`` with DHCP at 1500."""
    client = stack.client
    sd = Seeder(stack)
    # the guest's kernel needs more than the fake driver's 64 MB
    client.compute("POST", "/flavors", {"flavor": {
        "name": "rehome.guest", "id": "rehome-guest", "ram": 256, "vcpus": 1, "disk": 1}})
    sd.flavor_id = "rehome-guest"
    net = sd.network("guests", cidr)
    dhcp_port = client.network("POST", "/ports", {"port": {
        "network_id": net["id"], "device_owner": "network:dhcp", "name": "dhcp",
        "project_id": sd.project_id}})["port"]
    kernel_id, ramdisk_id = str(uuid.uuid4()), str(uuid.uuid4())
    insts = sd.ports(count, net, prefix="guest")
    for inst in insts:
        inst["fields"] = {"kernel_id": kernel_id, "ramdisk_id": ramdisk_id}
        inst["mac"] = inst["port"]["mac_address"]
        inst["ip"] = inst["port"]["fixed_ips"][0]["ip_address"]
    sd.seed(insts)
    sd.linuxbridge_era(insts)
    stack.stop_compute("compute01")
    old = sd.snapshot_old_cloud()
    stack.cloud.server.execute("UPDATE routers SET admin_state_up = 0 WHERE id = %s",
                               (net["router"]["id"],), database=old["neutron"])

    brq = ("brq" + net["id"])[:14]
    host.linux_bridge(brq)
    dhcp = host.dhcp_namespace(cidr, dhcp_port["fixed_ips"][0]["ip_address"])
    dhcp.plug(brq, ovs=False)
    dhcp.serve([(i["mac"], i["ip"]) for i in insts], 1500)
    t0 = time.monotonic()
    for n, inst in enumerate(insts):
        inst["old_name"] = f"old-{n}"
        inst["old_console"] = host.boot(
            inst["old_name"], str(uuid.uuid4()), guest,
            [hv.Nic(inst["mac"], brq, ("tap" + inst["port"]["id"])[:14], 1500)])
    for inst in insts:  # all booting at once, on the machine's cores
        hv.wait_console(inst["old_console"], guestmod.BOOT_MARKER, 180)
    return OldCloud(net, insts, dhcp, old, time.monotonic() - t0)


def place_guest_files(host: hv.ComputeHost, guest: guestmod.Guest, insts: list[dict]) -> None:
    """The kernel and ramdisk where the libvirt driver finds them instead of asking Glance."""
    for inst in insts:
        idir = host.base / "instances" / inst["uuid"]
        idir.mkdir(parents=True, exist_ok=True)
        shutil.copy(guest.kernel, idir / "kernel")
        shutil.copy(guest.initrd, idir / "ramdisk")
        with open(idir / "disk", "wb") as fh:
            fh.truncate(1 << 20)


def run_rehome(stack: NovaStack, oc: OldCloud, conf: Path, parallel: int) -> tuple[float, dict]:
    """``pacestack migrate rehome`` of every guest to compute05: (wall seconds, JSON report)."""
    _write_conf(conf, stack, f"{stack.cloud.prefix}_pacestack", oc.old)
    t0 = time.monotonic()
    run = subprocess.run(
        [PACESTACK, "--config-file", str(conf), "migrate", "rehome",
         *(i["uuid"] for i in oc.insts), "--to-host", "compute05", "--mtu", str(NEW_MTU),
         "--parallel", str(parallel), "--format", "json"],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(stack.clouds_yaml)},
        capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return wall, json.loads(run.stdout)


class DhcpFollower(threading.Thread):
    """What neutron-dhcp-agent does for one network, by polling Neutron's API: serve
    the network's instance ports (MAC, IP) at the network's MTU, and serve again
    whenever they change (rehome lowers the MTU and recreates a lost port)."""

    def __init__(self, client, dhcp: hv.DhcpNamespace, net_id: str, interval: float = 0.5):
        super().__init__(daemon=True)
        self.client, self.dhcp, self.net_id, self.interval = client, dhcp, net_id, interval
        self.served: tuple | None = None
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def state(self) -> tuple[int, tuple[tuple[str, str], ...]]:
        mtu = self.client.network("GET", f"/networks/{self.net_id}")["network"]["mtu"]
        ports = self.client.network(
            "GET", f"/ports?network_id={self.net_id}&device_owner=compute:nova")["ports"]
        return mtu, tuple(sorted((p["mac_address"], p["fixed_ips"][0]["ip_address"])
                                 for p in ports))

    def sync(self) -> None:
        now = self.state()
        if now != self.served:
            self.dhcp.set_mtu(now[0])
            self.dhcp.serve(list(now[1]), now[0])
            self.served = now

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                self.sync()
        except BaseException as e:  # handed to the test by stop()
            self.error = e

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)
        if self.error is not None:
            raise self.error


def follow_on_br_int(stack: NovaStack, oc: OldCloud) -> DhcpFollower:
    """The old cloud is gone: from now on the network's DHCP is the new cloud's, on
    br-int, serving what Neutron says."""
    oc.dhcp.plug("br-int", ovs=True)
    follower = DhcpFollower(stack.client, oc.dhcp, oc.net["id"])
    follower.sync()
    follower.start()
    return follower


def wait_answering(dhcp: hv.DhcpNamespace, ip: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while dhcp.ping(ip, count=1, wait=1).returncode != 0:
        assert time.monotonic() < deadline, f"{ip} never answered on br-int"


def test_rehome_moves_real_guests_from_brq_to_br_int(host, stack, tmp_path):
    guest = guestmod.ensure_guest()
    oc = old_cloud(host, stack, guest)
    insts, dhcp, net = oc.insts, oc.dhcp, oc.net
    keeps, loses = insts
    timings.record("guest boot to console marker (TCG, libvirt, 2 at once)", oc.boot_seconds)
    for inst in insts:
        line, _ = hv.wait_console(inst["old_console"], guestmod.ADDR_MARKER, 60)
        assert _addr(line) == (inst["ip"], 1500, inst["mac"])
        assert dhcp.ping(inst["ip"], size=1472, dont_fragment=True).returncode == 0

    # the move: the old compute stops, Neutron has lost one port, rehome runs
    stack.client.network("DELETE", f"/ports/{loses['port']['id']}")
    pingers = {i["ip"]: dhcp.pinger(i["ip"]) for i in insts}
    time.sleep(1)
    for inst in insts:
        host.destroy(inst["old_name"])
    follower = follow_on_br_int(stack, oc)
    place_guest_files(host, guest, insts)
    wall, report = run_rehome(stack, oc, tmp_path / "pacestack.conf", parallel=2)
    timings.record("rehome of 2 guests, --parallel 2 (libvirt)", wall)
    for r in report["instances"]:
        timings.record("rehome seconds per step (libvirt)", r.get("seconds", {}))
        assert r["status"] == "done", r

    mtu = stack.client.network("GET", f"/networks/{net['id']}")["network"]["mtu"]
    assert mtu == NEW_MTU
    ports = {p["mac_address"]: p for p in stack.client.network(
        "GET", f"/ports?network_id={net['id']}&device_owner=compute:nova")["ports"]}
    assert set(ports) == {i["mac"] for i in insts}

    for inst in insts:
        console = host.base / "instances" / inst["uuid"] / "console.log"
        hv.wait_console(console, guestmod.BOOT_MARKER, 180)
        line, _ = hv.wait_console(console, guestmod.ADDR_MARKER, 120)
        assert _addr(line) == (inst["ip"], NEW_MTU, inst["mac"])
        port_id = ports[inst["mac"]]["id"]
        tap = ("tap" + port_id)[:14]
        assert host.vsctl("get", "Interface", tap, "external_ids:iface-id").strip('"\n') \
            == port_id
        wait_answering(dhcp, inst["ip"])
    for ip, pinger in pingers.items():
        down = pinger.wait_recovered(5)
        pinger.stop()
        timings.record(f"guest {ip} network down (libvirt rehome)", down)
    follower.stop()
    assert follower.served == (NEW_MTU, tuple(sorted(
        (m, p["fixed_ips"][0]["ip_address"]) for m, p in ports.items())))

    assert ports[loses["mac"]]["id"] != loses["port"]["id"]  # recreated, same MAC and IP
    assert ports[loses["mac"]]["fixed_ips"][0]["ip_address"] == loses["ip"]
    assert ports[keeps["mac"]]["id"] == keeps["port"]["id"]
    for inst in insts:
        fits = dhcp.ping(inst["ip"], size=NEW_MTU - 28, dont_fragment=True)
        assert fits.returncode == 0 and "0% packet loss" in fits.stdout, fits.stdout
        too_big = dhcp.ping(inst["ip"], size=1472, dont_fragment=True)
        assert too_big.returncode != 0
        assert f"message too long, mtu={NEW_MTU}" in too_big.stderr + too_big.stdout
