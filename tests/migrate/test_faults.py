"""Rollback restores checksums; SIGKILL of a real `pacestack migrate apply` process
between batches and inside a batch, then a re-run finishes with the same result."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time

from pacestack.migrate import apply as applymod
from pacestack.migrate import rollback as rbmod
from pacestack.migrate import tables

from pacestack import proc
from tests.migrate import seed_cloud

# every column migrate writes, no timestamps: what "the same result" means
STATE_QUERIES = {
    "neutron": ["SELECT id, network_type, physical_network, segmentation_id FROM "
                "networksegments ORDER BY id",
                "SELECT physical_network, vlan_id, allocated FROM ml2_vlan_allocations "
                "WHERE allocated = 1 ORDER BY 1, 2",
                "SELECT vxlan_vni FROM ml2_vxlan_allocations WHERE allocated = 1 ORDER BY 1",
                "SELECT physical_network FROM ml2_flat_allocations ORDER BY 1",
                "SELECT id, mtu FROM networks ORDER BY id",
                "SELECT port_id, host, vif_type, vif_details FROM ml2_port_bindings ORDER BY 1",
                "SELECT port_id, host, level, driver FROM ml2_port_binding_levels ORDER BY 1",
                "SELECT segment_id, host FROM segmenthostmappings ORDER BY 1, 2",
                "SELECT id FROM agents ORDER BY id"],
    "cinder": ["SELECT id, host, service_uuid FROM volumes ORDER BY id",
               "SELECT id, host, deleted FROM services ORDER BY id",
               "SELECT id, host FROM backups ORDER BY id",
               "SELECT id, attached_host FROM volume_attachment ORDER BY id"],
    "nova": ["SELECT uuid, host, node, launched_on, compute_id FROM instances ORDER BY uuid",
             "SELECT instance_uuid, network_info FROM instance_info_caches ORDER BY 1"],
    "nova_api": ["SELECT host, cell_id FROM host_mappings ORDER BY host"],
    "placement": ["SELECT consumer_id, resource_class_id, resource_provider_id FROM allocations "
                  "ORDER BY 1, 2"],
    "keystone": ["SELECT id, url FROM endpoint ORDER BY id"],
}


def state(s) -> dict:
    return {f"{svc}: {q}": s.sql(svc, q) for svc, qs in STATE_QUERIES.items() for q in qs}


def test_rollback_restores_checksums(seeded):
    before = seeded.checksums()
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping(), batch_size=7)
        assert r.changes == seed_cloud.SEED_CHANGES and r.batches > 10
        assert seeded.checksums() != before
        rb = rbmod.rollback(c, r.run_id)
    assert rb.checksums_ok and rb.rows == seed_cloud.SEED_CHANGES
    assert seeded.checksums() == before
    assert segments(seeded) == [(k, p, i) for _n, k, p, i in seed_cloud.SEED_SEGMENTS]


def segments(s):
    rows = {r[0]: r[1:] for r in s.sql(
        "neutron", "SELECT n.name, g.network_type, g.physical_network, g.segmentation_id "
        "FROM networksegments g JOIN networks n ON n.id = g.network_id")}
    return [tuple(rows[n]) for n, *_ in seed_cloud.SEED_SEGMENTS]


def _wait_line(p, needle: str, timeout: float = 60) -> str:
    """Read the child's stderr until a line containing needle (progress is on stderr)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"never saw {needle!r}: {seen[-5:]}")


def _holder(p) -> str:
    """How the journal lock names a run of ours (--break-lock)."""
    return f"{socket.gethostname()}:{p.pid}"


def _kill(p) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert not proc.is_alive(p.pid)


def test_sigkill_between_and_inside_batches_then_rerun(seeded, openstack_cloud, tmp_path):
    before = seeded.checksums()
    m = str(seeded.mapping_path)
    # 1. killed between batches (it pauses after each commit so the window is certain)
    p = seeded.cli("apply", "--mapping", m, "--batch-size", "10", "--pause-after-batch", "2",
                   popen=True)
    _wait_line(p, "batch 2/")
    _kill(p)
    runs = seeded.os.server.execute("SELECT run_id, status, batches FROM runs",
                                    database=seeded.journal_db)
    assert len(runs) == 1 and runs[0][1] == "running" and runs[0][2] >= 2
    run_id = runs[0][0]
    # 2. killed inside a batch: the test holds a row lock the batch needs, the batch
    #    blocks inside its transaction after writing other rows, and is killed there
    holder = openstack_cloud.connect("nova", autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT id FROM instances WHERE uuid = %s FOR UPDATE",
                        [seeded.seed.instances["vm-b"]])
        # a SIGKILLed run leaves the journal lock behind: taken over by name
        p = seeded.cli("apply", "--mapping", m, "--batch-size", "1000",
                       "--break-lock", _holder(p), popen=True)
        deadline = time.monotonic() + 60
        waiting = False
        while time.monotonic() < deadline and not waiting:
            rows = seeded.os.server.execute(
                "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = "
                "'LOCK WAIT'")
            waiting = rows[0][0] > 0
            time.sleep(0.1)
        assert waiting, "apply never reached the locked row"
        # the blocked transaction has already changed rows of earlier tables
        locked = seeded.os.server.execute(
            "SELECT MAX(trx_rows_modified) FROM information_schema.innodb_trx")[0][0]
        assert locked and locked > 0
        _kill(p)
    finally:
        holder.rollback()
        holder.close()
    partial = state(seeded)
    # 3. a rollback now would restore everything; instead re-run: it resumes the same run
    r = seeded.cli("apply", "--mapping", m, "--format", "json", "--break-lock", _holder(p))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["resumed"] and out["run_id"] == run_id and out["changes"] < seed_cloud.SEED_CHANGES
    assert state(seeded) != partial
    assert segments(seeded) == seed_cloud.SEED_EXPECTED
    got = state(seeded)
    # the same result as an uninterrupted run on an identical cloud
    from tests.fixtures.openstack import Cloud as OSCloud
    twin_os = OSCloud(openstack_cloud.server, openstack_cloud.venv,
                      openstack_cloud.schemas / "dump.sql",
                      base_dir=tmp_path / "twin").load()
    try:
        conn = twin_os.server.connect()
        try:
            seed_cloud.build_seed(conn, twin_os.db_names)
        finally:
            conn.close()
        from tests.migrate.conftest import Seeded
        twin = Seeded(twin_os, None, seeded.conf_path, seeded.mapping_path, seeded.ml2_path,
                      f"{twin_os.prefix}_pacestack")
        with contextlib.closing(twin.cloud()) as c:
            assert applymod.apply(c, twin.mapping()).changes == seed_cloud.SEED_CHANGES
        assert state(twin) == got
    finally:
        twin_os.server.execute(f"DROP DATABASE IF EXISTS `{twin_os.prefix}_pacestack`")
        twin_os.drop()
    # 4. one rollback undoes the interrupted and the resumed part together
    r = seeded.cli("rollback", run_id, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["checksums_ok"]
    assert seeded.checksums() == before


def test_rollback_after_partial_apply(seeded):
    before = seeded.checksums()
    p = seeded.cli("apply", "--mapping", str(seeded.mapping_path), "--batch-size", "10",
                   "--pause-after-batch", "2", popen=True)
    _wait_line(p, "batch 3/")
    _kill(p)
    run_id = seeded.os.server.execute("SELECT run_id FROM runs", database=seeded.journal_db)[0][0]
    assert seeded.checksums() != before
    r = seeded.cli("rollback", run_id)
    assert r.returncode == 1 and "stale" in r.stderr and f"--break-lock {_holder(p)}" in r.stderr
    assert seeded.checksums() != before
    r = seeded.cli("rollback", run_id, "--break-lock", _holder(p))
    assert r.returncode == 0, r.stderr
    assert "checksums equal to before the apply" in r.stdout
    assert seeded.checksums() == before


def test_two_runs_are_kept_apart(seeded):
    p = seeded.cli("apply", "--mapping", str(seeded.mapping_path), "--batch-size", "10",
                   "--pause-after-batch", "2", popen=True)
    try:
        _wait_line(p, "batch 1/")
        r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
        assert r.returncode == 1
        assert "holds the journal lock" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    finally:
        _kill(p)


def _planned_run(c, seeded):
    """The seed's plan, its read snapshot ended, and a journal run to apply it under."""
    from pacestack.migrate import plan as planmod
    from pacestack.migrate.journal import Journal

    p = planmod.build(c, seeded.mapping())
    c.conn.commit()
    j = Journal(c)
    j.ensure_schema()
    return p, j, j.start_run("test", ["all"])


def test_rows_changed_since_plan_are_not_overwritten(seeded):
    """Another writer between plan and apply: the batch is refused whole, nothing lost."""
    import pytest
    from pacestack.migrate.batch import Stale

    with contextlib.closing(seeded.cloud()) as c:
        p, j, run = _planned_run(c, seeded)
        seeded.sql("cinder", "UPDATE volumes SET host = 'someone-else@rbd#rbd' WHERE id = %s",
                   [seeded.seed.volumes["v2"]])
        before = seeded.checksums()
        with pytest.raises(Stale, match="cinder.volumes: 1 of 2 rows changed"):
            applymod.apply_batch(c, j, run, 1, p.changes)
        assert seeded.checksums() == before
        assert c.rows("SELECT COUNT(*) AS n FROM {journal.images}")[0]["n"] == 0


def test_guard_refusal_names_the_row_and_writes_nothing(seeded):
    """A row changed between plan and apply in the middle of a batch (its tables'
    earlier groups already written in the transaction): the batch is refused naming
    that row and what changed on it, nothing of it stays, and apply then re-plans
    and finishes."""
    import pytest
    from pacestack.migrate.batch import Stale

    vm_b = seeded.seed.ports["vm-b"]
    with contextlib.closing(seeded.cloud()) as c:
        p, j, run = _planned_run(c, seeded)
        # groups the batch writes before the bindings' (table order), refused with it
        bindings = tables.order("neutron", "ml2_port_bindings")
        assert [ch for ch in p.changes if tables.order(ch.db, ch.table) < bindings]
        seeded.sql("neutron", "UPDATE ml2_port_bindings SET vif_details = '{}' "
                   "WHERE port_id = %s", [vm_b])
        before = seeded.checksums()
        with pytest.raises(Stale) as err:
            applymod.apply_batch(c, j, run, 1, p.changes)
        msg = str(err.value)
        assert msg.startswith("neutron.ml2_port_bindings: 1 of ")
        assert f"port_id='{vm_b}', host='compute01' (changed vif_details)" in msg
        assert "run apply again" in msg and len(msg.splitlines()) == 1
        assert seeded.checksums() == before
        assert c.rows("SELECT COUNT(*) AS n FROM {journal.images}")[0]["n"] == 0
        c.conn.commit()
        j.set_status(run, "rolled_back", finished=True)  # it wrote nothing
        r = applymod.apply(c, seeded.mapping())
        assert r.changes == seed_cloud.SEED_CHANGES
        assert seeded.sql("neutron", "SELECT vif_type FROM ml2_port_bindings WHERE "
                          "port_id = %s", [vm_b]) == (("ovs",),)
        rb = rbmod.rollback(c, r.run_id)
    assert rb.checksums_ok
    assert seeded.sql("neutron", "SELECT vif_type, vif_details FROM ml2_port_bindings WHERE "
                      "port_id = %s", [vm_b]) == (("bridge", "{}"),)


def _edit_info_cache(seeded, instance: str, old: str, new: str) -> int:
    """Another writer edits ``instance``'s info cache: the id of its row."""
    seeded.sql("nova", "UPDATE instance_info_caches SET network_info = "
               "REPLACE(network_info, %s, %s) WHERE instance_uuid = %s", [old, new, instance])
    return seeded.sql("nova", "SELECT id FROM instance_info_caches WHERE "
                      "instance_uuid = %s", [instance])[0][0]


def test_long_value_guard_without_convert(seeded):
    """A long old value (an info cache, utf8mb3) is checked by MD5 of its bytes with
    no CONVERT: a change of one character is still refused, naming the row."""
    import pytest
    from pacestack.migrate.batch import Stale

    vm_a = seeded.seed.instances["vm-a"]
    with contextlib.closing(seeded.cloud()) as c:
        p, j, run = _planned_run(c, seeded)
        caches = [ch for ch in p.changes if ch.table == "instance_info_caches"]
        assert caches and all(len(ch.before["network_info"]) > 64 for ch in caches)
        assert "network_info" in applymod.utf8_columns(c, p.changes)[
            ("nova", "instance_info_caches")]
        cache_id = _edit_info_cache(seeded, vm_a, "fa:16:3e:f9:82:bf", "fa:16:3e:f9:82:bE")
        before = seeded.checksums()
        assert before != {}
        with pytest.raises(Stale, match=rf"nova.instance_info_caches: 1 of \d+ rows changed "
                                        rf"since they were planned \(id={cache_id} "
                                        r"\(changed network_info\)\)"):
            applymod.apply_batch(c, j, run, 1, p.changes)
        assert seeded.checksums() == before
        assert c.rows("SELECT COUNT(*) AS n FROM {journal.images}")[0]["n"] == 0


def test_rollback_finds_a_long_value_changed_by_one_character(seeded):
    """rollback compares a long value the run wrote (an info cache, utf8mb3) by MD5 of
    its bytes, without CONVERT, as apply journaled it: an untouched cache matches its
    after-image, one edited by a single non-ASCII character after the run does not,
    and rollback refuses, naming that row only."""
    vm_a = seeded.seed.instances["vm-a"]
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping())
        assert r.changes == seed_cloud.SEED_CHANGES
        cache_id = _edit_info_cache(seeded, vm_a, '"address"', '"addr\u00e9ss"')
        after = seeded.checksums()
        rb = rbmod.rollback(c, r.run_id)
    assert rb.refused and rb.rows == 0
    assert [(x.table, x.key, x.state, [d["column"] for d in x.columns])
            for x in rb.conflicts] == [("nova.instance_info_caches", {"id": cache_id},
                                        "changed", ["network_info"])]
    assert seeded.checksums() == after


def test_batches_are_composed_without_the_connection(seeded):
    """apply composes the next batch on a second thread while this one runs: that is
    only safe because composing never touches the connection. Composed with a
    connection that refuses every use, then run for real, the seed's cutover is
    the same as apply's."""
    from pacestack.migrate import batch as sqlbatch
    from pacestack.migrate import plan as planmod

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"composing used the connection ({name})")

    with contextlib.closing(seeded.cloud()) as c:
        p, j, run = _planned_run(c, seeded)
        lit = sqlbatch.Literals(c.conn)
        columns = applymod.delete_columns(c, p.changes)
        utf8 = applymod.utf8_columns(c, p.changes)
        movable = applymod.movable_columns(c, p.changes)
        real_conn, c.conn = c.conn, Untouchable()
        try:
            composed = [applymod.prepare_batch(c, lit, run, i + 1, b, columns, utf8, movable)
                        for i, b in enumerate(applymod._batches(p.changes, 7))]
        finally:
            c.conn = real_conn
        assert len(composed) > 10 and all(b.stmts for b in composed)
        for b in composed:
            applymod.run_batch(c, j, run, b)
        assert not planmod.build(c, seeded.mapping()).changes  # nothing left to do
        c.conn.commit()
        rb = rbmod.rollback(c, run)
    assert rb.checksums_ok and rb.rows == seed_cloud.SEED_CHANGES


def test_key_changing_updates_move_rows(seeded):
    """An update that changes a primary key (a port binding's host) is made as an
    INSERT of the moved rows and a DELETE of the old ones, only on a table no foreign
    key refers to, and only when no row of the group moves onto another's old key;
    apply then rollback gives back every row exactly."""
    from pacestack.migrate import batch as sqlbatch

    before = seeded.checksums()
    with contextlib.closing(seeded.cloud()) as c:
        p, j, run = _planned_run(c, seeded)
        movable = applymod.movable_columns(c, p.changes)
        assert {"port_id", "host", "vif_type", "vif_details", "status"} <= set(
            movable[("neutron", "ml2_port_bindings")])
        assert movable[("neutron", "ml2_port_binding_levels")]
        # ports: the bindings' foreign keys refer to it, a DELETE would cascade; a DHCP
        # agent's network binding: a moved row would meet its old self in a unique key
        assert sqlbatch.movable_columns(c, "neutron", "ports") is None
        assert sqlbatch.movable_columns(c, "neutron", "networkdhcpagentbindings") is None
        prepared = applymod.prepare_batch(
            c, sqlbatch.Literals(c.conn), run, 1, p.changes, applymod.delete_columns(c, p.changes),
            applymod.utf8_columns(c, p.changes), movable)
        bindings = [s.sql.split(" ")[0] for s in prepared.stmts
                    if "`ml2_port_bindings` t JOIN" in s.sql and "JSON_" not in s.sql]
        # the update's INSERT and DELETE (after the seed's deleted leftover binding)
        assert bindings[-2:] == ["INSERT", "DELETE"] and "UPDATE" not in bindings, bindings
        applymod.run_batch(c, j, run, prepared)
        c.conn.commit()
        assert seeded.sql("neutron", "SELECT COUNT(*) FROM ml2_port_bindings WHERE "
                          "vif_type = 'bridge'") == ((0,),)
        rb = rbmod.rollback(c, run)
    assert rb.checksums_ok and rb.rows == seed_cloud.SEED_CHANGES
    assert seeded.checksums() == before


def test_a_chain_of_key_changes_is_an_update():
    """A group where one row moves onto the key another row leaves (a rename chain),
    or onto its own key to the server's collation (case), keeps the single UPDATE:
    inserting first would collide with that row."""
    from pacestack.migrate import batch as sqlbatch

    pk = ("port_id", "host")
    keys = [{"port_id": "p1", "host": "a"}, {"port_id": "p1", "host": "b"}]
    assert sqlbatch._moves(pk, ["host"], keys[:1], [{"host": "b"}])
    assert not sqlbatch._moves(pk, ["host"], keys, [{"host": "b"}, {"host": "c"}])
    assert not sqlbatch._moves(pk, ["vif_type"], keys, [{"vif_type": "ovs"}] * 2)
    # the same key to a case-insensitive collation, or text that cannot be told
    assert not sqlbatch._moves(pk, ["host"], keys[:1], [{"host": "A "}])
    assert not sqlbatch._moves(pk, ["host"], keys[:1], [{"host": "h\u00f4te"}])
