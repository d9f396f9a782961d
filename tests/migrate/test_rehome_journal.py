"""rehome's write to Nova's info cache (preserve_on_delete before a detach) is a
journaled migrate run: rollback restores the cache byte for byte, and refuses
while Nova has rewritten it since. Runs the rehome worker's own write against
the seed's real nova schema (no Compute stack: the write is pacestack's)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys

import pytest
from pacestack.migrate import rollback as rbmod
from pacestack.migrate.rehome.machine import Shared, Worker


def _cache(s, uuid: str) -> str:
    return s.sql("nova", "SELECT network_info FROM instance_info_caches WHERE "
                 "instance_uuid = %s AND deleted = 0", [uuid])[0][0]


def test_info_cache_write_is_journaled_and_rolled_back(seeded):
    s = seeded
    uuid, port = s.seed.instances["vm-a"], s.seed.ports["vm-a"]
    before = _cache(s, uuid)
    shared = Shared(None, None, s.cloud, s.journal_db, mtu=None, underlay_mtu=1500,
                    overlay_ip_version=4)
    worker = Worker(shared)
    try:
        data: dict = {}
        assert worker.preserve_ports(uuid, {port}, data) == [port]
        assert worker.preserve_ports(uuid, {port}, data) == []  # already set: no second run
    finally:
        worker.close()
    vifs = json.loads(_cache(s, uuid))
    assert [v["preserve_on_delete"] for v in vifs if v["id"] == port] == [True]
    (run_id,) = data["journal_runs"]
    runs = s.os.server.execute("SELECT status, steps, changes FROM runs WHERE run_id = %s",
                               [run_id], database=s.journal_db)
    assert runs == [("done", "rehome", 1)]
    images = s.os.server.execute("SELECT db, tbl, op, row_before FROM images WHERE "
                                 "run_id = %s", [run_id], database=s.journal_db)
    assert [(d, t, op) for d, t, op, _b in images] == [("nova", "instance_info_caches",
                                                        "update")]
    assert json.loads(images[0][3]) == {"network_info": before}

    # Nova rewrote the cache since (its heal task): rollback refuses, nothing changed
    healed = json.dumps(vifs, indent=1)  # the same VIFs, written anew
    s.sql("nova", "UPDATE instance_info_caches SET network_info = %s WHERE "
          "instance_uuid = %s", [healed, uuid])
    with contextlib.closing(s.cloud()) as c:
        rb = rbmod.rollback(c, run_id)
    assert rb.refused and [(x.table, x.state) for x in rb.conflicts] == \
        [("nova.instance_info_caches", "changed")]
    assert _cache(s, uuid) == healed
    # as rehome wrote it again: rolled back to the byte
    s.sql("nova", "UPDATE instance_info_caches SET network_info = %s WHERE "
          "instance_uuid = %s", [json.dumps(vifs), uuid])
    with contextlib.closing(s.cloud()) as c:
        rb = rbmod.rollback(c, run_id)
    assert not rb.refused and rb.rows == 1
    assert _cache(s, uuid) == before


_HOLD = r"""
import sys, time, types
from pacestack import db
from pacestack.migrate.runlock import RunLock
url, journal, command = sys.stdin.read().split()
cloud = types.SimpleNamespace(server=db.parse_url(url, source="test"), journal_db=journal)
RunLock(cloud, command).__enter__()
print("held", flush=True)
time.sleep(600)
"""


def _killed_holder(s, command: str) -> None:
    """A process that took the journal lock as `command`, SIGKILLed while holding it."""
    p = subprocess.Popen([sys.executable, "-c", _HOLD], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    p.stdin.write(f"{s.os.url('nova')} {s.journal_db} {command}")  # the password: not in argv
    p.stdin.close()
    assert p.stdout.readline().strip() == "held"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)


def test_killed_rehome_lock_is_taken_over_any_other_is_waited_for(seeded):
    from pacestack.migrate.model import Change
    from pacestack.migrate.rehome import journaled
    from pacestack.migrate.runlock import Held

    s = seeded
    uuid, port = s.seed.instances["vm-b"], s.seed.ports["vm-b"]
    # a killed operator's apply: never broken by rehome, waited for, then refused
    _killed_holder(s, "apply")
    with contextlib.closing(s.cloud()) as c:
        row = c.rows("SELECT id, network_info FROM {nova.instance_info_caches} "
                     "WHERE instance_uuid = %s AND deleted = 0", [uuid])[0]
        c.conn.commit()
        change = Change("rehome", "nova", "instance_info_caches", "update", {"id": row["id"]},
                        {"network_info": row["network_info"]},
                        {"network_info": row["network_info"] + " "}, f"instance:{uuid}")
        with pytest.raises(Held, match="apply by .* its process is gone"):
            journaled.write(c, [change], "test", wait=1.0)
    # the same lock, left by a killed rehome: taken over, the write goes through
    s.os.server.execute("UPDATE run_lock SET command = 'rehome'", database=s.journal_db)
    shared = Shared(None, None, s.cloud, s.journal_db, mtu=None, underlay_mtu=1500,
                    overlay_ip_version=4)
    worker = Worker(shared)
    try:
        data: dict = {}
        assert worker.preserve_ports(uuid, {port}, data) == [port]
    finally:
        worker.close()
    assert len(data["journal_runs"]) == 1
    assert s.os.server.execute("SELECT token FROM run_lock", database=s.journal_db) == [(None,)]
