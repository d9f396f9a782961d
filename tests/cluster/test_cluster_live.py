"""`pacestack cluster apply` on the live 2-node cluster in namespaces (lab_cluster).

The resources are agents that really run inside the namespaces: ocf:pacemaker:Stateful
(promotable, sets its own promotion scores), ocf:heartbeat:Dummy (clone and single)
and ocf:heartbeat:IPaddr2 for the VIP on the lab network. The test pushes the
configuration, waits for it to run, checks that a second apply is a no-op, asks
`verify` where everything goes when controller01 dies, crashes controller01 and
compares. Time budget: about 40 s (6 s to form the cluster).
"""

from __future__ import annotations

import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

PACESTACK = str(Path(sys.executable).with_name("pacestack"))


def _description(lab, path: Path) -> Path:
    n1, n2 = lab.nodes
    path.write_text(f"""\
[cluster]
nodes = {n1.name}, {n2.name}
addresses = {n1.address}, {n2.address}
profile = none

[vip]
address = {lab.spare_address()}
cidr_netmask = 24
fronts = api, db

[resource:db]
agent = ocf:pacemaker:Stateful
mode = promotable
clone_meta =
    promoted-max=1

[resource:api]
agent = ocf:heartbeat:Dummy
monitor_interval = 5

[resource:volume]
agent = ocf:heartbeat:Dummy
mode = single
after = api
with = api
monitor_interval = 5
""")
    return path


def _placement(node) -> dict[str, list[tuple[str, str]]]:
    out = node.run(["crm_mon", "-1", "--output-as=xml"], timeout=30).stdout
    placed: dict[str, list[tuple[str, str]]] = {}
    for res in ET.fromstring(out).iter("resource"):
        slot = placed.setdefault(res.get("id"), [])
        if res.get("active") == "true" and res.get("failed") != "true":
            slot.extend((n.get("name"), res.get("role")) for n in res.findall("node"))
    return {k: sorted(v) for k, v in placed.items()}


def _wait_for(node, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        placed = _placement(node)
        if predicate(placed):
            return placed
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; resources on {node.name}: {placed}")
        time.sleep(0.5)


def test_apply_on_the_live_cluster_and_crash_follows_the_prediction(lab_cluster, tmp_path):
    lab = lab_cluster
    c1, c2 = lab.nodes
    desc = _description(lab, tmp_path / "cluster.conf")
    cmd = [PACESTACK, "cluster"]

    first = c1.run(cmd + ["apply", "-d", str(desc)], check=False, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "live cluster: applied" in first.stdout

    def running(placed):
        # settled: no instance still Starting/Promoting, or verify may see another state
        settled = all(r in ("Started", "Promoted", "Unpromoted")
                      for slot in placed.values() for _, r in slot)
        return (settled and len(placed.get("api", [])) == 2 and len(placed.get("db", [])) == 2
                and len(placed.get("volume", [])) == 1 and len(placed.get("vip", [])) == 1
                and any(r == "Promoted" for _, r in placed["db"]))
    before = _wait_for(c1, running, 60)

    again = c2.run(cmd + ["apply", "-d", str(desc)], check=False, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already matches the description, nothing written" in again.stdout
    plan = c2.run(cmd + ["plan", "-d", str(desc), "--format", "json"], timeout=120)
    assert json.loads(plan.stdout)["count"] == 0

    res = c1.run(cmd + ["verify", "-d", str(desc), "--format", "json"], check=False,
                 timeout=180)
    report = json.loads(res.stdout)
    base = next(s for s in report["scenarios"] if s["kind"] == "baseline")
    as_now = {rid: sorted((p["node"], p["role"]) for p in placed)
              for rid, placed in base["placement"].items()}
    assert as_now == {k: before[k] for k in as_now}, "verify starts from the live state"
    predicted = next(s for s in report["scenarios"] if s["name"] == f"{c1.name} fails")
    expected = {rid: sorted((p["node"], p["role"]) for p in placed)
                for rid, placed in predicted["placement"].items()}
    assert expected["vip"] == [(c2.name, "Started")]
    assert expected["db"] == [(c2.name, "Promoted")]

    lab.crash(c1.name)
    after = _wait_for(c2, lambda placed: {k: placed.get(k, []) for k in expected} == expected,
                      60)
    assert {k: after[k] for k in expected} == expected
    # the VIP really is on controller02's interface now
    addrs = c2.run(["ip", "-o", "addr", "show"]).stdout
    assert f" {lab.spare_address()}/24 " in addrs
