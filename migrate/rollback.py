"""rollback RUN_ID: put every before-image of a run back, newest batch first.

Each journal batch is restored in one transaction that also marks it restored,
so an interrupted rollback continues where it stopped. At the end the affected
tables' CHECKSUM TABLE values are compared with those taken before the apply.
"""

from __future__ import annotations

import dataclasses
from itertools import groupby

from pacestack.migrate import apply as applymod
from pacestack.migrate import batch as sqlbatch
from pacestack.migrate import tables
from pacestack.migrate.journal import Journal

from pacestack.errors import ConfigError


@dataclasses.dataclass
class RollbackResult:
    run_id: str
    batches: int = 0
    rows: int = 0
    checksums: dict = dataclasses.field(default_factory=dict)  # "db.table" -> (before, now)

    @property
    def checksums_ok(self) -> bool:
        return all(a == b for a, b in self.checksums.values())

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "batches": self.batches, "rows": self.rows,
                "checksums_ok": self.checksums_ok,
                "checksums": {k: {"before_apply": a, "now": b}
                              for k, (a, b) in self.checksums.items()}}


def _restore_batch(cloud, journal: Journal, run_id: str, batch: int) -> int:
    images = journal.images(run_id, batch)
    conn = cloud.conn
    try:
        with conn.cursor() as cur:
            # undo in the reverse of the order apply wrote the tables
            def sig(im):
                return (tables.ORDER[(im["db"], im["tbl"])], im["db"], im["tbl"], im["op"],
                        tuple(im["cols"]))
            for (_o, db, table, op, cols), grp in groupby(sorted(images, key=sig, reverse=True),
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
            journal.mark_restored(cur, run_id, batch)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return len(images)


def rollback(cloud, run_id: str, progress=None) -> RollbackResult:
    say = progress or (lambda _m: None)
    applymod.check_galera(cloud)
    journal = Journal(cloud)
    journal.ensure_schema()
    journal.lock()
    try:
        run = journal.run(run_id)
        if run is None:
            raise ConfigError(f"no migrate run {run_id!r} in the journal "
                              f"({cloud.journal_db} on {cloud.server.endpoint})")
        journal.check_readable(run)
        result = RollbackResult(run_id)
        if run["status"] != "rolled_back":
            journal.set_status(run_id, "rolling_back")
            todo = journal.batches_to_restore(run_id)
            for i, b in enumerate(todo):
                result.rows += _restore_batch(cloud, journal, run_id, b)
                result.batches += 1
                say(f"restored batch {i + 1}/{len(todo)}")
            journal.set_status(run_id, "rolled_back", finished=True)
        before = journal.checksums(run_id)
        now = applymod.table_checksums(cloud, list(before))
        result.checksums = {f"{d}.{t}": (before[(d, t)], now[(d, t)]) for d, t in before}
        return result
    finally:
        journal.unlock()
