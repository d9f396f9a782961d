"""apply: the plan, in batched transactions, each with its before-images.

Killed at any moment (SIGKILL, power cut), the open transactions (one per writer
connection, see lanes.py) are rolled back by the server; the journal's run lock
stays behind until it is stale and broken by name (runlock.py). Running apply
again re-plans from what is in the databases now: finished units are no longer
in the plan, so the rerun continues the interrupted run (same run id, so one
rollback undoes both) and ends with the same result as an uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from pacestack.migrate import batch as sqlbatch
from pacestack.migrate import saved as savedmod
from pacestack.migrate import tables
from pacestack.migrate.journal import Journal, dumps, writer
from pacestack.migrate.lanes import Lanes, lock_conflict, server_identity
from pacestack.migrate.model import STEPS, Change, Plan, independent
from pacestack.migrate.plan import build, no_cyclic_gc

from pacestack import __version__, db
from pacestack.errors import ConfigError, RuntimeFailure

Progress = Callable[[str], None]


@dataclasses.dataclass
class ApplyResult:
    run_id: str | None
    resumed: bool
    plan: Plan
    batches: int = 0
    changes: int = 0
    seconds: float = 0.0
    plan_seconds: float = 0.0  # of seconds: planning again, or reading and checking --plan
    connections: int = 1  # writer connections used (lanes.py)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "resumed": self.resumed, "batches": self.batches,
                "changes": self.changes, "seconds": round(self.seconds, 3),
                "plan_seconds": round(self.plan_seconds, 3), "connections": self.connections,
                "release": self.plan.release, "refusals": self.plan.refusals,
                "counts": {s.step: s.counts() for s in self.plan.steps}}


def galera_state(cloud) -> dict[str, str]:
    rows = cloud.rows("SHOW GLOBAL STATUS LIKE 'wsrep%%'")
    return {r["Variable_name"]: r["Value"] for r in rows}


def check_galera(cloud) -> None:
    """Refuse a Galera node that is not Primary and Synced: writes there could be lost
    or refused. A plain MariaDB (no wsrep provider) passes."""
    st = galera_state(cloud)
    if st.get("wsrep_ready") is None and st.get("wsrep_cluster_status") is None:
        return
    if st.get("wsrep_on", "ON") == "OFF" and not st.get("wsrep_cluster_status"):
        return
    status = st.get("wsrep_cluster_status", "")
    if status in ("", "Disconnected") and st.get("wsrep_provider_name", "") == "":
        return  # wsrep compiled in but no provider loaded: a standalone server
    state = st.get("wsrep_local_state_comment", "")
    if status != "Primary" or state != "Synced":
        raise RuntimeFailure(f"database {cloud.server.endpoint} is a Galera node in state "
                             f"{status or 'unknown'}/{state or 'unknown'}, not Primary/Synced: "
                             "refusing to write through it")


def mapping_digest(mapping, steps: list[str]) -> str:
    if mapping.path and os.path.isfile(mapping.path):
        with open(mapping.path, "rb") as fh:
            text = fh.read()
    else:
        text = repr(mapping.to_dict()).encode()
    return hashlib.sha256(text + ",".join(steps).encode()).hexdigest()


def _batches(changes: list[Change], size: int) -> list[list[Change]]:
    """Cut into batches of about size changes, never splitting a unit."""
    out: list[list[Change]] = []
    cur: list[Change] = []
    units: dict[str, list[Change]] = {}
    for c in changes:
        units.setdefault(c.unit, []).append(c)
    for unit_changes in units.values():
        if cur and len(cur) + len(unit_changes) > size:
            out.append(cur)
            cur = []
        cur.extend(unit_changes)
    if cur:
        out.append(cur)
    return out


@dataclasses.dataclass
class PreparedBatch:
    number: int
    changes: int
    stmts: list[sqlbatch.Stmt]
    images: list[tuple]  # images written by the client (inserted rows' keys and values)


def prepare_batch(cloud, lit: sqlbatch.Literals, run_id: str, batch_no: int,
                  changes: list[Change], row_columns: dict[tuple[str, str], list[str]],
                  utf8: dict[tuple[str, str], frozenset[str]] | None = None,
                  movable: dict[tuple[str, str], list[str] | None] | None = None
                  ) -> PreparedBatch:
    """The statements of one batch, composed without touching the connection: one
    set-based group per signature, in table order. ``row_columns``, ``utf8`` and
    ``movable``: what delete_columns, utf8_columns and movable_columns read on the
    connection's thread."""
    images: list[tuple] = []
    stmts: list[sqlbatch.Stmt] = []
    groups: dict[tuple, list[Change]] = {}
    for c in changes:
        groups.setdefault(c.signature(), []).append(c)
    for sig in sorted(groups):
        _order, db, table, op, cols = sig
        grp = groups[sig]
        if op == "insert":
            stmts += sqlbatch.prepare_insert(cloud, db, table, [c.after for c in grp])
            images += [(db, table, "insert", c.key, None, list(c.after), c.after) for c in grp]
            continue
        image = (cloud.t("journal", "images"), [run_id, batch_no, db, table, dumps(list(cols))])
        if op == "update":
            stmts += sqlbatch.prepare_update(cloud, lit, db, table, [c.key for c in grp],
                                             [c.before for c in grp], [c.after for c in grp],
                                             list(cols), image,
                                             (utf8 or {}).get((db, table), frozenset()),
                                             (movable or {}).get((db, table)))
        else:
            stmts += sqlbatch.prepare_delete(cloud, lit, db, table, [c.key for c in grp], image,
                                             row_columns[(db, table)])
    return PreparedBatch(batch_no, len(changes), stmts, images)


def run_batch(cloud, journal: Journal, run_id: str, batch: PreparedBatch) -> None:
    """One transaction: lock rows, check they are as planned, journal, change."""
    conn = cloud.conn
    try:
        with conn.cursor() as cur:
            sqlbatch.run(cur, batch.stmts)
            journal.write_images(cur, run_id, batch.number, batch.images)
            journal.count_batch(cur, run_id, batch.changes)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def run_alone(cloud, journal: Journal, run_id: str, batch: PreparedBatch,
              say: Progress) -> None:
    """run_batch on the run's own connection; a lock conflict with another client
    (deadlock, lock wait timeout: the server rolled the batch back) gets one retry."""
    try:
        run_batch(cloud, journal, run_id, batch)
    except Exception as err:
        if not lock_conflict(err):
            raise
        say(f"batch {batch.number} hit a lock conflict ({err.args[-1]}); running it again")
        run_batch(cloud, journal, run_id, batch)


def delete_columns(cloud, changes: list[Change]) -> dict[tuple[str, str], list[str]]:
    """The columns of every table rows are deleted from (whole rows are journaled)."""
    return {k: sqlbatch.columns(cloud, *k) for k in {(c.db, c.table) for c in changes
                                                     if c.op == "delete"}}


def utf8_columns(cloud, changes: list[Change]) -> dict[tuple[str, str], frozenset[str]]:
    """The UTF-8 text columns of every table rows are updated in (batch.utf8_columns)."""
    return {k: sqlbatch.utf8_columns(cloud, *k) for k in {(c.db, c.table) for c in changes
                                                          if c.op == "update"}}


def movable_columns(cloud, changes: list[Change]) -> dict[tuple[str, str], list[str] | None]:
    """batch.movable_columns of every table rows are updated in where an update may
    write a primary key column (the whitelist says which)."""
    return {k: sqlbatch.movable_columns(cloud, *k) for k in {
        (c.db, c.table) for c in changes if c.op == "update"} if tables.writes_key(*k)}


def apply_batch(cloud, journal: Journal, run_id: str, batch_no: int,
                changes: list[Change]) -> None:
    """Compose and run one batch on this thread."""
    run_batch(cloud, journal, run_id, prepare_batch(
        cloud, sqlbatch.Literals(cloud.conn), run_id, batch_no, changes,
        delete_columns(cloud, changes), utf8_columns(cloud, changes),
        movable_columns(cloud, changes)))


def table_checksums(cloud, keys, conn=None) -> dict[tuple[str, str], object]:
    """CHECKSUM TABLE of each (db, table), on conn (default: the run's connection)."""
    with (conn or cloud.conn).cursor() as cur:
        return {k: sqlbatch.checksum(cloud, cur, *k) for k in keys}


def table_checksums_aside(cloud, keys) -> Future | None:
    """table_checksums on a connection of its own in a thread: the server reads the
    tables while the caller's thread accounts for the residue (client work). None when
    that connection reached another server (a Galera node behind the same address may
    lag): the caller then checksums on its own connection."""
    conn = db.connect(cloud.server, database="", timeout=cloud.timeout)
    try:
        same = server_identity(conn) == server_identity(cloud.conn)
    except BaseException:
        conn.close()
        raise
    if not same:
        conn.close()
        return None

    def run() -> dict[tuple[str, str], object]:
        try:
            return table_checksums(cloud, keys, conn)
        finally:
            conn.close()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checksum")
    try:
        return pool.submit(run)
    finally:
        pool.shutdown(wait=False)


def interrupted_run(journal: Journal, digest: str) -> str | None:
    """The run an interrupted apply left to continue (None: start a new one); refuses
    one this apply cannot continue (rolling back, other version, other mapping)."""
    run_id = None
    for run in journal.interrupted():
        if run["status"] == "rolling_back":
            raise RuntimeFailure(f"run {run['run_id']} was interrupted while rolling back; "
                                 f"finish it first: pacestack migrate rollback "
                                 f"{run['run_id']}")
        if run.get("pacestack_version") not in (None, __version__):
            raise ConfigError(f"run {run['run_id']} was interrupted under {writer(run)}, "
                              f"this is {__version__}: resume it with that version or roll "
                              "it back")
        if run["mapping_digest"] != digest:
            raise ConfigError(f"run {run['run_id']} was interrupted with a different mapping "
                              "or --only; re-run it with the same ones or roll it back")
        run_id = run["run_id"]
    return run_id


def plan_with_checksums(cloud, mapping, steps: list[str], force: bool,
                        known: dict[tuple[str, str], object], say: Progress
                        ) -> tuple[Plan, float, list[Future]]:
    """The plan from the databases as they are now, and how long it took; beside it,
    the checksums of the tables it changes that ``known`` lacks, read on a connection
    of their own (at most one future; none when that reached another server)."""
    aside: list[Future] = []

    def planned(changes: list[Change]) -> None:
        new = sorted({(c.db, c.table) for c in changes} - set(known),
                     key=lambda k: tables.order(*k))
        if new:
            say(f"checksumming {len(new)} tables")
            fut = table_checksums_aside(cloud, new)
            aside.extend([fut] if fut else [])
    say("planning")
    t_plan = time.monotonic()
    try:
        plan = build(cloud, mapping, only=steps, force=force, planned=planned)
        cloud.conn.commit()  # end the read snapshot: batches must see current rows
        plan_seconds = time.monotonic() - t_plan
    finally:
        concurrent.futures.wait(aside)  # not left reading behind a refusal or an error
    return plan, plan_seconds, aside


def record_checksums(cloud, journal: Journal, run_id: str, plan: Plan,
                     known: dict[tuple[str, str], object], aside: list[Future]) -> None:
    """Every table the plan writes has its checksum recorded before the first batch:
    those read beside the plan, the rest (none read aside) on the run's connection."""
    sums = aside[0].result() if aside else {}
    missing = [k for k in plan.tables() if k not in known and k not in sums]
    if missing:
        sums.update(table_checksums(cloud, missing))
    if sums:
        journal.record_checksums(run_id, sums)


def write_batches(cloud, journal: Journal, run_id: str, result: ApplyResult, *,
                  batch_size: int, connections: int, say: Progress,
                  pause_after_batch: float = 0.0) -> None:
    """The plan's changes in batches after the journal's last one, counted into result.

    The next batch is composed on a second thread while the server works through
    this one (the client then mostly waits on the socket, without the GIL); batches
    of independent units commit side by side on the lanes, the others alone."""
    changes = result.plan.changes  # a property that builds the list: once
    batches = _batches(changes, batch_size)
    first = journal.next_batch(run_id)
    lit = sqlbatch.Literals(cloud.conn)
    row_columns = delete_columns(cloud, changes)  # server questions: on this thread
    utf8 = utf8_columns(cloud, changes)
    movable = movable_columns(cloud, changes)

    def compose(i: int) -> PreparedBatch:
        return prepare_batch(cloud, lit, run_id, first + i, batches[i], row_columns, utf8,
                             movable)

    def done(finished: list[list[Change]]) -> None:
        for b in finished:
            result.batches += 1
            result.changes += len(b)
            say(f"batch {result.batches}/{len(batches)}: {result.changes}/{len(changes)} "
                "rows")
            if pause_after_batch:
                time.sleep(pause_after_batch)  # tests: a window to kill between batches

    def on_lane(lane, prepared: PreparedBatch) -> None:
        run_batch(lane, Journal(lane), run_id, prepared)
    with no_cyclic_gc(), ThreadPoolExecutor(1, thread_name_prefix="compose") as pool, \
            Lanes(cloud, connections, on_lane, say) as lanes:
        result.connections = lanes.n if lanes.parallel else 1
        ahead = pool.submit(compose, 0) if batches else None
        for i, b in enumerate(batches):
            journal.check_lock()
            prepared = ahead.result()
            if i + 1 < len(batches):
                ahead = pool.submit(compose, i + 1)
            if lanes.parallel and all(independent(c.unit) for c in b):
                done(lanes.submit(prepared, b))
            else:
                done(lanes.drain() if lanes.parallel else [])
                run_alone(cloud, journal, run_id, prepared, say)
                done([b])
        if lanes.parallel:
            done(lanes.drain())


def apply(cloud, mapping, *, only: list[str] | None = None, force: bool = False,
          batch_size: int = 5000, connections: int = 2, progress: Progress | None = None,
          pause_after_batch: float = 0.0, break_lock: str | None = None,
          lock_stale_after: float | None = None, lock_command: str = "apply",
          plan_file: str | None = None) -> ApplyResult:
    """connections: how many batches of independent units may commit at once (each on
    its own connection); 1 writes everything on the run's own connection in plan order.
    break_lock: HOST:PID of a stale run lock to take over (runlock.py); lock_command:
    what the lock names as its holder's command. plan_file: a plan saved by
    ``plan --save`` (saved.py), applied instead of planning again when the databases
    are still as it saw them (refused otherwise); its steps and force are the plan's."""
    t0 = time.monotonic()
    say = progress or (lambda _m: None)
    saved = None
    if plan_file is not None:
        if only or force:
            raise ConfigError("--only and --force are the saved plan's: give neither with "
                              "--plan")
        say(f"reading plan {plan_file}")
        saved = savedmod.load(plan_file)  # bad input is refused before anything is touched
        only, force = saved.steps, saved.force
    check_galera(cloud)
    journal = Journal(cloud)
    journal.ensure_schema()
    dead = journal.lock(lock_command, break_lock, lock_stale_after)
    if dead is not None:
        say(f"took over the journal lock of {dead.command} pid {dead.pid} on {dead.host}: "
            "its process is gone")
    try:
        steps = only or list(STEPS)
        digest = mapping_digest(mapping, steps)
        run_id = interrupted_run(journal, digest)
        resumed = run_id is not None
        # checksums before this run touched a table (on resume: tables not seen yet),
        # read beside the plan's residue accounting, before anything is written
        known = journal.checksums(run_id) if run_id else {}
        if saved is not None:
            if run_id is not None:
                raise RuntimeFailure(f"run {run_id} was interrupted: continue it with apply "
                                     "without --plan (it plans again from the databases) or "
                                     "roll it back")
            say(f"checking plan {plan_file} against the databases")
            plan, sums = savedmod.current_plan(cloud, mapping, saved)
            read: Future = Future()  # read already, under the lock, before any write
            read.set_result(sums)
            plan_seconds, aside = time.monotonic() - t0, [read]
        else:
            plan, plan_seconds, aside = plan_with_checksums(cloud, mapping, steps, force,
                                                            known, say)
        result = ApplyResult(run_id, resumed, plan, plan_seconds=plan_seconds)
        if plan.refusals:
            return result
        if run_id is None:
            if not plan.changes:
                result.seconds = time.monotonic() - t0
                return result
            run_id = journal.start_run(digest, steps)
            result.run_id = run_id
        record_checksums(cloud, journal, run_id, plan, known, aside)
        write_batches(cloud, journal, run_id, result, batch_size=batch_size,
                      connections=connections, say=say, pause_after_batch=pause_after_batch)
        journal.set_status(run_id, "done", finished=True)
        result.seconds = time.monotonic() - t0
        return result
    finally:
        journal.unlock()
