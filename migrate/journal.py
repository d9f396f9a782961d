"""The ``pacestack`` journal database, on the same server as the cloud's databases.

- ``runs``: one row per apply run (run id, mapping digest, status).
- ``images``: the before-image of every changed row, written in the same
  transaction as the change, so a committed change always has its image and a
  rolled-back one never does; with it the after-image (what the run wrote; long
  values as their MD5), so rollback can tell a row changed since from one that
  still holds the run's work. ``restored``: 0 to do, 1 restored, 2 kept as it was
  found (changed since; rollback --force). An update of many small rows is one
  packed image (op ``updates``, batch.PACKED) holding all of them; ``images()``
  hands them out one per row all the same, each named (seq, index).
- ``checksums``: CHECKSUM TABLE of every table a run touches, taken before the
  run changes it; rollback compares against them.
- ``run_lock``: the row that keeps two runs (apply, rollback) apart on every
  Galera node (runlock.py).
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import json
import uuid
from typing import Any

from pacestack.migrate import tables
from pacestack.migrate.batch import HASH_OVER, PACKED, Digest, md5_hex
from pacestack.migrate.runlock import RunLock
from pacestack.migrate.tables import q

from pacestack import __version__
from pacestack.errors import ConfigError

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs ("
    " run_id VARCHAR(36) NOT NULL PRIMARY KEY,"
    " started_at DATETIME NOT NULL, finished_at DATETIME NULL,"
    " status VARCHAR(16) NOT NULL,"  # running | done | rolling_back | rolled_back
    " mapping_digest CHAR(64) NOT NULL, steps VARCHAR(255) NOT NULL,"
    " batches INT NOT NULL DEFAULT 0, changes INT NOT NULL DEFAULT 0"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    # which pacestack wrote a run: another version may journal tables this one
    # does not know (NULL: written before versions were recorded)
    "ALTER TABLE runs ADD COLUMN IF NOT EXISTS pacestack_version VARCHAR(32) NULL",
    "CREATE TABLE IF NOT EXISTS checksums ("
    " run_id VARCHAR(36) NOT NULL, db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL,"
    " checksum BIGINT UNSIGNED NULL, PRIMARY KEY (run_id, db, tbl)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS images ("
    " seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " run_id VARCHAR(36) NOT NULL, batch INT NOT NULL,"
    " db VARCHAR(64) NOT NULL, tbl VARCHAR(64) NOT NULL, op VARCHAR(8) NOT NULL,"
    " key_after TEXT NOT NULL, row_before MEDIUMTEXT NULL, cols TEXT NOT NULL,"
    " restored TINYINT NOT NULL DEFAULT 0, row_after MEDIUMTEXT NULL,"
    " KEY images_run_batch (run_id, batch)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    # journals made before after-images were kept
    "ALTER TABLE images ADD COLUMN IF NOT EXISTS row_after MEDIUMTEXT NULL",
    # a packed image (batch.PACKED) holds a group of rows in one: how many of them a
    # forced rollback kept as it found them (NULL: one, for a single-row image)
    "ALTER TABLE images ADD COLUMN IF NOT EXISTS kept_rows INT NULL",
)


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$d": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$dec": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"cannot journal {type(value).__name__}")


def _hook(obj: dict) -> Any:
    if len(obj) == 1:
        (k, v), = obj.items()
        if k == "$dt":
            return datetime.datetime.fromisoformat(v)
        if k == "$d":
            return datetime.date.fromisoformat(v)
        if k == "$dec":
            return decimal.Decimal(v)
        if k == "$b64":
            return base64.b64decode(v)
        if k == "$md5":
            return Digest(v)
    return obj


def digest_of(value: Any) -> Any:
    """How an after-image holds a value: long strings as {"$md5": ...}."""
    if isinstance(value, str) and len(value) > HASH_OVER:
        return {"$md5": md5_hex(value)}
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, sort_keys=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text, object_hook=_hook)


def writer(run: dict) -> str:
    """Which pacestack wrote a run, for messages."""
    v = run.get("pacestack_version")
    return f"pacestack {v}" if v else "a pacestack that did not record its version"


class Journal:
    def __init__(self, cloud):
        self.cloud = cloud
        self.db = q(cloud.journal_db)
        self._lock: RunLock | None = None

    def t(self, name: str) -> str:
        if name not in ("runs", "checksums", "images", "run_lock"):
            raise ValueError(name)
        return f"{self.db}.{q(name)}"

    def ensure_schema(self) -> None:
        with self.cloud.conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {self.db} CHARACTER SET utf8mb4")
            cur.execute(f"USE {self.db}")
            for stmt in _SCHEMA:
                cur.execute(stmt)
        self.cloud.conn.commit()

    def lock(self, command: str, break_lock: str | None = None,
             stale_after: float | None = None):
        """Take the run lock (runlock.py) or raise runlock.Held naming its holder;
        returns the dead holder whose lock it took over, if any."""
        kw = {} if stale_after is None else {"stale_after": stale_after}
        self._lock = RunLock(self.cloud, command, break_lock=break_lock, **kw).__enter__()
        return self._lock.took_over


    def check_lock(self) -> None:
        if self._lock is not None:
            self._lock.check()

    def unlock(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    def runs(self) -> list[dict]:
        return self.cloud.rows("SELECT * FROM {journal.runs} ORDER BY started_at, run_id")

    def run(self, run_id: str) -> dict | None:
        rows = self.cloud.rows("SELECT * FROM {journal.runs} WHERE run_id = %s", [run_id])
        return rows[0] if rows else None

    def interrupted(self) -> list[dict]:
        return self.cloud.rows("SELECT * FROM {journal.runs} WHERE status IN "
                               "('running', 'rolling_back') ORDER BY started_at")

    def start_run(self, digest: str, steps: list[str], cur=None) -> str:
        """A new run, committed; with ``cur``: written in the caller's transaction,
        already done (a run of one batch that commits whole or not at all)."""
        run_id = str(uuid.uuid4())
        sql = self.cloud.sql("INSERT INTO {journal.runs} (run_id, started_at, finished_at, "
                             "status, mapping_digest, steps, pacestack_version) VALUES (%s, "
                             "UTC_TIMESTAMP(), IF(%s, UTC_TIMESTAMP(), NULL), %s, %s, %s, %s)")
        args = [run_id, cur is not None, "running" if cur is None else "done", digest,
                ",".join(steps), __version__]
        if cur is not None:
            cur.execute(sql, args)
            return run_id
        with self.cloud.conn.cursor() as own:
            own.execute(sql, args)
        self.cloud.conn.commit()
        return run_id

    def record_checksums(self, run_id: str, sums: dict[tuple[str, str], Any]) -> None:
        with self.cloud.conn.cursor() as cur:
            cur.executemany(self.cloud.sql("INSERT IGNORE INTO {journal.checksums} "
                                           "(run_id, db, tbl, checksum) VALUES (%s, %s, %s, %s)"),
                            [(run_id, d, t, s) for (d, t), s in sums.items()])
        self.cloud.conn.commit()

    def checksums(self, run_id: str) -> dict[tuple[str, str], Any]:
        return {(r["db"], r["tbl"]): r["checksum"] for r in self.cloud.rows(
            "SELECT db, tbl, checksum FROM {journal.checksums} WHERE run_id = %s", [run_id])}

    def next_batch(self, run_id: str) -> int:
        rows = self.cloud.rows("SELECT COALESCE(MAX(batch), 0) AS b FROM {journal.images} "
                               "WHERE run_id = %s", [run_id])
        return int(rows[0]["b"]) + 1

    def write_images(self, cur, run_id: str, batch: int, images: list[tuple]) -> None:
        """images: (db, table, op, key_after dict, row_before dict|None, cols list,
        row_after dict|None)."""
        rows = [(run_id, batch, d, t, op, dumps(k), None if b is None else dumps(b), dumps(c),
                 None if a is None else dumps({col: digest_of(v) for col, v in a.items()}))
                for d, t, op, k, b, c, a in images]
        for i in range(0, len(rows), 2000):
            cur.executemany(self.cloud.sql(
                "INSERT INTO {journal.images} (run_id, batch, db, tbl, op, key_after, row_before, "
                "cols, row_after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"),
                            rows[i:i + 2000])

    def count_batch(self, cur, run_id: str, changes: int) -> None:
        cur.execute(self.cloud.sql("UPDATE {journal.runs} SET batches = batches + 1, "
                                   "changes = changes + %s WHERE run_id = %s"), [changes, run_id])

    def set_status(self, run_id: str, status: str, finished: bool = False) -> None:
        with self.cloud.conn.cursor() as cur:
            cur.execute(self.cloud.sql(
                "UPDATE {journal.runs} SET status = %s, finished_at = IF(%s, UTC_TIMESTAMP(), "
                "finished_at) WHERE run_id = %s"), [status, finished, run_id])
        self.cloud.conn.commit()

    def batches_to_restore(self, run_id: str) -> list[int]:
        return [r["batch"] for r in self.cloud.rows(
            "SELECT DISTINCT batch FROM {journal.images} WHERE run_id = %s AND restored = 0 "
            "ORDER BY batch DESC", [run_id])]

    def image_kinds(self, run_id: str) -> list[dict]:
        """Each (db, tbl, op, cols) a run's images hold, with how many: what a rollback
        must know how to restore, in one set-based read."""
        return self.cloud.rows("SELECT db, tbl, op, cols, COUNT(*) AS n FROM {journal.images} "
                               "WHERE run_id = %s GROUP BY db, tbl, op, cols", [run_id])

    def check_readable(self, run: dict) -> None:
        """Refuse, before anything changes, a run whose images this version cannot
        restore (a table, column or operation another pacestack journaled)."""
        for k in self.image_kinds(run["run_id"]):
            what = f"{k['op']} of {k['db']}.{k['tbl']}"
            try:
                cols = loads(k["cols"])
                if not tables.whitelisted(k["db"], k["tbl"]) or \
                        k["op"] not in ("insert", "update", "delete", PACKED):
                    raise ValueError(what)
                if k["db"] not in self.cloud.databases:  # a nova cell no longer mapped here
                    raise ValueError(f"{what}, a database this cloud does not have")
                if not isinstance(cols, list):
                    raise ValueError(f"{what} columns {k['cols'][:60]!r}")
                tables.check_columns(k["db"], k["tbl"], cols)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"run {run['run_id']} was journaled by {writer(run)} and holds "
                    f"{k['n']} image(s) naming {' '.join(str(exc).split())[:160]}, which "
                    f"pacestack {__version__} cannot restore; roll it back with the version "
                    "that wrote it (nothing changed)") from None
        bad = self.cloud.rows("SELECT seq FROM {journal.images} WHERE run_id = %s AND NOT "
                              "(JSON_VALID(key_after) AND JSON_VALID(COALESCE(row_before, "
                              "'null'))) LIMIT 1", [run["run_id"]])
        if bad:
            raise ConfigError(f"run {run['run_id']}: journal image {bad[0]['seq']} is not JSON "
                              f"pacestack {__version__} can read ({writer(run)} wrote it); "
                              "nothing changed")

    def images(self, run_id: str, batch: int | None = None,
               with_before: bool = True) -> list[dict]:
        """The images still to restore, one per row: of one batch, or (None) of the
        whole run; with_before False leaves the before-images on the server (row_before
        None; a packed image's are read with its keys, which it holds alongside). Each
        is named by ``seq``: (journal row, index of the row in it)."""
        import pymysql.cursors

        before = "row_before" if with_before else \
            f"IF(op = '{PACKED}', row_before, NULL) AS row_before"
        sql = self.cloud.sql("SELECT seq, batch, db, tbl, op, key_after, " + before +  # noqa: S608
                             ", cols, row_after FROM {journal.images} WHERE run_id = %s AND "
                             "restored = 0" + ("" if batch is None else " AND batch = %s") +
                             " ORDER BY seq")
        args = [run_id] if batch is None else [run_id, batch]
        with self.cloud.conn.cursor(pymysql.cursors.DictCursor) as c:
            c.execute(sql, args)
            rows = list(c.fetchall())
        out = []
        for r in rows:
            try:
                r["key_after"] = loads(r["key_after"])
                r["row_before"] = loads(r["row_before"])
                r["cols"] = loads(r["cols"])
                r["row_after"] = loads(r["row_after"])
                if r["op"] == PACKED:
                    out += _unpack(r, with_before)
                else:
                    r["seq"] = (r["seq"], 0)
                    out.append(r)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                raise ConfigError(f"run {run_id}: journal image {r['seq']} is not JSON this "
                                  f"pacestack ({__version__}) can read") from None
        return out

    def kept(self, run_id: str) -> int:
        """Rows a forced rollback left as it found them."""
        return int(self.cloud.rows("SELECT COALESCE(SUM(COALESCE(kept_rows, 1)), 0) AS n "
                                   "FROM {journal.images} WHERE run_id = %s AND restored = 2",
                                   [run_id])[0]["n"])

    def mark_restored(self, cur, run_id: str, batch: int,
                      kept: list[tuple[int, int]] = ()) -> None:
        """The batch is done; ``kept``: the rows (images' seq) left as found, changed
        since. A packed image with any of them is marked kept, with how many."""
        if kept:
            many = collections.Counter(seq for seq, _i in kept)
            cur.executemany(self.cloud.sql("UPDATE {journal.images} SET restored = 2, "
                                           "kept_rows = %s WHERE run_id = %s AND seq = %s"),
                            [(n, run_id, seq) for seq, n in sorted(many.items())])
        cur.execute(self.cloud.sql("UPDATE {journal.images} SET restored = 1 "
                                   "WHERE run_id = %s AND batch = %s AND restored = 0"),
                    [run_id, batch])


def _unpack(image: dict, with_before: bool) -> list[dict]:
    """A packed image (batch.PACKED) as one image per row, as a single-row one reads."""
    head, cols = image["key_after"], image["cols"]
    pk, vary, md5 = head["pk"], head["vary"], set(head["md5"])
    if not all(isinstance(x, list) for x in (pk, vary, cols, image["row_before"])):
        raise ValueError("not a packed image")
    same = head["same"]
    n_pk, n_cols = len(pk), len(cols)
    out = []
    for i, row in enumerate(image["row_before"]):
        if len(row) != n_pk + n_cols + len(vary):
            raise ValueError("packed row of another shape")
        after = dict(same)
        for c, v in zip(vary, row[n_pk + n_cols:], strict=True):
            after[c] = Digest(v) if c in md5 and v is not None else v
        out.append({"seq": (image["seq"], i), "batch": image["batch"], "db": image["db"],
                    "tbl": image["tbl"], "op": "update", "cols": cols,
                    "key_after": dict(zip(pk, row[:n_pk], strict=True)),
                    "row_before": dict(zip(cols, row[n_pk:n_pk + n_cols], strict=True))
                    if with_before else None,
                    "row_after": after})
    return out


def applied_before(cloud) -> bool:
    """Whether a run has applied (or is applying) to this cloud: the old names may be gone."""
    exists = cloud.rows("SELECT COUNT(*) AS n FROM information_schema.tables "
                        "WHERE table_schema = %s AND table_name = 'runs'", [cloud.journal_db])
    if not exists[0]["n"]:
        return False
    return bool(cloud.rows("SELECT run_id FROM {journal.runs} WHERE status IN "
                           "('running', 'done') LIMIT 1"))
