"""``pacestack migrate rehome`` against the real Compute stack (tests/fixtures/nova.py):
Keystone, Neutron, Placement, nova-api/conductor/scheduler and two nova-computes
with Nova's fake virt driver over RabbitMQ. The instances are what the seed's
operator found after importing the old cloud's database: stopped, on the old
host compute01, their ports bound ``bridge`` in Neutron and in Nova's info
caches; the old cloud's record is a copy of its nova and neutron databases.

Time budget: ~20-25 s stack start-up, ~25-40 s seeding, ~3-4 min of rehoming.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import openstack_build as build
from tests.fixtures.nova import NovaStack, Seeder

PACESTACK = str(Path(sys.executable).with_name("pacestack"))

# the newest release and the oldest of the matrix, each serving its own APIs
# (pacestack.wsgi_apps)
pytestmark = pytest.mark.parametrize("nova_stack_release",
                                     [build.NEWEST, list(build.RELEASES)[-1]],
                                     indirect=True, scope="module")


@dataclasses.dataclass
class Env:
    stack: NovaStack
    seeder: Seeder
    conf: Path
    journal_db: str
    old: dict[str, str]
    groups: dict[str, list[dict]]
    nets: dict[str, dict]

    def argv(self, *args: str) -> list[str]:
        return [PACESTACK, "--config-file", str(self.conf), "migrate",
                "rehome", *args]

    def environ(self) -> dict[str, str]:
        return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(self.stack.clouds_yaml)}

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.environ(), capture_output=True,
                              text=True, timeout=timeout)

    def run_json(self, *args: str) -> tuple[int, dict, str]:
        r = self.run(*args, "--format", "json")
        try:
            return r.returncode, json.loads(r.stdout), r.stderr
        except ValueError:
            raise AssertionError(f"no JSON (exit {r.returncode}): {r.stdout[-500:]} "
                                 f"{r.stderr[-2000:]}") from None

    # -- what the clouds say ---------------------------------------------------
    def server(self, uuid: str) -> dict:
        return self.stack.client.compute("GET", f"/servers/{uuid}")["server"]

    def port(self, port_id: str) -> dict | None:
        try:
            return self.stack.client.network("GET", f"/ports/{port_id}")["port"]
        except RuntimeError as exc:
            if ": 404 " in str(exc):
                return None
            raise

    def ports_with_mac(self, mac: str) -> list[dict]:
        return self.stack.client.network("GET", f"/ports?mac_address={mac}")["ports"]

    def network(self, net_id: str) -> dict:
        return self.stack.client.network("GET", f"/networks/{net_id}")["network"]

    def cache(self, uuid: str) -> list[dict]:
        rows = self.stack.cloud.execute("nova", "SELECT network_info FROM instance_info_caches "
                                        "WHERE instance_uuid = %s", (uuid,))
        return json.loads(rows[0][0])

    def db_host(self, uuid: str) -> tuple:
        return self.stack.cloud.execute("nova", "SELECT host, node FROM instances WHERE uuid = %s",
                                        (uuid,))[0]

    def checksum(self, service: str, table: str) -> int:
        return self.stack.cloud.execute(service, f"CHECKSUM TABLE `{table}`")[0][1]

    def state_rows(self) -> list[tuple]:
        try:
            return self.stack.cloud.server.execute(
                "SELECT instance_uuid, step, status FROM rehome_instances",
                database=self.journal_db)
        except Exception:  # noqa: BLE001 - not created yet
            return []


def _write_conf(path: Path, stack: NovaStack, journal_db: str, old: dict[str, str]) -> None:
    c = stack.cloud.config_dir
    base = stack.cloud.server.url().rstrip("/")
    text = (
        "[openstack]\n"
        f"keystone_config = {c / 'keystone.conf'}\nneutron_config = {c / 'neutron.conf'}\n"
        f"ml2_config = {c / 'ml2_conf.ini'}\ncinder_config = {c / 'cinder.conf'}\n"
        f"nova_config = {c / 'nova.conf'}\nplacement_config = {c / 'placement.conf'}\n"
        f"[migrate]\njournal_database = {journal_db}\n"
        f"[rehome]\nos_cloud = {stack.cloud_name}\nwait_timeout = 240\n"
        f"old_nova_connection = {base}/{old['nova']}\n"
        f"old_neutron_connection = {base}/{old['neutron']}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a password
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@pytest.fixture(scope="module")
def env(nova_stack: NovaStack, tmp_path_factory) -> Env:
    sd = Seeder(nova_stack)
    nets = {"selfservice": sd.network("selfservice", "10.20.0.0/24"),
            "routed": sd.network("routed", "10.30.0.0/24")}
    plan = {"survive": (1, "selfservice", False), "novaport": (1, "selfservice", True),
            "gone": (1, "selfservice", True), "running": (1, "selfservice", True),
            "router": (1, "routed", True), "batch": (20, "selfservice", True)}
    groups = {name: sd.ports(n, nets[net], prefix=name, nova_created=nc)
              for name, (n, net, nc) in plan.items()}
    sd.seed([i for g in groups.values() for i in g])
    sd.linuxbridge_era([i for g in groups.values() for i in g])
    nova_stack.stop_compute("compute01")  # the old compute host is not in the new cloud
    old = sd.snapshot_old_cloud()
    server = nova_stack.cloud.server
    # the old cloud as the seed left it: the self-service network's router disabled
    # there, the other one forgotten; one instance still running there
    server.execute("UPDATE routers SET admin_state_up = 0 WHERE id = %s",
                   (nets["selfservice"]["router"]["id"],), database=old["neutron"])
    server.execute("UPDATE instances SET vm_state = 'active', power_state = 1 WHERE uuid = %s",
                   (groups["running"][0]["uuid"],), database=old["nova"])
    # a port the new cloud lost (the seed: "Neutron ... deleted the port entirely")
    nova_stack.client.network("DELETE", f"/ports/{groups['gone'][0]['port']['id']}")
    journal_db = f"{nova_stack.cloud.prefix}_pacestack"
    conf = tmp_path_factory.mktemp("rehome") / "pacestack.conf"
    _write_conf(conf, nova_stack, journal_db, old)
    try:
        yield Env(nova_stack, sd, conf, journal_db, old, groups, nets)
    finally:
        sd.drop_old_cloud()
        server.execute(f"DROP DATABASE IF EXISTS `{journal_db}`")


def _one(report: dict) -> dict:
    assert len(report["instances"]) == 1, report
    return report["instances"][0]


def _assert_on_new_host(env: Env, uuid: str, macs_ips: dict[str, list[str]]) -> None:
    server = env.server(uuid)
    assert server["status"] == "ACTIVE"
    assert server["OS-EXT-SRV-ATTR:host"] == "compute05"
    assert env.db_host(uuid) == ("compute05", "compute05")
    ifaces = env.stack.client.compute("GET", f"/servers/{uuid}/os-interface")[
        "interfaceAttachments"]
    have = {i["mac_addr"]: sorted(ip["ip_address"] for ip in i["fixed_ips"]) for i in ifaces}
    assert have == macs_ips
    for i in ifaces:
        port = env.port(i["port_id"])
        assert port["binding:host_id"] == "compute05"
        assert port["binding:vif_type"] == "ovs"
        assert port["device_id"] == uuid
    assert {v["address"]: v["type"] for v in env.cache(uuid)} == {m: "ovs" for m in macs_ips}


def _macs_ips(inst: dict) -> dict[str, list[str]]:
    p = inst["port"]
    return {p["mac_address"]: sorted(ip["ip_address"] for ip in p["fixed_ips"])}


def test_ports_survive_and_mtu_set(env: Env) -> None:
    inst = env.groups["survive"][0]
    port_before = env.port(inst["port"]["id"])
    assert port_before["binding:vif_type"] == "bridge"
    assert env.cache(inst["uuid"])[0]["preserve_on_delete"] is True
    rc, report, err = env.run_json(inst["uuid"], "--to-host", "compute05", "--mtu", "1422")
    assert rc == 0, err
    r = _one(report)
    assert r["status"] == "done" and r["step"] == "verified", r
    assert [x["action"] for x in r["repairs"]] == ["rebound"]
    _assert_on_new_host(env, inst["uuid"], _macs_ips(inst))
    port = env.port(inst["port"]["id"])
    assert port["created_at"] == port_before["created_at"]  # the same port, never recreated
    assert env.network(env.nets["selfservice"]["id"])["mtu"] == 1422
    assert report["summary"]["networks_mtu_set"] == [env.nets["selfservice"]["id"]]
    # the DB move went through migrate's journal
    runs = env.stack.cloud.server.execute("SELECT status, steps FROM runs",
                                          database=env.journal_db)
    assert runs and all(r == ("done", "nova") for r in runs)


def test_nova_created_port_survives(env: Env) -> None:
    inst = env.groups["novaport"][0]
    # Nova created this port: a detach would delete it
    assert env.cache(inst["uuid"])[0]["preserve_on_delete"] is False
    created = env.port(inst["port"]["id"])["created_at"]
    rc, report, err = env.run_json(inst["uuid"], "--to-host", "compute05", "--mtu", "1422")
    assert rc == 0, err
    r = _one(report)
    assert r["status"] == "done", r
    port = env.port(inst["port"]["id"])
    assert port is not None and port["created_at"] == created
    assert len(env.ports_with_mac(inst["port"]["mac_address"])) == 1
    _assert_on_new_host(env, inst["uuid"], _macs_ips(inst))


def test_gone_port_recreated_with_same_mac_and_ip(env: Env) -> None:
    inst = env.groups["gone"][0]
    assert env.port(inst["port"]["id"]) is None
    rc, report, err = env.run_json(inst["uuid"], "--to-host", "compute05", "--node",
                                   "compute05", "--mtu", "1422")
    assert rc == 0, err
    r = _one(report)
    assert r["status"] == "done", r
    (rep,) = r["repairs"]
    assert rep["action"] == "recreated" and rep["port"] == inst["port"]["id"]
    new = env.port(rep["new_port"])
    assert new["mac_address"] == inst["port"]["mac_address"]
    assert new["fixed_ips"] == inst["port"]["fixed_ips"]
    assert new["network_id"] == inst["port"]["network_id"]
    assert sorted(new["security_groups"]) == sorted(inst["port"]["security_groups"])
    assert new["device_owner"] == "compute:nova"
    _assert_on_new_host(env, inst["uuid"], _macs_ips(inst))


def test_still_running_in_old_cloud_is_refused(env: Env) -> None:
    inst = env.groups["running"][0]
    before = env.checksum("nova", "instances"), env.checksum("neutron", "ml2_port_bindings")
    rc, report, err = env.run_json(inst["uuid"], "--to-host", "compute05")
    assert rc == 1
    r = _one(report)
    assert r["status"] == "refused"
    assert r["findings"][0]["code"] == "OLD_STILL_RUNNING"
    assert f"server stop {inst['uuid']}" in r["error"]
    assert env.db_host(inst["uuid"]) == ("compute01", "compute01")
    assert (env.checksum("nova", "instances"),
            env.checksum("neutron", "ml2_port_bindings")) == before


def test_router_still_enabled_in_old_cloud_is_refused(env: Env) -> None:
    inst = env.groups["router"][0]
    r = env.run(inst["uuid"], "--to-host", "compute05")
    assert r.returncode == 1
    router = env.nets["routed"]["router"]["id"]
    assert f"router set --disable {router}" in r.stdout
    assert env.db_host(inst["uuid"]) == ("compute01", "compute01")


def test_unknown_instance_or_host_changes_nothing(env: Env) -> None:
    before = env.checksum("nova", "instances"), env.checksum("neutron", "ports")
    inst = env.groups["batch"][0]["uuid"]
    r = env.run("no-such-instance", "--to-host", "compute05")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "pacestack: error: unknown instance 'no-such-instance': not in the new cloud")
    r = env.run(inst, "--to-host", "compute99")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pacestack: error: --to-host compute99: no nova-compute service")
    r = env.run(inst, "--to-host", "compute05", "--node", "compute05.domain")
    assert r.returncode == 2 and "--node compute05.domain" in r.stderr
    r = env.run("--all-on", "nosuchhost", "--to-host", "compute05")
    assert r.returncode == 2 and "--all-on nosuchhost" in r.stderr
    assert (env.checksum("nova", "instances"), env.checksum("neutron", "ports")) == before
    assert inst not in {row[0] for row in env.state_rows()}


def test_batch_of_20_killed_halfway_resumes(env: Env, tmp_path: Path) -> None:
    batch = env.groups["batch"]
    listing = tmp_path / "instances.txt"
    listing.write_text("# the batch\n" + "\n".join(i["uuid"] for i in batch) + "\n")
    args = ("--from-file", str(listing), "--to-host", "compute05", "--parallel", "4",
            "--mtu", "1422")
    ids = {i["uuid"] for i in batch}
    late = ("rebooted", "ports_repaired", "started", "verified")
    proc = subprocess.Popen(env.argv(*args), env=env.environ(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            rows = [r for r in env.state_rows() if r[0] in ids]
            if sum(1 for r in rows if r[1] in late) >= 6:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the batch finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # like a power cut: no cleanup runs
    finally:
        proc.wait(timeout=30)
    rows = {r[0]: r for r in env.state_rows() if r[0] in ids}
    unfinished = [u for u, r in rows.items() if r[1] != "verified"]
    assert unfinished, "nothing left to resume"
    rc, report, err = env.run_json(*args)
    assert rc == 0, err[-3000:]
    s = report["summary"]
    assert s["status"] == {"done": 20}
    assert s["resumed"] >= len(unfinished)
    for inst in batch:
        _assert_on_new_host(env, inst["uuid"], _macs_ips(inst))
        assert len(env.ports_with_mac(inst["port"]["mac_address"])) == 1
    # every DB move finished exactly once: no interrupted migrate run is left
    runs = env.stack.cloud.server.execute("SELECT status, COUNT(*) FROM runs GROUP BY status",
                                          database=env.journal_db)
    assert dict(runs).keys() == {"done"}
    # a third run finds nothing to do and changes nothing
    before = env.checksum("nova", "instances")
    rc, report, err = env.run_json(*args)
    assert rc == 0 and report["summary"]["status"] == {"done": 20}
    assert env.checksum("nova", "instances") == before
