"""Writer lanes: batches of independent units commit side by side on their own
connections to the real server; every other batch runs alone and in plan order;
a batch refused by a lock conflict runs again alone; and when lanes cannot open,
apply writes on its one connection."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import types

import pytest
from pacestack.migrate import apply as applymod
from pacestack.migrate import model
from pacestack.migrate import plan as planmod
from pacestack.migrate import rollback as rbmod
from pacestack.migrate.journal import Journal

from tests.migrate import seed_cloud
from tests.migrate.test_faults import state


def _connections(seeded) -> int:
    return int(seeded.os.server.execute("SHOW GLOBAL STATUS LIKE 'Connections'")[0][1])


def test_two_connections_give_the_same_cutover_as_one(seeded):
    before = seeded.checksums()
    results = {}
    for n in (1, 2):
        with contextlib.closing(seeded.cloud()) as c:
            opened = _connections(seeded)
            r = applymod.apply(c, seeded.mapping(), batch_size=7, connections=n)
            # counting opens a connection too, and so do the run lock, the plan's
            # residue search (it reads beside the steps) and the before-checksums (read
            # beside the residue accounting); lanes open one each
            extra = _connections(seeded) - opened - 4
            results[n] = (state(seeded), extra, r)
            # read on their own connection, the checksums still cover every table written
            assert set(Journal(c).checksums(r.run_id)) == set(r.plan.tables())
            assert rbmod.rollback(c, r.run_id).checksums_ok
        assert seeded.checksums() == before
    (one, extra1, r1), (two, extra2, r2) = results[1], results[2]
    assert r1.changes == r2.changes == seed_cloud.SEED_CHANGES
    assert r1.batches == r2.batches > 10
    assert two == one
    assert (extra1, extra2) == (0, 2)
    assert (r1.connections, r2.connections) == (1, 2)


def test_barrier_batches_run_alone_and_in_plan_order(seeded, monkeypatch):
    """Every batch's start and end, as the server sees them run: a batch holding any
    unit that is not independent (a network's segments and allocations, a cinder
    service) overlaps no other batch and starts after every batch before it ended;
    independent batches do overlap."""
    spans: list[tuple[int, bool, float, float]] = []
    lock = threading.Lock()
    real_run = applymod.run_batch
    by_number: dict[int, bool] = {}
    real_prepare = applymod.prepare_batch

    def prepare(cloud, lit, run_id, batch_no, changes, *args):
        by_number[batch_no] = all(model.independent(c.unit) for c in changes)
        return real_prepare(cloud, lit, run_id, batch_no, changes, *args)

    def run(cloud, journal, run_id, batch):
        t0 = time.monotonic()
        real_run(cloud, journal, run_id, batch)
        time.sleep(0.05)  # widen each span so that overlaps, where allowed, happen
        with lock:
            spans.append((batch.number, by_number[batch.number], t0, time.monotonic()))

    monkeypatch.setattr(applymod, "prepare_batch", prepare)
    monkeypatch.setattr(applymod, "run_batch", run)
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping(), batch_size=7, connections=2)
    assert r.changes == seed_cloud.SEED_CHANGES
    spans.sort()
    barriers = [s for s in spans if not s[1]]
    assert barriers and len(barriers) < len(spans)
    for number, _, start, end in barriers:
        for other, _, o_start, o_end in spans:
            if other < number:
                assert o_end <= start, f"batch {other} still running when barrier {number} began"
            elif other > number:
                assert o_start >= end, f"batch {other} began before barrier {number} ended"
    independent = [s for s in spans if s[1]]
    assert any(a[3] > b[2] and b[3] > a[2] for a in independent for b in independent
               if a[0] < b[0]), "no two independent batches ever ran at once"


@pytest.mark.parametrize("instance,retried", [
    # vm-b's batch (with a volume attachment) is independent: a lane's, retried alone
    ("vm-b", "running it again alone"),
    # vm-a's batch also maps a new compute host, a barrier: the run's own connection
    # writes it and retries it
    ("vm-a", "running it again"),
])
def test_a_batch_refused_by_a_lock_conflict_runs_again(seeded, instance, retried):
    """Another session holds a row: the batch writing it times out (the server rolls
    it back), and it runs again once the row is free; the cutover is complete."""
    server = seeded.os.server
    holder = server.connect()
    server.execute("SET GLOBAL innodb_lock_wait_timeout = 2")
    said: list[str] = []

    def progress(line: str) -> None:
        said.append(line)
        if "lock conflict" in line:
            holder.rollback()  # the row is free: the retry goes through

    try:
        holder.begin()
        with holder.cursor() as cur:
            cur.execute(f"SELECT id FROM `{seeded.os.db_names['nova']}`.instances "  # noqa: S608
                        "WHERE uuid = %s FOR UPDATE", [seeded.seed.instances[instance]])
        with contextlib.closing(seeded.cloud()) as c:
            r = applymod.apply(c, seeded.mapping(), batch_size=7, connections=2,
                               progress=progress)
    finally:
        server.execute("SET GLOBAL innodb_lock_wait_timeout = 50")
        holder.close()
    conflicts = [s for s in said if "lock conflict" in s]
    assert len(conflicts) == 1, said
    assert "Lock wait timeout" in conflicts[0] and conflicts[0].endswith(retried), conflicts
    assert r.changes == seed_cloud.SEED_CHANGES
    with contextlib.closing(seeded.cloud()) as c:
        assert not planmod.build(c, seeded.mapping()).changes  # nothing left to do
        c.conn.commit()
        assert rbmod.rollback(c, r.run_id).checksums_ok


def test_lanes_that_cannot_open_leave_apply_on_one_connection(seeded, monkeypatch):
    from pacestack.migrate import lanes as lanesmod

    password = "not-the-password-" + "x" * 8
    said: list[str] = []
    real_connect = lanesmod.db.connect

    def refused(url, **kw):  # the server refuses the lanes' logins (the run lock's works)
        return real_connect(dataclasses.replace(url, password=password), **kw)
    monkeypatch.setattr(lanesmod, "db", types.SimpleNamespace(connect=refused))
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping(), batch_size=7, connections=2,
                           progress=said.append)
    assert r.changes == seed_cloud.SEED_CHANGES
    fallback = [s for s in said if "writing on one" in s]
    assert len(fallback) == 1 and "access denied" in fallback[0], said
    assert r.connections == 1
    assert not any(password in s for s in said)


def test_checksums_read_where_the_run_writes(seeded, monkeypatch):
    """The before-checksums are read beside the plan's residue accounting on a
    connection of their own, unless it reached another server (a lagging Galera node
    behind one address): then on the run's own connection. Either way every table
    the run writes has one, and rollback finds them all equal."""
    real_identity = applymod.server_identity
    calls: list[int] = []

    def elsewhere(conn):  # the checksum connection asks first: it answers from elsewhere
        calls.append(1)
        return ("another node",) if len(calls) == 1 else real_identity(conn)
    monkeypatch.setattr(applymod, "server_identity", elsewhere)
    before = seeded.checksums()
    with contextlib.closing(seeded.cloud()) as c:
        opened = _connections(seeded)
        r = applymod.apply(c, seeded.mapping(), batch_size=7, connections=1)
        # counting, the run lock, the residue search and the refused checksum connection
        assert _connections(seeded) - opened == 4
        assert calls == [1, 1]
        assert set(Journal(c).checksums(r.run_id)) == set(r.plan.tables())
        assert rbmod.rollback(c, r.run_id).checksums_ok
    assert seeded.checksums() == before
