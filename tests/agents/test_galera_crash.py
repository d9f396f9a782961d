"""The crash matrix: a real 3-node Galera on loopback, recovered by the installed
``ocf:pacestack:galera`` agent called exactly as Pacemaker calls it (environment,
clone/notify meta, node attributes in a CIB file via CIB_file).

Every scenario asserts: the node that bootstrapped is the most advanced one,
every row committed before the crash is on every node afterwards, joiners came
back by IST where their history allows, and where bootstrapping could lose data
the agent waits and says whom for. One cluster is reused across scenarios (each
leaves it Promoted and Synced everywhere; a broken one is rebuilt).
"""

from __future__ import annotations

import pytest

from tests.fixtures.galera import AgentDriver, GaleraCluster

pytestmark = pytest.mark.slow

NAMES = ["node1", "node2", "node3"]


class Scenario:
    def __init__(self, driver: AgentDriver, table: str):
        self.driver = driver
        self.cluster = driver.cluster
        self.table = table
        self.committed: list[int] = []
        self.next_id = 1

    def write(self, node: str, count: int = 3) -> None:
        self.committed += self.cluster.write_rows(node, self.table, self.next_id, count)
        self.next_id += count

    def seqno(self, node: str) -> int:
        return self.cluster[node].last_committed().seqno

    def assert_all_rows_everywhere(self) -> None:
        for n in NAMES:
            got = self.cluster.rows(n, self.table)
            missing = sorted(set(self.committed) - set(got))
            assert not missing, f"{n} lost committed rows {missing[:10]}"

    def assert_healthy(self) -> None:
        for n in NAMES:
            rc, reason = self.driver.monitor(n)
            assert rc == 8, f"{n} monitor rc {rc}: {reason}"
            st = self.cluster[n].status()
            assert st["wsrep_cluster_size"] == "3"


def _form(base_dir=None) -> tuple[GaleraCluster, AgentDriver]:
    cluster = GaleraCluster(3)
    driver = AgentDriver(cluster, cluster.base_dir / "cib.xml")
    order = driver.recover()
    assert order[0] == "node1" and driver.bootstrapped("node1")
    return cluster, driver


@pytest.fixture(scope="module")
def galera_pool(ocf_provider):
    state: dict[str, object] = {}
    cluster, driver = _form()
    state["cluster"], state["driver"] = cluster, driver
    yield state
    state["cluster"].destroy()


@pytest.fixture
def scenario(galera_pool, request) -> Scenario:
    """A Promoted/Synced 3-node cluster driven by the agent, fresh table per test."""
    cluster: GaleraCluster = galera_pool["cluster"]
    healthy = all(n.running() and n.synced() for n in cluster.nodes)
    if not healthy:
        cluster.destroy()
        galera_pool["cluster"], galera_pool["driver"] = _form()
    driver: AgentDriver = galera_pool["driver"]
    driver.calls.clear()
    table = request.node.name.removeprefix("test_")[:40].lower()
    sc = Scenario(driver, table)
    sc.write("node1", 2)
    return sc


def recover_and_check(sc: Scenario, expected_bootstrap: str, ist: list[str]) -> list[str]:
    """Pacemaker brings everything back; the checks every scenario shares."""
    d = sc.driver
    d.all_crashed()
    order = d.recover()
    assert order[0] == expected_bootstrap, f"bootstrapped {order[0]}, expected " \
                                           f"{expected_bootstrap}: {d.calls}"
    assert d.bootstrapped(expected_bootstrap)
    assert sorted(order) == NAMES
    sc.assert_healthy()
    sc.assert_all_rows_everywhere()
    for n in ist:
        assert sc.cluster[n].ist_or_sst() in ("IST", ""), f"{n} took a full SST"
    return order


def test_orderly_stop_in_sequence(scenario):
    sc = scenario
    d = sc.driver
    # Pacemaker demotes and stops one after another; writes go on in between
    assert d.run("node3", "demote")[0] == 0
    assert d.run("node3", "stop")[0] == 0
    sc.write("node1")
    assert d.run("node2", "demote")[0] == 0
    assert d.run("node2", "stop")[0] == 0
    sc.write("node1")
    assert d.run("node1", "demote")[0] == 0
    assert d.run("node1", "stop")[0] == 0
    grastate = {n: sc.cluster[n].grastate() for n in NAMES}
    assert all(int(g["seqno"]) >= 0 for g in grastate.values()), grastate
    # Galera itself marks the last node to leave cleanly as safe to bootstrap
    assert [n for n in NAMES if grastate[n]["safe_to_bootstrap"] == "1"] == ["node1"]
    recover_and_check(sc, "node1", ist=["node2", "node3"])


def test_kill9_all_at_different_seqnos(scenario):
    sc = scenario
    sc.cluster.kill9(["node1"])
    sc.write("node3")
    top = sc.seqno("node3")
    # a lone survivor is non-Primary and commits nothing more: the two remaining
    # nodes end at the same seqno, ahead of node1; the tie goes to node2
    sc.cluster.kill9(["node3"])
    sc.cluster.kill9(["node2"])
    assert {n: sc.cluster[n].grastate()["seqno"] for n in NAMES} == dict.fromkeys(NAMES, "-1")
    positions = sc.cluster.positions()
    assert positions["node2"].seqno == positions["node3"].seqno >= top > positions["node1"].seqno
    recover_and_check(sc, "node2", ist=["node1", "node3"])
