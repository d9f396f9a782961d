"""A guest re-plugged from the old cloud's Linux bridge onto Open vSwitch on a
real hypervisor: libvirtd starting QEMU (TCG), Open vSwitch's userspace datapath,
dnsmasq answering DHCP as Neutron's DHCP agent does, all in this run's namespaces
(tests/fixtures/hypervisor.py). The guest is Debian's kernel with a busybox
initramfs (tests/fixtures/guest.py).

The re-plug is the hypervisor half of what ``migrate rehome`` asks Nova for: the
domain hard-rebooted with the interface Nova's libvirt driver writes for an OVS
port (``virtualport type='openvswitch'`` with the Neutron port id) and the
network's new MTU, the DHCP port moved from ``brq…`` to ``br-int``, done here by
the test itself so a failure points at the hypervisor pieces alone;
tests/migrate/test_rehome_libvirt.py is the same move driven by rehome and Nova.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.fixtures import guest as guestmod
from tests.fixtures import hypervisor as hv
from tests.fixtures import timings

CIDR = "10.99.0.0/24"
DHCP_IP = "10.99.0.2"
GUEST_IP = "10.99.0.17"
MAC = "fa:16:3e:5e:ed:01"
OLD_MTU = 1500
NEW_MTU = 1422  # the seed's: VXLAN on the new network


@pytest.fixture
def host(tmp_path_factory):
    missing = hv.available()
    if missing:
        pytest.fail(missing)
    # a short base: libvirtd's socket path must fit a sockaddr_un
    compute = hv.ComputeHost(tmp_path_factory.mktemp("hv") / "compute05")
    try:
        yield compute.start()
    finally:
        compute.stop()


def _addr(line: str) -> tuple[str, int, str]:
    # PACESTACK-GUEST-ADDR eth0 10.99.0.17/24 mtu 1422 mac fa:16:3e:...
    words = line.split()
    return words[2].split("/")[0], int(words[4]), words[6]


def test_guest_moves_from_linuxbridge_to_ovs_netdev_and_answers_at_new_mtu(host):
    guest = guestmod.ensure_guest()
    net_id, port_id, inst = (str(uuid.uuid4()) for _ in range(3))
    brq = ("brq" + net_id)[:14]
    tap = ("tap" + port_id)[:14]
    name = f"instance-{inst[:8]}"

    # the old cloud: the guest's tap on the network's Linux bridge, MTU 1500
    host.linux_bridge(brq)
    host.ovs_bridge("br-int")
    dhcp = host.dhcp_namespace(CIDR, DHCP_IP)
    dhcp.plug(brq, ovs=False)
    dhcp.set_mtu(OLD_MTU)
    dhcp.serve([(MAC, GUEST_IP)], OLD_MTU)
    t0 = time.monotonic()
    console = host.boot(name, inst, guest, [hv.Nic(MAC, brq, tap, OLD_MTU)])
    _, offset = hv.wait_console(console, guestmod.BOOT_MARKER, 120)
    timings.record("guest boot to console marker (TCG)", time.monotonic() - t0)
    line, offset = hv.wait_console(console, guestmod.ADDR_MARKER, 60, offset)
    assert _addr(line) == (GUEST_IP, OLD_MTU, MAC)
    assert host.ip("-o", "link", "show", "master", brq).count(tap) == 1
    old_big = dhcp.ping(GUEST_IP, size=1472, dont_fragment=True)
    assert old_big.returncode == 0, old_big.stdout + old_big.stderr

    # the re-plug: DHCP port onto br-int at the new MTU, the domain rebuilt as
    # Nova's libvirt driver writes an OVS port, and started again
    pinger = dhcp.pinger(GUEST_IP)
    time.sleep(1)
    host.destroy(name)
    dhcp.plug("br-int", ovs=True)
    dhcp.set_mtu(NEW_MTU)
    dhcp.serve([(MAC, GUEST_IP)], NEW_MTU)
    t1 = time.monotonic()
    host.boot(name, inst, guest,
              [hv.Nic(MAC, "br-int", tap, NEW_MTU, ovs_interface_id=port_id)])
    _, offset = hv.wait_console(console, guestmod.BOOT_MARKER, 120, offset)
    line, offset = hv.wait_console(console, guestmod.ADDR_MARKER, 60, offset)
    assert _addr(line) == (GUEST_IP, NEW_MTU, MAC)
    deadline = time.monotonic() + 30
    while dhcp.ping(GUEST_IP, count=1, wait=1).returncode != 0:
        assert time.monotonic() < deadline, "the guest never answered on br-int"
    timings.record("guest re-plug to answering ping", time.monotonic() - t1)
    down = pinger.wait_recovered(5)
    pinger.stop()
    timings.record("guest network down (first lost to first answered ping)", down)

    # plugged by libvirt into OVS, with the port id Neutron's OVS agent looks for
    assert host.vsctl("get", "Interface", tap, "external_ids:iface-id").strip('"\n') == port_id
    assert host.vsctl("get", "Interface", tap, "external_ids:attached-mac").strip('"\n') == MAC
    assert host.vsctl("get", "Bridge", "br-int", "datapath_type").strip() == "netdev"
    assert tap not in host.ip("-o", "link", "show", "master", brq)

    # MTU evidence: 1394 bytes + 28 of headers fit 1422 with DF; 1472 do not
    fits = dhcp.ping(GUEST_IP, size=NEW_MTU - 28, dont_fragment=True)
    assert fits.returncode == 0 and "0% packet loss" in fits.stdout, fits.stdout
    too_big = dhcp.ping(GUEST_IP, size=1472, dont_fragment=True)
    assert too_big.returncode != 0
    assert f"message too long, mtu={NEW_MTU}" in too_big.stderr + too_big.stdout


