"""Two data nodes: with garbd the survivor stays Primary by itself; without it,
two_node_mode regains Primary only once Pacemaker reports the peer down (fenced),
and refuses, saying why, when the peer's state says otherwise or the mode is off."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.fixtures.galera import AgentDriver

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("agent_executables")]


def _formed(galera_factory, *, garbd: bool, two_node_mode: bool):
    cluster = galera_factory(2, garbd=garbd)
    driver = AgentDriver(cluster, cluster.base_dir / "cib.xml", two_node_mode=two_node_mode)
    assert driver.recover() == ["node1", "node2"]
    if garbd:
        cluster.start_garbd()
    rows = cluster.write_rows("node1", "two", 1, 3)
    return cluster, driver, rows


def _peer_down_in_cib(driver: AgentDriver, node: str) -> None:
    """What the CIB status says after Pacemaker fenced (or cleanly lost) a node."""
    idx = [n.name for n in driver.cluster.nodes].index(node) + 1
    env = {**os.environ, "CIB_file": str(driver.cib)}
    subprocess.run(["cibadmin", "--modify", "-o", "status", "-X",
                    f'<node_state id="{idx}" uname="{node}" in_ccm="false" crmd="offline" '
                    'join="down" expected="down"/>'], env=env, check=True)
    driver.node_rebooted(node)


def _rejoins_by_ist(cluster, driver, rows) -> None:
    driver.node_rebooted("node2")
    driver.start(["node2"])
    report = driver.attr("galera-position", "node2")  # gone once it is Promoted
    assert driver.recover(["node2"], start=False) == ["node2"]
    if not report.split(":")[1].startswith("-"):
        # its history is known (recovered seqno): the gap must come by IST
        assert cluster["node2"].ist_or_sst() == "IST", report
    assert cluster.rows("node2", "two") == rows


def test_garbd_keeps_the_survivor_primary(galera_factory):
    cluster, driver, rows = _formed(galera_factory, garbd=True, two_node_mode=False)
    assert cluster["node1"].status()["wsrep_cluster_size"] == "3"
    cluster.kill9(["node2"])
    rc, reason = driver.monitor("node1")
    assert rc == 8, reason
    rows += cluster.write_rows("node1", "two", 10, 3)
    _rejoins_by_ist(cluster, driver, rows)


def test_two_node_mode_regains_primary_only_when_peer_is_down(galera_factory):
    cluster, driver, rows = _formed(galera_factory, garbd=False, two_node_mode=True)
    cluster.kill9(["node2"])
    assert cluster["node1"].status()["wsrep_cluster_status"] != "Primary" or \
        _wait_non_primary(cluster)
    # Pacemaker still lists node2 as a member (not fenced yet): refuse
    rc, reason = driver.monitor("node1")
    assert rc == 9
    assert "refusing pc.bootstrap while node2 is up" in reason
    _peer_down_in_cib(driver, "node2")
    rc, reason = driver.monitor("node1")
    assert rc == 8, reason
    assert cluster["node1"].status()["wsrep_cluster_status"] == "Primary"
    rows += cluster.write_rows("node1", "two", 10, 3)
    _rejoins_by_ist(cluster, driver, rows)


def test_without_two_node_mode_the_survivor_refuses(galera_factory):
    cluster, driver, rows = _formed(galera_factory, garbd=False, two_node_mode=False)
    cluster.kill9(["node2"])
    _wait_non_primary(cluster)
    _peer_down_in_cib(driver, "node2")
    rc, reason = driver.monitor("node1")
    assert rc == 9
    assert "two_node_mode is off" in reason
    assert cluster["node1"].status()["wsrep_cluster_status"] != "Primary"


def _wait_non_primary(cluster) -> bool:
    from pacestack import proc

    ok = proc.wait_for(
        lambda: cluster["node1"].status()["wsrep_cluster_status"] != "Primary", 20)
    assert ok
    return ok
