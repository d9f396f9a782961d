"""ocf:pacestack:galera as an OCF agent: meta-data (DTD/RNG, pcs), validate-all,
ocf-tester on a real one-member Galera, probes, and refusal of bad state."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.fixtures.galera import AgentDriver, GaleraCluster
from tests.fixtures.mariadb import MARIADBD
from tests.fixtures.ocf import PROVIDER_DIR, RA_DTD, RA_RNG, exit_reason, make_cib, run_agent

# the parameter names operators type into `pcs resource create`
PARAMETERS = ["config", "binary", "datadir", "datadir_mount", "socket", "pid", "log", "user",
              "group", "wsrep_cluster_address", "cluster_host_map", "two_node_mode", "sync_timeout",
              "wsrep_sst_method",
              "check_defaults_file"]


def test_meta_data_validates_and_lists_the_interface(ocf_provider, tmp_path):
    rc, out, _ = run_agent("galera", "meta-data")
    assert rc == 0
    path = tmp_path / "galera.xml"
    path.write_text(out)
    for schema in (["--dtdvalid", RA_DTD], ["--relaxng", RA_RNG]):
        check = subprocess.run(["xmllint", "--noout", *schema, str(path)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    import xml.etree.ElementTree as ET

    root = ET.fromstring(out)
    assert [p.get("name") for p in root.iter("parameter")] == PARAMETERS
    roles = {(a.get("name"), a.get("role")) for a in root.iter("action")}
    assert ("monitor", "Promoted") in roles and ("monitor", "Unpromoted") in roles
    assert {"promote", "demote", "notify"} <= {a.get("name") for a in root.iter("action")}


def test_pcs_describes_it(ocf_provider):
    out = subprocess.run(["pcs", "resource", "describe", "ocf:pacestack:galera"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("wsrep_cluster_address", "cluster_host_map", "two_node_mode"):
        assert name in out.stdout


@pytest.fixture
def one_node(tmp_path):
    cluster = GaleraCluster(1, names=[os.uname().nodename])
    node = cluster.nodes[0]
    node.prepare_datadir()
    node.write_config()
    yield cluster, node
    cluster.destroy()


def base_params(cluster, node) -> dict[str, object]:
    return {"config": node.defaults_file, "binary": MARIADBD, "datadir": str(node.datadir),
            "socket": node.socket, "pid": node.pid_file, "log": node.log_error,
            "wsrep_cluster_address": cluster.gcomm_url(), "cluster_host_map": cluster.host_map()}


@pytest.mark.parametrize("change,code,words", [
    ({"binary": "/nonexistent/mariadbd"}, 5, "binary /nonexistent/mariadbd"),
    ({"config": "/nonexistent/my.cnf"}, 6, "config /nonexistent/my.cnf"),
    ({"wsrep_cluster_address": "10.0.0.1,10.0.0.2"}, 6, "does not start with gcomm://"),
    ({"wsrep_cluster_address": "gcomm://a,,b"}, 6, "lists no valid hosts"),
    ({"cluster_host_map": "othernode:127.0.0.1:1"}, 6, "is not in cluster_host_map"),
    ({"cluster_host_map": "garbage"}, 6, "is not node:address"),
    ({"sync_timeout": "soon"}, 6, "not an integer"),
    ({"wsrep_sst_method": "rsync;touch /x"}, 6, "is not a method name"),
    ({"two_node_mode": "true"}, 6, "two_node_mode needs exactly two data members"),
])
def test_validate_all_refuses_bad_configuration(agent_executables, one_node, change, code, words):
    cluster, node = one_node
    params = {**base_params(cluster, node), **change}
    rc, _, err = run_agent("galera", "validate-all", params, node=node.name)
    assert rc == code, err
    reason = exit_reason(err)
    assert words in reason and "\n" not in reason
    # start refuses the same way and starts nothing
    rc, _, _ = run_agent("galera", "start", params, node=node.name)
    assert rc == code and not node.running()


@pytest.mark.parametrize("content", [
    "# GALERA saved state\nversion: 2.1\nuuid: not-a-uuid\nseqno: 5\n",
    "# GALERA saved state\nversion: 2.1\nuuid: 2ec83218-e91a-11f1-9c34-4743e91b2bee\n"
    "seqno: 5; rm -rf /\n",
    "\x00\x01garbage",
])
def test_malformed_grastate_fails_the_node_never_guesses(agent_executables, one_node, tmp_path,
                                                         content):
    cluster, node = one_node
    (node.datadir / "grastate.dat").write_text(content)
    cib = make_cib(tmp_path / "cib.xml", [node.name])
    rc, _, err = run_agent("galera", "start", base_params(cluster, node), cib_file=cib,
                           node=node.name)
    assert rc == 1
    assert "cannot place this node" in exit_reason(err) and "grastate.dat" in exit_reason(err)
    env = {**os.environ, "CIB_file": str(cib)}
    q = subprocess.run(["crm_attribute", "-N", node.name, "-n", "galera-position", "-l",
                        "reboot", "-G", "-q"], env=env, capture_output=True, text=True)
    assert q.returncode != 0  # nothing published: peers keep waiting for this node
    assert not node.running()


def test_probe_reports_a_server_running_before_pacemaker(agent_executables, one_node, tmp_path):
    cluster, node = one_node
    driver = AgentDriver(cluster, tmp_path / "cib.xml")
    assert driver.monitor(node.name, probe=True)[0] == 7
    cluster.bootstrap(0)  # started by hand, not by the agent
    rc, reason = driver.monitor(node.name, probe=True)
    assert rc == 8, reason
    node.stop()
    assert driver.monitor(node.name, probe=True)[0] == 7


def test_ocf_tester_passes(ocf_provider, one_node, tmp_path):
    cluster, node = one_node
    os.makedirs("/run/resource-agents", exist_ok=True)
    cib = make_cib(tmp_path / "cib.xml", [node.name])
    opts = []
    for key, value in base_params(cluster, node).items():
        opts += ["-o", f"{key}={value}"]
    env = {**os.environ, "CIB_file": str(cib), "OCF_ROOT": "/usr/lib/ocf"}
    out = subprocess.run(["ocf-tester", "-n", "galera-tester", *opts,
                          str(PROVIDER_DIR / "galera")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "galera passed all tests" in out.stdout
    assert not node.running()


def test_a_missing_datadir_or_unmounted_volume_fails_the_node(agent_executables, one_node,
                                                              tmp_path):
    cluster, node = one_node
    cib = make_cib(tmp_path / "cib.xml", [node.name])
    params = base_params(cluster, node)
    cases = [
        ({"datadir": str(tmp_path / "nowhere")}, 5, "does not exist"),
        ({"datadir_mount": str(tmp_path)}, 5, f"datadir_mount {tmp_path} is not mounted"),
        ({"datadir_mount": "var/lib/mysql"}, 6, "is not an absolute path"),
        ({"datadir_mount": "/proc"}, 6, "is not on datadir_mount /proc"),
    ]
    for change, code, words in cases:
        rc, _, err = run_agent("galera", "start", {**params, **change}, cib_file=cib,
                               node=node.name)
        assert rc == code and words in exit_reason(err), (change, err[-500:])
        assert not node.running()
    assert not (tmp_path / "nowhere").exists()  # never created for a new cluster


def test_position_attribute_is_never_stale(agent_executables, one_node, tmp_path):
    """Reported while stopped and Unpromoted, gone while the seqno moves (Promoted),
    fresh after a demote's shutdown, gone after a stop."""
    cluster, node = one_node
    driver = AgentDriver(cluster, tmp_path / "cib.xml")
    driver.start()
    assert driver.attr("galera-position", node.name).endswith(":empty")
    assert driver.recover(start=False) == [node.name]
    assert driver.attr("galera-position", node.name) is None
    cluster.write_rows(0, "stale", 1, 3)
    assert driver.run(node.name, "demote")[0] == 0
    state = node.grastate()
    assert driver.attr("galera-position", node.name) == \
        f"{state['uuid']}:{state['seqno']}:grastate"
    assert driver.run(node.name, "stop")[0] == 0
    assert driver.attr("galera-position", node.name) is None


def test_a_promoted_node_whose_mariadbd_died_withdraws_its_promotion_score(
        agent_executables, one_node, tmp_path):
    """mariadbd killed on a Promoted node: the monitor's failure withdraws the node's
    promotion score, so Pacemaker's recovery plans the instance Unpromoted and moves
    what runs with Promoted Galera (the VIP) to a Promoted peer in that transition,
    instead of leaving it here, refusing connections, through the demote's crash
    recovery, the stop and the start. The demote scores the node again."""
    cluster, node = one_node
    driver = AgentDriver(cluster, tmp_path / "cib.xml")
    driver.start()
    assert driver.recover(start=False) == [node.name]
    assert driver.monitor(node.name)[0] == 8
    score = f"master-{driver.resource}"
    driver.set_attr(score, node.name, "1000")  # as Pacemaker last saw it: promotable
    cluster.kill9([node.name])
    rc, reason = driver.monitor(node.name)
    assert rc == 1 and "mariadbd is not running" in (reason or ""), (rc, reason)
    assert driver.attr(score, node.name) is None
    assert driver.run(node.name, "demote")[0] == 0
    assert driver.attr(score, node.name) is not None
