"""`pacestack galera status|recover` against a CIB file (CIB_file): the real CLI and
Pacemaker's own tools (cibadmin, crm_mon, crm_attribute), three members, positions
written as node attributes exactly as the agent writes them. Covers what a
two-controller lab cannot reach: a named node that reported but is not the most
advanced. No services; about 5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pacestack.agents.galera_bootstrap import parse_override

from tests.fixtures.ocf import make_cib

PACESTACK = str(Path(sys.executable).with_name("pacestack"))
U1 = "2ec83218-e91a-11f1-9c34-4743e91b2bee"
U3_NODE = "5a1e0c2d-e91a-11f1-8f11-0b6f3c2a9d11"
RESOURCE = (
    '<clone id="galera-clone"><primitive id="galera" class="ocf" provider="pacestack" '
    'type="galera"><instance_attributes id="galera-ia"><nvpair id="galera-ia-a" '
    'name="wsrep_cluster_address" value="gcomm://node1,node2,node3"/>'
    '</instance_attributes></primitive><meta_attributes id="galera-clone-meta">'
    '<nvpair id="galera-clone-meta-p" name="promotable" value="true"/></meta_attributes>'
    '</clone>')


def cib(tmp_path: Path) -> dict[str, str]:
    path = make_cib(tmp_path / "cib.xml", ["node1", "node2", "node3"])
    env = {**os.environ, "CIB_file": str(path)}
    subprocess.run(["cibadmin", "--create", "-o", "resources", "-X", RESOURCE], env=env,
                   check=True)

    def attr(name, node, value, lifetime="reboot"):
        subprocess.run(["crm_attribute", "--name", name, "--node", node, "--lifetime",
                        lifetime, "--update", value], env=env, check=True,
                       capture_output=True)
    # node1 and node2 reported after the crash; node3 never came back: only its
    # persistent record is left
    attr("galera-position", "node1", f"{U1}:90:recovered")
    attr("galera-position", "node2", f"{U1}:100:grastate")
    for node, seqno in (("node1", 90), ("node2", 100), ("node3", 120)):
        attr("galera-last-committed", node, f"{U1}:{seqno}:1795658843", "forever")
    # what node2's agent published while Promoted: node3's crashed incarnation left
    # its view, and the methods its mariadbd can donate by
    attr("galera-departed", "node2", f"{U3_NODE}")
    attr("galera-sst-methods", "node2", "rsync,pacestack_rsync")
    return env


def run(env, *args):
    return subprocess.run([PACESTACK, "galera", *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_status_and_plan_from_a_cib_file(tmp_path):
    env = cib(tmp_path)
    res = run(env, "status", "--format", "json")
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["decision"]["kind"] == "wait" and st["decision"]["waiting_for"] == ["node3"]
    assert [m["node"] for m in st["members"]] == ["node1", "node2", "node3"]
    assert st["members"][2]["recorded"]["seqno"] == 120
    assert st["members"][1]["sst_methods"] == ["rsync", "pacestack_rsync"]
    assert st["members"][1]["departed"] == [U3_NODE] and st["members"][0]["departed"] == []
    text = run(env, "status").stdout
    assert "node2 can donate by: rsync, pacestack_rsync" in text
    assert f"node2 saw leave its view: {U3_NODE}" in text
    plan = json.loads(run(env, "recover", "--format", "json").stdout)
    assert plan["ok"] and plan["candidate"] == "node2" and plan["gap"] == 20


def test_a_less_advanced_node_named_is_refused_and_nothing_changes(tmp_path):
    env = cib(tmp_path)
    before = Path(env["CIB_file"]).read_text()
    res = run(env, "recover", "--bootstrap-from", "node1", "--accept-loss", "100")
    assert res.returncode == 2
    assert ("pacestack: error: recover refused, nothing changed: node1 (seqno 90) is not the "
            "most advanced member that reported: node2 is at seqno 100") in res.stderr
    assert Path(env["CIB_file"]).read_text() == before


def test_the_decision_is_one_node_attribute(tmp_path):
    env = cib(tmp_path)
    res = run(env, "recover", "--bootstrap-from", "node2", "--accept-loss", "20", "--no-wait")
    assert res.returncode == 0, res.stderr
    assert "handed to the agent on node2" in res.stdout
    value = subprocess.run(["crm_attribute", "--name", "galera-bootstrap-override", "--node",
                            "node2", "--lifetime", "reboot", "--query", "--quiet"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    o = parse_override(value)
    assert (o.node, o.uuid, o.seqno, o.missing, o.gap) == ("node2", U1, 100, ("node3",), 20)
    # a second decision while one is pending is refused
    again = run(env, "recover", "--bootstrap-from", "node2", "--accept-loss", "20")
    assert again.returncode == 2 and "already pending on node2" in again.stderr
