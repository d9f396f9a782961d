"""rollback RUN_ID: put every before-image of a run back, newest batch first,
but only over rows that still hold what the run wrote.

First every image still to restore is checked against its row, set-based (one
join per table and column set): a row changed since (the new cloud moved the
instance on, a port was bound elsewhere), deleted since, or deleted by the run
and there again holds newer work than the run's. Any such row refuses the whole
rollback, listed, with nothing changed, unless the operator types their count
back (``force``): then those rows are left as they are now and everything else is
restored. Why they are kept, not overwritten: a before-image written over a
newer change would destroy work done on the new cloud, and a deleted row
brought back (or a re-created one deleted) would resurrect or destroy a
resource the new cloud decided about; the operator fixes those few by hand from
the listing. A row the run inserted and the new cloud deleted since is no
conflict: rollback would delete it, and it is gone.

Each journal batch is restored in one transaction that checks its rows again
(locking them), restores the rest and marks the batch restored (the kept rows
with restored = 2), so an interrupted rollback continues where it stopped; a row
that changed between the check and its batch stops the rollback there. At the
end the affected tables' CHECKSUM TABLE values are compared with those taken
before the apply.
"""

from __future__ import annotations

import dataclasses
import json
import time
from itertools import groupby
from typing import Any

from pacestack.migrate import apply as applymod
from pacestack.migrate import batch as sqlbatch
from pacestack.migrate import tables
from pacestack.migrate.journal import Digest, Journal

from pacestack.errors import ConfigError, RuntimeFailure


def _shown(value: Any) -> Any:
    if isinstance(value, Digest):
        return f"md5:{value}"
    return value


@dataclasses.dataclass
class Conflict:
    """A row that no longer holds what the run wrote."""
    seq: tuple[int, int]  # the journal image, and the row's index in a packed one
    batch: int
    table: str  # db.table
    op: str  # what the run did: update | insert | delete
    key: dict
    state: str  # changed | gone | back | unchecked
    columns: list[dict]  # {"column", "written", "now"} (long texts as md5:...)

    def to_dict(self) -> dict:
        return {"table": self.table, "key": self.key, "run_did": self.op, "state": self.state,
                "columns": self.columns, "batch": self.batch}


@dataclasses.dataclass
class RollbackResult:
    run_id: str
    batches: int = 0
    rows: int = 0
    checksums: dict = dataclasses.field(default_factory=dict)  # "db.table" -> (before, now)
    conflicts: list[Conflict] = dataclasses.field(default_factory=list)
    already_gone: int = 0  # rows the run inserted that were deleted since
    kept: int = 0  # conflicting rows left as they are (force)
    refused: str | None = None  # why nothing was changed
    check_seconds: float = 0.0  # of the run's time: checking every row before restoring

    @property
    def checksums_ok(self) -> bool:
        return all(a == b for a, b in self.checksums.values())

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "refused": self.refused, "batches": self.batches,
                "rows": self.rows, "kept": self.kept, "already_gone": self.already_gone,
                "conflicts": [c.to_dict() for c in self.conflicts],
                "check_seconds": round(self.check_seconds, 3),
                "checksums_ok": self.checksums_ok,
                "checksums": {k: {"before_apply": a, "now": b}
                              for k, (a, b) in self.checksums.items()}}


def _written(im: dict) -> dict:
    """The image's after-image over its columns (what the run wrote)."""
    after = im["row_after"] or {}
    return {c: after.get(c) for c in im["cols"]}


def _check(cloud, cur, images: list[dict], lock: bool) -> tuple[list[Conflict], set[int]]:
    """The images whose rows no longer hold what the run wrote, and the inserted
    rows already gone (seq)."""
    conflicts: list[Conflict] = []
    gone: set[int] = set()
    # a row the run itself touched again later (deleted and then re-created under the
    # same key by a rebinding, updated twice...): only its newest image says what the
    # run left there; the older ones are restored after it, newest first
    newest: dict[tuple, int] = {}
    for im in images:
        k = (im["db"], im["tbl"], json.dumps(im["key_after"], sort_keys=True, default=str))
        newest[k] = max(newest.get(k, im["seq"]), im["seq"])

    def sig(im):
        after = im["row_after"] or {}
        hashed = tuple(sorted(c for c, v in after.items() if isinstance(v, Digest)))
        return (im["db"], im["tbl"], im["op"], tuple(im["cols"]), hashed,
                im["row_after"] is None and im["op"] != "delete")
    for (db, table, op, cols, hashed, unchecked), grp in groupby(sorted(images, key=sig),
                                                                  key=sig):
        grp = list(grp)
        if unchecked:  # journaled without an after-image: nothing to compare with
            conflicts += [Conflict(im["seq"], im["batch"], f"{db}.{table}", op, im["key_after"],
                                   "unchecked", []) for im in grp]
            continue
        afters = None if op == "delete" else [_written(im) for im in grp]
        for d in sqlbatch.drifted(cloud, cur, db, table, [im["key_after"] for im in grp],
                                  afters, cols, hashed, lock):
            im = grp[d.index]
            if newest[(db, table, json.dumps(im["key_after"], sort_keys=True,
                                             default=str))] > im["seq"]:
                continue
            if op == "insert" and d.state == "gone":
                gone.add(im["seq"])
                continue
            written = _written(im)
            # a row gone since: what the run wrote there, all of it
            differ = list(cols) if d.state == "gone" else d.columns
            conflicts.append(Conflict(
                im["seq"], im["batch"], f"{db}.{table}", op, im["key_after"], d.state,
                [{"column": c, "written": _shown(written[c]),
                  "now": f"md5:{d.now[c]}" if c in hashed and d.now.get(c) is not None
                  else d.now.get(c)} for c in differ]))
    return sorted(conflicts, key=lambda c: c.seq), gone


def check(cloud, journal: Journal, run_id: str) -> tuple[list[Conflict], set[int]]:
    """Read-only: every image still to restore against its row as it is now."""
    try:
        with cloud.conn.cursor() as cur:
            return _check(cloud, cur, journal.images(run_id, with_before=False), lock=False)
    finally:
        cloud.conn.commit()  # end the read snapshot


def _restore_batch(cloud, journal: Journal, run_id: str, batch: int,
                   accepted: set[int]) -> tuple[int, int]:
    """Restore one batch in one transaction; its conflicting rows (accepted: the
    ones the operator confirmed) stay as they are. Returns (restored, kept)."""
    conn = cloud.conn
    try:
        with conn.cursor() as cur:
            images = journal.images(run_id, batch)
            conflicts, _gone = _check(cloud, cur, images, lock=True)
            new = [c for c in conflicts if c.seq not in accepted]
            if new:
                c = new[0]
                raise RuntimeFailure(f"{len(new)} rows changed while rolling back (first: "
                                     f"{c.table} {c.key}: {c.state}); batch {batch} was not "
                                     "restored: run rollback again to see them")
            kept = {c.seq for c in conflicts}
            todo = [im for im in images if im["seq"] not in kept]

            # undo in the reverse of the order apply wrote the tables
            def sig(im):
                return (tables.order(im["db"], im["tbl"]), im["db"], im["tbl"], im["op"],
                        tuple(im["cols"]))
            for (_o, db, table, op, cols), grp in groupby(sorted(todo, key=sig, reverse=True),
                                                         key=sig):
                grp = list(grp)
                if op == "insert":
                    sqlbatch.delete_rows(cloud, cur, db, table, [g["key_after"] for g in grp])
                elif op == "delete":
                    sqlbatch.insert_rows(cloud, cur, db, table, [g["row_before"] for g in grp],
                                         whole_row=True)
                else:
                    sqlbatch.update_rows(cloud, cur, db, table, [g["key_after"] for g in grp],
                                         [g["row_before"] for g in grp], list(cols))
            journal.mark_restored(cur, run_id, batch, sorted(kept))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return len(todo), len(kept)


def rollback(cloud, run_id: str, progress=None, *, force: int | None = None,
             break_lock: str | None = None, lock_stale_after: float | None = None
             ) -> RollbackResult:
    """force: the number of rows changed since the run, typed back by the operator;
    those rows are kept as they are and the rest restored. Without it (or with a
    wrong count) any such row refuses the rollback and nothing changes."""
    say = progress or (lambda _m: None)
    applymod.check_galera(cloud)
    journal = Journal(cloud)
    journal.ensure_schema()
    dead = journal.lock("rollback", break_lock, lock_stale_after)
    if dead is not None:
        say(f"took over the journal lock of {dead.command} pid {dead.pid} on {dead.host}: "
            "its process is gone")
    try:
        run = journal.run(run_id)
        if run is None:
            raise ConfigError(f"no migrate run {run_id!r} in the journal "
                              f"({cloud.journal_db} on {cloud.server.endpoint})")
        journal.check_readable(run)
        result = RollbackResult(run_id)
        if run["status"] != "rolled_back":
            say("checking the run's rows still hold what it wrote")
            t0 = time.monotonic()
            conflicts, gone = check(cloud, journal, run_id)
            result.check_seconds = time.monotonic() - t0
            result.conflicts, result.already_gone = conflicts, len(gone)
            if conflicts and force != len(conflicts):
                result.refused = (
                    f"{len(conflicts)} rows changed since run {run_id} wrote them; nothing "
                    "rolled back" + (f" (--force {force} given, the count is {len(conflicts)})"
                                     if force is not None else
                                     f"; to keep them as they are and restore the rest: "
                                     f"--force {len(conflicts)}"))
                return result
            if not conflicts and force:
                result.refused = (f"--force {force} given but no row changed since run "
                                  f"{run_id} wrote it; nothing rolled back")
                return result
            accepted = {c.seq for c in conflicts}
            journal.set_status(run_id, "rolling_back")
            todo = journal.batches_to_restore(run_id)
            for i, b in enumerate(todo):
                journal.check_lock()
                rows, kept = _restore_batch(cloud, journal, run_id, b, accepted)
                result.rows += rows
                result.batches += 1
                say(f"restored batch {i + 1}/{len(todo)}")
            journal.set_status(run_id, "rolled_back", finished=True)
        result.kept = journal.kept(run_id)
        before = journal.checksums(run_id)
        now = applymod.table_checksums(cloud, list(before))
        result.checksums = {f"{d}.{t}": (before[(d, t)], now[(d, t)]) for d, t in before}
        return result
    finally:
        journal.unlock()
