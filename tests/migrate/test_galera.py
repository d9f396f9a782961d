"""apply through one node of a real 3-node Galera cluster, read the result on another;
a node that is not Synced is refused."""

from __future__ import annotations

import contextlib

import pytest
from pacestack.migrate import apply as applymod
from pacestack.migrate import cloud as cloudmod
from pacestack.migrate import mapping as mappingmod
from pacestack.migrate import tables

from pacestack.errors import RuntimeFailure
from tests.fixtures.openstack import Cloud as OSCloud
from tests.migrate import seed_cloud


@pytest.mark.slow
def test_apply_on_one_node_read_on_another(galera_factory, openstack_venv, openstack_dump,
                                           tmp_path):
    cluster = galera_factory(3)
    cluster.start_all()
    node1, node2, node3 = cluster.nodes
    os_cloud = OSCloud(node1, openstack_venv, openstack_dump, base_dir=tmp_path / "os").load()
    conn = node1.connect()
    try:
        seed_cloud.build_seed(conn, os_cloud.db_names)
    finally:
        conn.close()
    ml2 = tmp_path / "ml2.ini"
    ml2.write_text(seed_cloud.ML2_CONF)
    mp = mappingmod.parse_text(seed_cloud.SEED_MAPPING, "seed-mapping")

    def open_on(node) -> cloudmod.Cloud:
        urls = {s: node.url(os_cloud.db_names[s]) for s in tables.SERVICE_DATABASES}
        return cloudmod.open_cloud(urls, ml2_config=str(ml2), journal_db="pacestack_galera")

    # a desynced node (Donor/Desynced) is not Primary+Synced: refused, nothing written
    node3.execute("SET GLOBAL wsrep_desync = ON")
    try:
        with contextlib.closing(open_on(node3)) as c, \
                pytest.raises(RuntimeFailure, match="not Primary/Synced"):
            applymod.apply(c, mp)
    finally:
        node3.execute("SET GLOBAL wsrep_desync = OFF")
    with contextlib.closing(open_on(node1)) as c:
        r = applymod.apply(c, mp, batch_size=20)
    assert r.changes == seed_cloud.SEED_CHANGES and r.batches > 1
    cluster.wait_synced()
    seg = node2.execute(
        "SELECT n.name, g.network_type, g.physical_network, g.segmentation_id FROM "
        "networksegments g JOIN networks n ON n.id = g.network_id",
        database=os_cloud.db_names["neutron"])
    by_name = {row[0]: tuple(row[1:]) for row in seg}
    assert [by_name[n] for n, *_ in seed_cloud.SEED_SEGMENTS] == seed_cloud.SEED_EXPECTED
    # an admin URL naming node1 while the services name node2: one Galera cluster, accepted
    urls = {s: node2.url(os_cloud.db_names[s]) for s in tables.SERVICE_DATABASES}
    with contextlib.closing(cloudmod.open_cloud(urls, ml2_config=str(ml2),
                                                admin_url=node1.url())) as c:
        assert c.server.port == node1.port
    # the journal replicated too: a rollback through node2 restores what node1 changed
    from pacestack.migrate import rollback as rbmod
    with contextlib.closing(open_on(node2)) as c:
        rb = rbmod.rollback(c, r.run_id)
    assert rb.checksums_ok
    cluster.wait_synced()
    seg = node3.execute("SELECT network_type FROM networksegments WHERE segmentation_id = 1137",
                        database=os_cloud.db_names["neutron"])
    assert seg == [("vlan",)]
