"""Rehome's own writes to the new cloud's databases (Nova's info cache) as
journaled migrate runs, so ``pacestack migrate rollback RUN_ID`` restores them
like any cutover change.

A write is a plan of its own: its changes, composed and checked as apply's
batches are (the rows must still hold the values read, locked, before- and
after-images journaled server-side), committed in one transaction together with
its run row, which is born ``done``: a kill leaves either the whole run or
nothing, never an interrupted run for apply to trip over. Runs of one process
take turns on ``lock``; the journal's run lock keeps them apart from other
processes, and a rehome that finds it held waits its turn. A lock left behind by
a killed rehome whose process provably is gone (it ran on this host)
is taken over: rehome resumes killed runs by design, and such a holder can
never come back. Any other holder (an operator's apply or rollback, a rehome on
another host) is waited for, never broken.
"""

from __future__ import annotations

import hashlib
import threading
import time

from pacestack.migrate import apply as applymod
from pacestack.migrate import batch as sqlbatch
from pacestack.migrate.journal import Journal
from pacestack.migrate.model import Change
from pacestack.migrate.runlock import Held

STEPS = ["rehome"]


def write(cloud, changes: list[Change], what: str, *, lock: threading.Lock | None = None,
          wait: float = 120.0) -> str:
    """Apply ``changes`` as one journaled run; its run id. ``what`` names the write
    in the run's digest. Raises batch.Stale when a row changed since it was read."""
    journal = Journal(cloud)
    journal.ensure_schema()
    deadline = time.monotonic() + wait
    while True:
        with lock or threading.Lock():
            try:
                # a killed rehome's lock on this host is taken over by the lock itself
                journal.lock("rehome")
            except Held:
                if time.monotonic() > deadline:
                    raise
            else:
                try:
                    return _commit(cloud, journal, changes, what)
                finally:
                    journal.unlock()
        time.sleep(0.5)


def _commit(cloud, journal: Journal, changes: list[Change], what: str) -> str:
    digest = hashlib.sha256(f"rehome:{what}".encode()).hexdigest()
    conn = cloud.conn
    try:
        with conn.cursor() as cur:
            run_id = journal.start_run(digest, STEPS, cur=cur)
            prepared = applymod.prepare_batch(cloud, sqlbatch.Literals(conn), run_id, 1,
                                              changes, applymod.delete_columns(cloud, changes),
                                              applymod.utf8_columns(cloud, changes))
            sqlbatch.run(cur, prepared.stmts)
            journal.write_images(cur, run_id, 1, prepared.images)
            journal.count_batch(cur, run_id, prepared.changes)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return run_id

