"""rehome's write to Nova's info cache (preserve_on_delete before a detach) is a
journaled migrate run: rollback restores the cache byte for byte, and refuses
while Nova has rewritten it since. Runs the rehome worker's own write against
the seed's real nova schema (no Compute stack: the write is pacestack's)."""

from __future__ import annotations

import contextlib
import json

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
