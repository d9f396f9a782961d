"""`pacestack cluster apply` on the live 2-node lab while others write the CIB.

Between apply's read of the CIB and its push, the Galera agent may record
``galera-last-committed`` (crm_attribute --lifetime forever, into the nodes section)
and an operator may ban a resource. The window is hit deterministically: apply runs
in a wrapper (inside the lab node) that makes those writes when apply calls
crm_verify on its edited copy, which is after the read and before the push. The
writes are the real tools (crm_attribute, pcs) on the real cluster. Time budget:
about 25 s (6 s to form the cluster).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# runs `pacestack cluster apply ...` (argv[2:]) with the writes of argv[1] made the
# first time apply calls the function named there: MODULE.FUNCTION of pacestack.cluster
_WRAPPER = """\
import importlib, json, subprocess, sys
from pacestack.cli import main

hook = json.loads(sys.argv[1])
module_name, function = hook["at"].rsplit(".", 1)
module = importlib.import_module("pacestack.cluster." + module_name)
original = getattr(module, function)

def writes_first(*args, **kw):
    setattr(module, function, original)
    for argv in hook["writes"]:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"concurrent write {argv} failed: {proc.stderr.strip()}")
    return original(*args, **kw)

setattr(module, function, writes_first)
sys.exit(main(sys.argv[2:]))
"""

PACESTACK = str(Path(sys.executable).with_name("pacestack"))
RECORDED = "6f0c4e2a-0000-11ef-9a2b-5254000a0b0c:1234:1765000000"


def _description(lab, path: Path, extra: str = "", api_params: str = "") -> Path:
    n1, n2 = lab.nodes
    path.write_text(f"""\
[cluster]
nodes = {n1.name}, {n2.name}
addresses = {n1.address}, {n2.address}
profile = none

[vip]
address = {lab.spare_address()}
cidr_netmask = 24
fronts = api

[resource:api]
agent = ocf:heartbeat:Dummy
monitor_interval = 5
{api_params}
[resource:volume]
agent = ocf:heartbeat:Dummy
mode = single
monitor_interval = 5
{extra}""")
    return path


def _apply_with_writes(node, tmp_path: Path, desc: Path, writes: list[list[str]],
                       at: str = "pcsrun.crm_verify"):
    """apply, with ``writes`` made when it first calls ``at``: by default its crm_verify
    of the edited copy, which comes after its read of the CIB and before its push."""
    wrapper = tmp_path / "apply_between.py"
    wrapper.write_text(_WRAPPER)
    return node.run([sys.executable, str(wrapper), json.dumps({"at": at, "writes": writes}),
                     "cluster", "apply", "-d", str(desc), "--format", "json"],
                    check=False, timeout=180)


def _configuration(node) -> ET.Element:
    return ET.fromstring(node.run(["cibadmin", "--query", "--scope", "configuration"],
                                  timeout=30).stdout)


def _ids(config: ET.Element) -> set[str]:
    return {e.get("id") for e in config.iter() if e.get("id")}


def test_writes_made_during_apply_survive_its_push(lab_cluster_module, tmp_path):
    lab = lab_cluster_module
    c1, c2 = lab.nodes
    first = c1.run([PACESTACK, "cluster", "apply", "-d",
                    str(_description(lab, tmp_path / "v1.conf"))], check=False, timeout=180)
    assert first.returncode == 0, first.stderr
    # v2 adds a resource and changes one of api's parameters
    v2 = _description(lab, tmp_path / "v2.conf", api_params="params =\n    fake=changed\n",
                      extra="""
[resource:cache]
agent = ocf:heartbeat:Dummy
mode = single
monitor_interval = 5
""")
    res = _apply_with_writes(c1, tmp_path, v2, [
        # as the Galera agent records a member's last committed position
        ["crm_attribute", "--node", c1.name, "--name", "galera-last-committed",
         "--lifetime", "forever", "--update", RECORDED],
        # an operator's ban
        ["pcs", "resource", "ban", "volume", c2.name],
    ])
    assert res.returncode == 0, res.stderr
    config = _configuration(c1)
    recorded = [nv.get("value") for nv in config.iterfind("nodes/node/instance_attributes/nvpair")
                if nv.get("name") == "galera-last-committed"]
    assert recorded == [RECORDED], "the recorded position was lost"
    bans = [c.attrib for c in config.iterfind("constraints/rsc_location")
            if c.get("id", "").startswith("cli-ban-volume")]
    assert bans and bans[0]["node"] == c2.name, "the operator's ban was lost"
    # apply's own changes landed
    assert "cache" in _ids(config)
    api = next(p for p in config.iter("primitive") if p.get("id") == "api")
    assert {nv.get("name"): nv.get("value") for nv in api.iterfind(
        "instance_attributes/nvpair")}.get("fake") == "changed"
    out = json.loads(res.stdout)
    assert out["changed"] and out["written"] == "diff" and out["merged"], out
    assert out["changes"] >= 2, out  # the new resource, api's parameter

    again = c2.run([PACESTACK, "cluster", "apply", "-d", str(v2)],
                   check=False, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "nothing written" in again.stdout


def test_a_conflicting_write_stops_apply_and_nothing_is_written(lab_cluster_module, tmp_path):
    lab = lab_cluster_module
    c1 = lab.nodes[0]
    # api's parameter would be a change of its own: it must not land either
    desc = _description(lab, tmp_path / "v3.conf", api_params="params =\n    fake=third\n",
                        extra="""
[resource:clash]
agent = ocf:heartbeat:Dummy
mode = single
monitor_interval = 5
""")
    # the operator creates a resource of the same id, differently, meanwhile
    res = _apply_with_writes(c1, tmp_path, desc, [
        ["pcs", "resource", "create", "clash", "ocf:heartbeat:Dummy", "fake=mine"],
    ])
    assert res.returncode == 1, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "'clash'" in err and "changed since apply read it" in err, err
    config = _configuration(c1)
    clash = next(p for p in config.iter("primitive") if p.get("id") == "clash")
    assert {nv.get("name"): nv.get("value") for nv in clash.iterfind(
        "instance_attributes/nvpair")} == {"fake": "mine"}, "the operator's resource changed"
    api = next(p for p in config.iter("primitive") if p.get("id") == "api")
    assert "third" not in {nv.get("value") for nv in api.iterfind("instance_attributes/nvpair")}


def test_a_write_between_the_last_check_and_the_push_is_not_overwritten(lab_cluster_module,
                                                                        tmp_path):
    """Pacemaker takes the patch only while the configuration is at the version apply
    checked: a write in between makes apply check again, and keep that write too."""
    lab = lab_cluster_module
    c1 = lab.nodes[0]
    desc = _description(lab, tmp_path / "v4.conf", api_params="params =\n    fake=fourth\n")
    res = _apply_with_writes(c1, tmp_path, desc, [
        ["crm_attribute", "--node", c1.name, "--name", "galera-last-committed",
         "--lifetime", "forever", "--update", RECORDED + "4"],
    ], at="cib_patch.push_live")
    assert res.returncode == 0, res.stderr
    config = _configuration(c1)
    recorded = [nv.get("value") for nv in config.iterfind("nodes/node/instance_attributes/nvpair")
                if nv.get("name") == "galera-last-committed"]
    assert recorded == [RECORDED + "4"]
    api = next(p for p in config.iter("primitive") if p.get("id") == "api")
    assert {nv.get("name"): nv.get("value") for nv in api.iterfind(
        "instance_attributes/nvpair")}.get("fake") == "fourth"
    assert json.loads(res.stdout)["merged"]

    # the same moment, a write to what the patch changes: apply must see it, not push
    desc = _description(lab, tmp_path / "v5.conf", api_params="params =\n    fake=fifth\n")
    res = _apply_with_writes(c1, tmp_path, desc, [
        ["pcs", "resource", "update", "api", "fake=operator"],
    ], at="cib_patch.push_live")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "fake" in res.stderr and "changed since apply read it" in res.stderr, res.stderr
    api = next(p for p in _configuration(c1).iter("primitive") if p.get("id") == "api")
    assert {nv.get("name"): nv.get("value") for nv in api.iterfind(
        "instance_attributes/nvpair")}.get("fake") == "operator"
