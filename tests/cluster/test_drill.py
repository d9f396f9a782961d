"""`pacestack cluster drill` against a live lab (one per module, ~55 s to build):
real Pacemaker, Galera + garbd, Keystone and the Neutron API behind the VIP,
fence_dummy with the lab's power switch. A writer on the arbitrator commits rows
through the VIP during every scenario; each scenario must lose no acknowledged
write, never have the VIP on two nodes at once, recover everything and restore
the cluster. Time budget: ~4 min (lab 55 s, scenarios 20-50 s each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pacestack.cluster import drill
from pacestack.cluster.drill.lab_target import LabTarget
from pacestack.cluster.lab import stack

PACESTACK = str(Path(sys.executable).with_name("pacestack"))


@pytest.fixture(scope="module")
def drill_lab(ocf_provider, openstack_venv, openstack_dump):
    registry = stack.private_registry("drill")
    lab = stack.up(stack.UpOptions(venv=openstack_venv, schemas=openstack_dump.parent,
                                   registry=registry))
    try:
        yield lab
    finally:
        stack.remove_registry(registry)


def _check(result: drill.ScenarioResult) -> None:
    assert result.error is None, result.error
    assert result.writes_acked > 0, "the writer never committed through the VIP"
    assert result.lost_writes == [], f"acknowledged writes lost: {result.lost_writes[:20]}"
    assert result.max_instances == {"vip": 1, "cinder-volume": 1}, \
        f"a single-instance resource ran on two nodes at once: {result.max_instances}"
    for field in ("detection_s", "vip_s", "galera_s", "services_s", "rejoin_s"):
        value = getattr(result, field)
        assert value is not None and 0 <= value < 90, (field, value)
    # the VIP's own address and each service through it, each under its own name
    assert result.vip_answered and set(result.probes_s) >= {"keystone"}, result.probes_s
    assert all(v is not None and 0 <= v < 90 for v in result.probes_s.values())
    assert result.timeline["address"], "the VIP's own probe never ran"
    assert result.ok


@pytest.mark.parametrize("scenario", ["node-crash", "peer-crash", "standby", "kill-mariadbd",
                                      "partition"])
def test_scenario_loses_no_acknowledged_write(drill_lab, scenario, tmp_path):
    before = drill_lab.placement()
    report = drill.run(LabTarget(drill_lab), [scenario], work_dir=tmp_path)
    result = report.scenarios[0]
    _check(result)
    if scenario in ("node-crash", "peer-crash", "partition"):
        # nothing in the same second as the fault: the cluster had to notice it
        assert result.detection_s >= 0.5
    if scenario == "node-crash":
        # the victim held the VIP: its address went away and came back on the survivor
        assert any(not ok for t, ok in result.timeline["address"] if t >= 0)
        assert result.vip_s >= 0.5
    if scenario == "partition":
        assert any(f"fenced (powered off by the cluster): {result.victim}" in n
                   for n in result.notes), result.notes
    # restored: every node back, everything running everywhere
    after = drill_lab.placement()
    assert stack.all_running(drill_lab, after), after
    assert sorted(after) == sorted(before)


def test_cli_drill_json_and_plot(drill_lab, tmp_path):
    env = {**os.environ, "PACESTACK_LAB_REGISTRY": str(drill_lab.cluster.registry)}
    png = tmp_path / "timeline.png"
    res = subprocess.run([PACESTACK, "cluster", "drill", "--scenarios", "kill-service",
                          "--format", "json", "--plot", str(png)], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["ok"] is True
    (sc,) = report["scenarios"]
    assert sc["name"] == "kill-service" and sc["lost_writes"] == []
    assert sc["max_instances"] == {"vip": 1, "cinder-volume": 1}
    assert 0 < sc["detection_s"] < 30
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    bad = subprocess.run([PACESTACK, "cluster", "drill", "--scenarios", "meteor"],
                         capture_output=True, text=True, env=env, timeout=60, check=False)
    assert bad.returncode == 2
    assert "unknown drill scenario 'meteor' (have: node-crash, peer-crash, standby" in bad.stderr


def test_drill_without_a_lab_says_so(tmp_path):
    env = {**os.environ, "PACESTACK_LAB_REGISTRY": str(tmp_path / "empty-registry")}
    res = subprocess.run([PACESTACK, "cluster", "drill"], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == ("pacestack: error: no lab is running here "
                                  "(start one with `pacestack lab up`)")
