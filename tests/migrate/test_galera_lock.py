"""The journal's run lock on a real 3-node Galera cluster: runs started through
different nodes at the same moment (exactly one gets the lock), an apply through
one node while a rollback and a second apply come through the others (refused,
one line naming the holder), a SIGKILLed holder (taken over by the re-run on its host, the re-run
completes) and a holder paused past its heartbeat (broken, then it stops before
its next batch)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time

import pytest
from pacestack.migrate import cloud as cloudmod
from pacestack.migrate import tables
from pacestack.migrate.runlock import Held, RunLock

from tests.fixtures.openstack import Cloud as OSCloud
from tests.migrate import seed_cloud
from tests.migrate.conftest import PACESTACK, write_conf
from tests.migrate.test_faults import _wait_line

JOURNAL = "pacestack_lock"
STALE = 5  # [migrate] lock_stale_seconds in the test's configs


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("pacestack migrate:")]


@pytest.mark.slow
def test_run_lock_across_galera_nodes(galera_factory, openstack_venv, openstack_dump,
                                      tmp_path):
    import subprocess

    cluster = galera_factory(3)
    cluster.start_all()
    nodes = cluster.nodes
    os_cloud = OSCloud(nodes[0], openstack_venv, openstack_dump, base_dir=tmp_path / "os").load()
    conn = nodes[0].connect()
    try:
        seed_cloud.build_seed(conn, os_cloud.db_names)
    finally:
        conn.close()
    ml2 = tmp_path / "ml2.ini"
    ml2.write_text(seed_cloud.ML2_CONF)
    mapping_file = tmp_path / "mapping.conf"
    mapping_file.write_text(seed_cloud.SEED_MAPPING)
    cluster.wait_synced()

    def open_on(node) -> cloudmod.Cloud:
        urls = {s: node.url(os_cloud.db_names[s]) for s in tables.SERVICE_DATABASES}
        return cloudmod.open_cloud(urls, ml2_config=str(ml2), journal_db=JOURNAL)

    # 1. three runs through three nodes at the same moment, five times: one wins each time
    for rnd in range(5):
        start, taken = threading.Barrier(3), threading.Barrier(3)
        won, refused = [], []

        def attempt(i: int, node, start=start, taken=taken, won=won, refused=refused,
                    rnd=rnd) -> None:
            with contextlib.closing(open_on(node)) as c:
                lock = RunLock(c, f"race{rnd}-{i}")
                start.wait()
                try:
                    lock.__enter__()
                except Held as exc:
                    refused.append(exc.holder.command)
                    taken.wait()
                    return
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    refused.append(repr(exc))
                    taken.wait()
                    return
                won.append(f"race{rnd}-{i}")
                taken.wait()  # hold it until every attempt is decided
                lock.__exit__(None, None, None)
        threads = [threading.Thread(target=attempt, args=(i, n)) for i, n in enumerate(nodes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(won) == 1 and refused == [won[0]] * 2, (rnd, won, refused)

    confs = [write_conf(tmp_path / f"node{i + 1}.conf", os_cloud, ml2, JOURNAL,
                        connection=n.url(), lock_stale_seconds=STALE)
             for i, n in enumerate(nodes)]

    def cli(node: int, *args: str, popen: bool = False):
        argv = [PACESTACK, "--config-file", str(confs[node]), "migrate", *args]
        if popen:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    def wait_batches(n: int) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            made = nodes[1].execute("SELECT 1 FROM information_schema.tables WHERE "
                                    "table_schema = %s AND table_name = 'runs'", [JOURNAL])
            rows = nodes[1].execute("SELECT run_id, batches FROM runs",
                                    database=JOURNAL) if made else []
            if rows and rows[0][1] >= n:
                return rows[0][0]
            time.sleep(0.2)
        raise AssertionError(f"apply never committed {n} batches")

    before = _checksums(nodes[2], os_cloud)
    apply_args = ("apply", "--mapping", str(mapping_file), "--batch-size", "5",
                  "--connections", "1", "--pause-after-batch", "1")
    # 2. apply through node1; rollback and a second apply through the other nodes refuse
    p = cli(0, *apply_args, popen=True)
    me = f"{socket.gethostname()}:{p.pid}"
    try:
        run_id = wait_batches(1)
        for node, args in ((1, ("rollback", run_id)), (2, apply_args[:3])):
            r = cli(node, *args)
            err = _error_lines(r.stderr)
            assert r.returncode == 1 and len(err) == 1, r.stderr
            assert "holds the journal lock" in err[0] and f"pid {p.pid}" in err[0] \
                and "apply by" in err[0] and "live" in err[0], err
        # a live holder is never broken, even by name
        r = cli(1, "rollback", run_id, "--break-lock", me)
        assert r.returncode == 1 and "that holder is live" in r.stderr, r.stderr
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    # 3. the SIGKILLed holder's lock: a wrong name refuses; a plain re-run through
    #    another node sees the holder ran here and is gone, takes the lock over, says
    #    so, and completes the run
    r = cli(1, *apply_args[:3], "--break-lock", f"{socket.gethostname()}:1")
    assert r.returncode == 2 and f"held by {me}" in r.stderr, r.stderr
    r = cli(1, *apply_args[:3], "--format", "json")
    assert r.returncode == 0, r.stderr
    assert f"took over the journal lock of apply pid {p.pid}" in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["resumed"] and out["run_id"] == run_id
    cluster.wait_synced()
    r = cli(2, "rollback", run_id)
    assert r.returncode == 0, r.stderr
    cluster.wait_synced()
    assert _checksums(nodes[0], os_cloud) == before

    # 4. a holder paused past its heartbeat (SIGSTOP: alive, silent) goes stale; once
    #    broken, it stops before its next batch when it runs again
    p = cli(0, *apply_args, popen=True)
    me = f"{socket.gethostname()}:{p.pid}"
    try:
        _wait_line(p, "batch 1/")  # it sleeps a second after each batch: stopped there
        os.kill(p.pid, signal.SIGSTOP)
        rows = nodes[1].execute("SELECT run_id FROM runs WHERE status = 'running'",
                                database=JOURNAL)
        run2 = rows[0][0]
        time.sleep(STALE + 2)
        r = cli(1, *apply_args[:3])
        assert r.returncode == 1 and "stale" in r.stderr and "its process is gone" not in \
            r.stderr, r.stderr
        r = cli(1, *apply_args[:3], "--break-lock", me, "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["run_id"] == run2
        os.kill(p.pid, signal.SIGCONT)
        _out, stderr = p.communicate(timeout=60)
        assert p.returncode == 1 and "taken over by another run" in stderr, stderr
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)


def _checksums(node, os_cloud) -> dict[str, object]:
    out = {}
    for db, table in tables.TABLES:
        rows = node.execute(f"CHECKSUM TABLE `{os_cloud.db_names[db]}`.`{table}`")
        out[f"{db}.{table}"] = rows[0][1]
    return out
