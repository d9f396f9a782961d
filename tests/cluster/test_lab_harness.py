"""The namespace cluster harness against the real stack: corosync, pacemaker, pcs,
ocf:heartbeat:Dummy, in network+mount+UTS+IPC+PID namespaces.

Budget: about 60 s on 2 idle cores (each cluster forms in ~6 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pacestack.cluster import crm_mon
from pacestack.cluster.lab import LabCluster, LabError, cleanup_stale, state
from pacestack.cluster.lab.corosync import corosync_conf, seeded_cib
from pacestack.cluster.lab.netns import boot_holder, netns_list, ns_inode

from pacestack import proc

slow = pytest.mark.slow
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def locate(node, resource: str) -> list[str]:
    """Nodes the resource runs on, as this node's Pacemaker sees it."""
    res = node.run(["crm_resource", "--locate", "--resource", resource], check=False)
    return [line.rsplit(":", 1)[1].strip() for line in res.stdout.splitlines()
            if "is running on:" in line]


def wait_located(node, resource: str, where: list[str], timeout: float = 30) -> float:
    t0 = time.monotonic()
    ok = proc.wait_for(lambda: locate(node, resource) == where, timeout, interval=0.1)
    assert ok, f"{resource} on {locate(node, resource)}, wanted {where}"
    return time.monotonic() - t0


def host_addresses() -> str:
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True,
                          check=True).stdout


def mounts_text() -> str:
    with open("/proc/mounts", encoding="utf-8") as fh:
        return fh.read()


# ---- no cluster needed -------------------------------------------------------

def test_corosync_conf_is_two_node_knet_with_short_token():
    conf = corosync_conf("pslab-x", [("controller01", "10.99.5.1"),
                                     ("controller02", "10.99.5.2")], token_ms=1000)
    assert "transport: knet" in conf and "token: 1000" in conf
    assert "crypto_cipher: none" in conf and "crypto_hash: none" in conf
    assert "two_node: 1" in conf
    assert "name: controller02\n        nodeid: 2\n        ring0_addr: 10.99.5.2" in conf
    three = corosync_conf("c", [("a", "10.99.5.1"), ("b", "10.99.5.2"), ("c", "10.99.5.3")])
    assert "two_node" not in three


def test_seeded_cib_disables_fencing_and_shortens_dc_deadtime(tmp_path):
    cib = tmp_path / "cib.xml"
    cib.write_text(seeded_cib())
    env = {**os.environ, "CIB_file": str(cib)}
    for name, value in (("stonith-enabled", "false"), ("dc-deadtime", "2s")):
        out = subprocess.run(["crm_attribute", "--type", "crm_config", "--name", name,
                              "--query", "--quiet"], env=env, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == value
    subprocess.run(["crm_verify", "--xml-file", str(cib)], check=True)


def test_runs_get_unique_names_and_bad_names_are_refused(tmp_path):
    a, b = LabCluster(base_dir=tmp_path), LabCluster(base_dir=tmp_path)
    assert a.run_id != b.run_id and a.dir != b.dir and a.cluster_name != b.cluster_name
    assert a.switch_netns != b.switch_netns
    with pytest.raises(ValueError, match="run_id"):
        LabCluster(run_id="../etc")
    with pytest.raises(ValueError, match="host names"):
        LabCluster(nodes=("controller01", "controller01"))
    with pytest.raises(LabError, match="start"):
        a.address(1)


_TCP_ONCE = """
import socket
s = socket.create_server(("0.0.0.0", 7777))
print("listening", flush=True)
c, _ = s.accept()
c.sendall(("hello from " + socket.gethostname()).encode())
"""

def test_cleanup_stale_checks_start_times_and_owner(tmp_path):
    """A dead owner's run is removed; a live PID with another start time is never hit."""
    registry = tmp_path / "registry"
    registry.mkdir()
    dead = subprocess.Popen(["true"])
    dead_owner = state.pid_record(dead.pid)
    dead.wait()
    bystander = subprocess.Popen(["sleep", "60"])
    run_id = "t" + os.urandom(4).hex()
    name = f"pslab-{run_id}-x"
    try:
        started = proc.start_time(bystander.pid)
        run_dir = tmp_path / run_id
        run_dir.mkdir()
        (run_dir / state.MARKER).write_text(run_id + "\n")
        subprocess.run(["ip", "netns", "add", name], check=True)
        record = {"run_id": run_id, "owner": dead_owner, "dir": str(run_dir),
                  "netns": {name: None},  # died before the inode was recorded
                  "holders": {"x": {"reaper": [bystander.pid, started + 1]}}}
        state.save(record, registry)
        live = dict(record, run_id="live", owner=state.pid_record(os.getpid()), netns={},
                    holders={}, dir=str(tmp_path / "nope"))
        state.save(live, registry)

        assert cleanup_stale(registry) == [run_id]
        assert proc.is_alive(bystander.pid)  # recycled-PID case: left alone
        assert name not in netns_list() and not run_dir.exists()
        assert [r["run_id"] for r in state.load_all(registry)] == ["live"]
    finally:
        bystander.kill()
        bystander.wait()
        if name in netns_list():
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_host_that_cannot_boot_says_why_and_leaves_no_process(tmp_path):
    name = f"pslab-t{os.urandom(4).hex()}-boot"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        spec = tmp_path / "boot.json"
        spec.write_text(json.dumps({"hostname": "x", "binds": [[str(tmp_path), "/nonexistent"]]}))
        with pytest.raises(LabError, match="mount --bind .*/nonexistent"):
            boot_holder(name, spec, tmp_path / "boot.log")
        netns_inode = os.stat(f"/run/netns/{name}").st_ino
        assert not [p for p in os.listdir("/proc") if p.isdigit()
                    and ns_inode(int(p), "net") == netns_inode]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


# ---- the real cluster --------------------------------------------------------

@slow
def test_nodes_are_isolated_hosts(lab_cluster):
    c1 = lab_cluster.node("controller01")
    assert c1.run(["hostname"]).stdout.strip() == "controller01"
    # own PID namespace: PID 1 is the reaper, the other node's corosync is invisible
    ps = c1.run(["ps", "-eo", "pid=,args=", "--cols", "4096"]).stdout
    assert ps.splitlines()[0].split()[0] == "1" and "reaper.py" in ps.splitlines()[0]
    assert ps.count("corosync -f") == 1
    # own /run, seen on the host under the node's root only
    c1.run(["touch", "/run/pacestack-probe"])
    assert (c1.root.run / "pacestack-probe").exists()
    assert not os.path.exists("/run/pacestack-probe")
    assert c1.root.host_path("/var/lib/mysql/x") == c1.root.var_lib_mysql / "x"
    # addresses live only inside the namespaces, never in 192.0.2.0/24
    assert lab_cluster.subnet.startswith("10.99.")
    assert f"inet {c1.address}/24" in c1.run(["ip", "-o", "addr"]).stdout
    assert c1.address not in host_addresses()
    arb = lab_cluster.arbitrator
    assert arb.run(["hostname"]).stdout.strip() == "arbitrator"
    # the arbitrator shares the lab network and resolves the node names
    c2_address = lab_cluster.node("controller02").address
    assert arb.run(["getent", "hosts", "controller02"]).stdout.split()[0] == c2_address
    # ...and reaches them over TCP (as garbd reaches the Galera nodes)
    server = lab_cluster.node("controller02").popen(
        [sys.executable, "-c", _TCP_ONCE], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    got = arb.run([sys.executable, "-c", "import socket,sys; print(socket.create_connection("
                   "(sys.argv[1], 7777), 5).recv(64).decode())", c2_address])
    assert got.stdout.strip() == "hello from controller02"
    server.wait(10)
    # each boot is a boot to its programs: a boot_id of its own, clocks from zero
    host_boot = open("/proc/sys/kernel/random/boot_id", encoding="ascii").read().strip()
    boots = {n: lab_cluster.node(n).run(["cat", BOOT_ID]).stdout.strip()
             for n in ("controller01", "controller02", "arbitrator")}
    assert len(set(boots.values())) == 3 and host_boot not in boots.values(), boots
    assert arb.run(["sh", "-c", f"echo x > {BOOT_ID}"], check=False).returncode != 0
    up = float(arb.run(["cat", "/proc/uptime"]).stdout.split()[0])
    with open("/proc/uptime", encoding="ascii") as fh:
        assert up < float(fh.read().split()[0]) and up < 600
    # the arbitrator crashes and reboots like any host (no cluster stack on it)
    sleeper = arb.start_daemon(["sleep", "600"], "sleep.out")
    t0 = time.monotonic()
    lab_cluster.crash("arbitrator")
    assert not proc.is_alive(sleeper) and not arb.booted
    lab_cluster.restart("arbitrator")
    assert arb.run(["hostname"]).stdout.strip() == "arbitrator"
    assert arb.run(["ps", "-e", "--no-headers"]).stdout.count("\n") == 2  # PID 1 and ps
    assert arb.run(["cat", BOOT_ID]).stdout.strip() not in (host_boot, *boots.values())
    # the new boot began after the crash: its uptime never claims more
    up = float(arb.run(["cat", "/proc/uptime"]).stdout.split()[0])
    assert up <= time.monotonic() - t0, up


_ATTACH = """
import json, sys
from pacestack.cluster.lab import LabCluster
lab = LabCluster.attach(sys.argv[1])
lab.crash("controller02")
print(json.dumps(lab.describe()))
"""


@slow
def test_a_detached_lab_is_kept_and_driven_from_another_process(lab_cluster):
    run_id = lab_cluster.detach()
    assert run_id not in cleanup_stale()
    out = subprocess.run([sys.executable, "-c", _ATTACH, run_id], capture_output=True,
                         text=True, timeout=60, check=True)
    desc = json.loads(out.stdout)
    hosts = {h["name"]: h for h in desc["hosts"]}
    assert desc["network"] == lab_cluster.network and desc["kept"] is True
    assert hosts["controller02"]["booted"] is False
    assert hosts["controller01"]["online"] is True and hosts["arbitrator"]["booted"] is True
    lab_cluster.wait_offline("controller02", observer="controller01")


@slow
def test_dummy_fails_over_on_crash_and_node_rejoins(lab_cluster, lab_timings):
    c1, c2 = lab_cluster.node("controller01"), lab_cluster.node("controller02")
    c1.run(["pcs", "resource", "create", "d", "ocf:heartbeat:Dummy",
            "op", "monitor", "interval=5s"])
    c1.run(["pcs", "constraint", "location", "d", "prefers", "controller01=50"])
    wait_located(c2, "d", ["controller01"])
    assert (c1.root.run / "resource-agents" / "Dummy-d.state").exists()

    before = c1.pids()
    assert len(before) > 5  # reaper, corosync, pacemakerd and its daemons
    t0 = time.monotonic()
    lab_cluster.crash("controller01")
    assert not any(proc.is_alive(p) for p in before)
    assert not (c1.root.run / "resource-agents" / "Dummy-d.state").exists()
    wait_located(c2, "d", ["controller02"])
    failover = time.monotonic() - t0
    lab_timings("failover (crash -> Dummy on survivor)", failover)
    assert failover < 20
    # the operation history the drill's benchmark takes execution times from
    ops = crm_mon.operations(c2.run(list(crm_mon.WITH_OPERATIONS)).stdout)
    started = [o for o in ops if (o.node, o.resource, o.task) == ("controller02", "d", "start")]
    assert started and all(0 <= o.exec_s < 10 and o.call for o in started), ops
    assert crm_mon.operations("") is None and crm_mon.operations("<crm_mon") is None
    with pytest.raises(LabError, match="down"):
        c1.run(["true"])

    rejoin = lab_cluster.restart("controller01")
    lab_timings("rejoin (restart -> both online)", rejoin)
    for node in (c1, c2):
        view = node.status()
        assert view.online == {"controller01": True, "controller02": True}
    # the restarted node kept its disk: the CIB it had (with d) is still there
    assert (c1.root.var_lib_pacemaker / "cib" / "cib.xml").exists()
    # location preference 50, no stickiness: d goes home once controller01 is back
    wait_located(c2, "d", ["controller01"])

    # a clean stop (as `pcs cluster stop`) moves d away; the host itself stays up
    lab_timings("clean shutdown (d moved, stack down)", lab_cluster.shutdown("controller01"))
    assert locate(c2, "d") == ["controller02"]
    assert c1.booted and not c1.running("corosync")
    lab_cluster.restart("controller01")
    wait_located(c2, "d", ["controller01"])


@slow
def test_cut_link_partitions_and_restore_heals(lab_cluster, lab_timings):
    lab_cluster.cut_link("controller02")
    seen = lab_cluster.wait_offline("controller02", observer="controller01")
    lab_cluster.wait_offline("controller01", observer="controller02")
    lab_timings("partition noticed", seen)
    # a real split brain with fencing off: each side is its own DC
    for name in ("controller01", "controller02"):
        node = lab_cluster.node(name)
        assert proc.wait_for(lambda n=node: n.status().dc == n.name, 10), node.status()
    lab_cluster.restore_link()
    lab_timings("partition healed", lab_cluster.wait_online(timeout=60))


@slow
def test_destroy_leaves_no_process_mount_namespace_or_dir(lab_timings):
    lab = LabCluster().start()
    lab_timings("cluster formed", lab.timings["formed"])
    try:
        sleeper = lab.node("controller01").popen(["sleep", "600"])
        daemon = lab.arbitrator.start_daemon(["sleep", "600"], "sleep.out")
        # the PID is the daemon's from the start (setsid execs in place)
        assert proc.wait_for(lambda: proc.cmdline(daemon) == ["sleep", "600"], 5)
        assert daemon in lab.arbitrator.pids()
        names = [lab.switch_netns] + [n.netns for n in (*lab.nodes, lab.arbitrator)]
        pids = lab.pids() + [sleeper.pid]
        starts = {p: proc.start_time(p) for p in pids}
        assert set(names) <= set(netns_list())
        assert len(pids) > 15
        state_file = state.state_path(lab.run_id, lab.registry)
        assert json.loads(state_file.read_text())["owner"][0] == os.getpid()
    finally:
        lab.destroy()
    lab_timings("destroy", lab.timings["destroy"])
    sleeper.wait(5)
    assert not [p for p in pids if proc.is_alive(p) and proc.start_time(p) == starts[p]]
    assert not set(names) & set(netns_list())
    assert lab.run_id not in mounts_text()
    assert not lab.dir.exists() and not state_file.exists()
    lab.destroy()  # idempotent


_STALE_RUN = """
import os, signal, sys
from pacestack.cluster.lab import LabCluster
lab = LabCluster().start()
print(lab.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)   # the owner dies without destroy()
"""


@slow
def test_two_runs_coexist_and_a_dead_runs_leftovers_are_cleaned(lab_cluster):
    # a second run, started while ours is up, whose owner then dies
    out = subprocess.run([sys.executable, "-c", _STALE_RUN], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    stale_id = out.stdout.strip()
    record = json.loads(state.state_path(stale_id).read_text())
    assert record["subnet"] != lab_cluster.subnet and stale_id != lab_cluster.run_id
    stale_pids = [tuple(h[k]) for h in record["holders"].values() for k in ("holder", "reaper")]
    assert all(state.same_process(list(p)) for p in stale_pids)  # its nodes still run
    assert set(record["netns"]) <= set(netns_list())

    assert stale_id in cleanup_stale()  # ours has a live owner: untouched
    assert not any(state.same_process(list(p)) for p in stale_pids)
    assert not set(record["netns"]) & set(netns_list())
    assert not os.path.exists(record["dir"]) and not state.state_path(stale_id).exists()
    lab_cluster.wait_online(timeout=10)
