"""The Galera harness itself: a real 3-node cluster on loopback forms and syncs."""

import time

import pytest


@pytest.mark.slow
def test_three_nodes_form_sync_and_replicate(galera_factory):
    cluster = galera_factory(3)
    started = time.monotonic()
    cluster.start_all()
    formed = time.monotonic() - started
    names = set()
    for node in cluster.nodes:
        st = node.status()
        assert st["wsrep_cluster_status"] == "Primary"
        assert st["wsrep_local_state_comment"] == "Synced"
        assert st["wsrep_cluster_size"] == "3"
        assert st["wsrep_cluster_state_uuid"] == cluster.nodes[0].status()[
            "wsrep_cluster_state_uuid"]
        names.add(node.execute("SELECT @@wsrep_cluster_name")[0][0])
    assert names == {cluster.cluster_name}
    assert len({(n.port, n.gmcast_port, n.ist_port, n.sst_port) for n in cluster.nodes}) == 3
    # a write on one node is on every node; joiners came in by SST from node1
    cluster.write_rows("node2", "harness", 1, 3)
    for node in cluster.nodes:
        assert cluster.rows(node.name, "harness") == [1, 2, 3]
    assert [n.ist_or_sst() for n in cluster.nodes[1:]] == ["SST", "SST"]
    # a clean stop records the seqno; a restart catches up by IST
    committed = cluster["node3"].last_committed()
    cluster.stop("node3")
    stopped_at = cluster["node3"].grastate()
    assert (stopped_at["uuid"], int(stopped_at["seqno"])) == (committed.uuid, committed.seqno)
    cluster.write_rows("node1", "harness", 4, 2)
    rejoin = cluster.start("node3")
    assert cluster["node3"].ist_or_sst() == "IST"
    assert cluster.rows("node3", "harness") == [1, 2, 3, 4, 5]
    # kill -9 of all: grastate says -1, recovery finds the same position everywhere
    before = cluster["node1"].last_committed()
    cluster.kill9()
    assert {n.grastate()["seqno"] for n in cluster.nodes} == {"-1"}
    assert set(cluster.positions().values()) == {before}
    print(f"\ngalera harness: bootstrap {cluster.timings['bootstrap']:.2f}s, "
          f"SST join {cluster.timings['join']:.2f}s, 3 nodes formed {formed:.2f}s, "
          f"IST rejoin {rejoin:.2f}s")
