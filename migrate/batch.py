"""Set-based statements over many rows: the only place where SQL text is composed.

Identifiers come from tables.TABLES (whitelisted, quoted); every value travels
as a parameter. A group of changes becomes: one temporary table of keys and
new values filled with executemany, one ``SELECT ... FOR UPDATE`` for the
before-images, one ``UPDATE ... JOIN`` (or ``DELETE ... JOIN``; rows whose
primary key changes are moved by ``INSERT ... SELECT`` and ``DELETE ... JOIN``
where the table allows it, see movable_columns). The new values sit in the
temporary table, so MariaDB's left-to-right SET order cannot make one
assignment see another's result.

Composing is kept apart from running: ``prepare_*`` return the statements of a
group as data (``Stmt``), touching neither the connection nor the database, and
``run`` sends them. So apply composes the next batch on a second thread while
the server works through the current one (see apply.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pacestack.migrate import tables
from pacestack.migrate.tables import q
from pymysql.constants import SERVER_STATUS

from pacestack.errors import RuntimeFailure

TMP = "_pacestack_rows"
# The scratch table of keys and values is session-local and refilled per group: it
# needs no undo log or crash recovery, so Aria (no transactions, holds any column
# type, unlike MEMORY) fills and joins it with a sixth less server CPU than InnoDB,
# the engine CREATE TEMPORARY TABLE would pick. What a batch writes stays InnoDB.
_SCRATCH = "ENGINE=Aria TRANSACTIONAL=0"
HASH_OVER = 64  # characters: longer old values are checked by MD5


class Digest(str):
    """A value held as its MD5 (hex): long texts such as Nova's info cache are compared
    by digest, so an after-image, or a saved plan's old value, keeps only that."""


def md5_hex(value: str) -> str:
    """How a long old value is compared: the MD5 (hex) of its UTF-8."""
    return hashlib.md5(value.encode("utf-8"), usedforsecurity=False).hexdigest()


class Stale(RuntimeFailure):
    """The rows are not as the plan saw them: someone else changed them."""


def _real(cloud, db: str, table: str) -> str:
    return cloud.t(db, table)


@dataclasses.dataclass(frozen=True, slots=True)
class Stmt:
    """One statement of a prepared group. ``expect``: the rows it must match (for
    ``count``, the value of its SELECT COUNT(*)); otherwise Stale, with ``stale``
    formatted with ``missing`` and ``got``."""
    sql: str
    params: Sequence | None = None
    many: Sequence[tuple] | None = None  # rows for executemany
    expect: int | None = None
    count: bool = False
    stale: str = ""
    # which rows fail: a query answering (key values..., gone, one flag per checked
    # column) for the first few, run in the same transaction before it is rolled back
    diagnose: Diagnose | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Diagnose:
    sql: str
    params: Sequence
    keys: Sequence[str]
    checked: Sequence[str]
    # how many rows fail (count_params: its parameters), asked when the statement's
    # count is not of rows (a packed image: 1 or 0)
    count_sql: str = ""
    count_params: Sequence = ()
    rows: bool = False


_NAMED = 3  # offending rows named in the message


def _offenders(cur, d: Diagnose) -> str:
    """The rows a guard refused, each with its key and what is wrong with it (column
    names only: a value may be a secret)."""
    cur.execute(d.sql, list(d.params))
    named = []
    for r in cur.fetchall():
        key = ", ".join(f"{k}={v!r}" for k, v in zip(d.keys, r, strict=False))
        gone, flags = r[len(d.keys)], r[len(d.keys) + 1:]
        what = "gone" if gone else "changed " + ", ".join(
            c for c, ok in zip(d.checked, flags, strict=True) if not ok)
        named.append(f"{key} ({what})")
    return "; ".join(named)


def run(cur, stmts: Iterable[Stmt]) -> None:
    """Send prepared statements in order, checking what each must match."""
    for s in stmts:
        if s.many is not None:
            cur.executemany(s.sql, s.many)
            continue
        n = cur.execute(s.sql, s.params)
        if s.count:
            n = cur.fetchone()[0]
        if s.expect is not None and n != s.expect:
            missing = s.expect - n
            if s.diagnose and s.diagnose.rows:
                cur.execute(s.diagnose.count_sql, list(s.diagnose.count_params))
                missing = cur.fetchone()[0]
            which = _offenders(cur, s.diagnose) if s.diagnose else ""
            raise Stale(s.stale.format(missing=missing, got=n,
                                       rows=f" ({which})" if which else ""))


def _tmp(real: str, keys: Sequence[str], vals: Sequence[str],
         olds: Sequence[str] = ()) -> list[Stmt]:
    cols = [f"{q(k)} AS {q('k_' + k)}" for k in keys] + [f"{q(v)} AS {q('v_' + v)}"
                                                          for v in vals] + \
        [f"{q(o)} AS {q('o_' + o)}" for o in olds]
    # column types copied from the real table; no rows copied. One statement replaces
    # the group before's table: a round trip less per group
    return [Stmt(f"CREATE OR REPLACE TEMPORARY TABLE {q(TMP)} {_SCRATCH} AS "  # noqa: S608
                 f"SELECT {', '.join(cols)} FROM {real} LIMIT 0")]


# what pymysql's escape_string rewrites (its _escape_table), backslash first
_ESCAPES = (("\\", "\\\\"), ("\0", "\\0"), ("\n", "\\n"), ("\r", "\\r"),
            ("\032", "\\Z"), ("'", "\\'"), ('"', '\\"'))
_MAX_STATEMENT = 1024000  # bytes per INSERT, where pymysql's executemany cuts too


class Literals:
    """SQL literals exactly as pymysql's conn.escape makes them, with str.replace
    for strings: pymysql's str.translate costs ~40 ns a character, 1.3 s of CPU
    for the 34 MB of new info caches of a 10,000-instance cloud. Made on the
    connection's thread; then usable on another (it only reads settings fixed
    for the session)."""

    __slots__ = ("escape", "backslashes")

    def __init__(self, conn) -> None:
        self.escape = conn.escape
        self.backslashes = not conn.server_status & \
            SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES

    def __call__(self, value: Any) -> str:
        if type(value) is str and self.backslashes:
            for char, escaped in _ESCAPES:
                if char in value:
                    value = value.replace(char, escaped)
            return "'" + value + "'"
        return self.escape(value)


def _fill(lit: Literals, n_cols: int, rows: list[tuple]) -> list[Stmt]:
    """Multi-row INSERTs of at most _MAX_STATEMENT bytes, as executemany sends them."""
    head = f"INSERT INTO {q(TMP)} VALUES "  # noqa: S608
    out: list[Stmt] = []
    parts: list[str] = []
    size = len(head)
    for row in rows:
        if len(row) != n_cols:
            raise ValueError(f"{len(row)} values for {n_cols} columns")
        text = "(" + ",".join([lit(v) for v in row]) + ")"
        n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))
        if parts and size + n + 1 > _MAX_STATEMENT:
            out.append(Stmt(head + ",".join(parts)))
            parts, size = [], len(head)
        parts.append(text)
        size += n + 1
    if parts:
        out.append(Stmt(head + ",".join(parts)))
    return out


def _join(keys: Sequence[str]) -> str:
    return " AND ".join(f"t.{q(k)} = c.{q('k_' + k)}" for k in keys)


def update_rows(cloud, cur, db: str, table: str, keys: list[dict], values: list[dict],
                cols: Sequence[str]) -> int:
    """UPDATE the rows named by keys (current primary key) to values[i][col]."""
    pk = tables.pk(db, table)
    tables.check_columns(db, table, cols)
    real = _real(cloud, db, table)
    run(cur, _tmp(real, pk, cols) + _fill(
        Literals(cur.connection), len(pk) + len(cols),
        [tuple(k[c] for c in pk) + tuple(v[c] for c in cols)
         for k, v in zip(keys, values, strict=True)]))
    sets = ", ".join(f"t.{q(c)} = c.{q('v_' + c)}" for c in cols)
    return cur.execute(f"UPDATE {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                       f"SET {sets}")


def delete_rows(cloud, cur, db: str, table: str, keys: list[dict]) -> int:
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    run(cur, _tmp(real, pk, ()) + _fill(Literals(cur.connection), len(pk),
                                        [tuple(k[c] for c in pk) for k in keys]))
    return cur.execute(f"DELETE t FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}")


def prepare_insert(cloud, db: str, table: str, rows: list[dict],
                   whole_row: bool = False) -> list[Stmt]:
    """INSERT rows; whole_row (a restored before-image) may hold any column of the table."""
    cols = list(rows[0])
    if not whole_row:
        tables.check_columns(db, table, cols)
    elif not tables.whitelisted(db, table):
        raise ValueError(f"{db}.{table} is not whitelisted")
    real = _real(cloud, db, table)
    names = ", ".join(q(c) for c in cols)
    marks = ", ".join(["%s"] * len(cols))
    return [Stmt(f"INSERT INTO {real} ({names}) VALUES ({marks})",  # noqa: S608
                 many=[tuple(r[c] for c in cols) for r in rows[i:i + 5000]])
            for i in range(0, len(rows), 5000)]


def insert_rows(cloud, cur, db: str, table: str, rows: list[dict],
                whole_row: bool = False) -> None:
    run(cur, prepare_insert(cloud, db, table, rows, whole_row))


def checksum(cloud, cur, db: str, table: str) -> Any:
    cur.execute(f"CHECKSUM TABLE {_real(cloud, db, table)}")
    row = cur.fetchone()
    return row[1] if row else None


_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def _lit(name: str) -> str:
    """A column name as a JSON_OBJECT key literal; names come from the whitelist or the
    server's own information_schema and are checked to be plain identifiers."""
    if not _IDENT.match(name):
        raise ValueError(f"refusing column name {name!r}")
    return f"'{name}'"


_COLUMNS: dict[tuple[str, str], list[str]] = {}


def columns(cloud, db: str, table: str) -> list[str]:
    key = (cloud.databases[db], table)
    if key not in _COLUMNS:
        rows = cloud.rows("SELECT column_name AS c FROM information_schema.columns WHERE "
                          "table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                          [cloud.databases[db], table])
        _COLUMNS[key] = [r["c"] for r in rows]
    return _COLUMNS[key]


_UNSET = object()


def _same_in_all(values) -> Any:
    """The value every item has (type included: 1 is not True), else _UNSET."""
    it = iter(values)
    first = next(it, _UNSET)
    for v in it:
        if type(v) is not type(first) or v != first:
            return _UNSET
    return first


_UTF8 = ("utf8mb3", "utf8", "utf8mb4")
_UTF8_COLUMNS: dict[tuple[str, str], frozenset[str]] = {}


def utf8_columns(cloud, db: str, table: str) -> frozenset[str]:
    """The table's columns whose text is held as UTF-8 (utf8mb3, utf8mb4): MD5 of
    their bytes is already the MD5 of the value's UTF-8, with no CONVERT, a copy of
    every long value (network_info: 0.1 s of server time for 10,000 info caches)."""
    key = (cloud.databases[db], table)
    if key not in _UTF8_COLUMNS:
        rows = cloud.rows("SELECT column_name AS c, character_set_name AS cs FROM "
                          "information_schema.columns WHERE table_schema = %s AND "
                          "table_name = %s", [cloud.databases[db], table])
        _UTF8_COLUMNS[key] = frozenset(r["c"] for r in rows if r["cs"] in _UTF8)
    return _UTF8_COLUMNS[key]


_MOVABLE: dict[tuple[str, str], list[str] | None] = {}


def movable_columns(cloud, db: str, table: str) -> list[str] | None:
    """The table's columns when an update that changes a row's primary key may be
    made as an INSERT of the moved row and a DELETE of the old one; None otherwise.
    InnoDB moves such a row all the same (a primary key is where a row is stored),
    but a multi-table UPDATE also buffers each row and reads it again. Only where the
    two are the same to everything else: no foreign key refers to the table (the
    DELETE would fire its ON DELETE), no unique key but the primary one (a moved row
    inserted beside its old self would collide there), no trigger, no generated
    column, no column an UPDATE sets by itself (ON UPDATE)."""
    real = cloud.databases[db]
    key = (real, table)
    if key not in _MOVABLE:
        cols = cloud.rows("SELECT column_name AS c, extra AS x, is_generated AS g FROM "
                          "information_schema.columns WHERE table_schema = %s AND "
                          "table_name = %s ORDER BY ordinal_position", [real, table])
        refs = cloud.rows("SELECT 1 AS x FROM information_schema.referential_constraints "
                          "WHERE unique_constraint_schema = %s AND referenced_table_name = %s "
                          "LIMIT 1", [real, table])
        trig = cloud.rows("SELECT 1 AS x FROM information_schema.triggers WHERE "
                          "event_object_schema = %s AND event_object_table = %s LIMIT 1",
                          [real, table])
        unique = cloud.rows("SELECT 1 AS x FROM information_schema.statistics WHERE "
                            "table_schema = %s AND table_name = %s AND non_unique = 0 AND "
                            "index_name <> 'PRIMARY' LIMIT 1", [real, table])
        plain = all(r["g"] == "NEVER" and "on update" not in (r["x"] or "").lower()
                    for r in cols)
        _MOVABLE[key] = [r["c"] for r in cols] if cols and plain and not refs and \
            not trig and not unique else None
    return _MOVABLE[key]


def _md5(expr: str, utf8: bool) -> str:
    """How the server computes md5_hex of a text: over its UTF-8 bytes."""
    return f"MD5({expr})" if utf8 else f"MD5(CONVERT({expr} USING utf8mb4))"


def prepare_update(cloud, lit: Literals, db: str, table: str, keys: list[dict],
                   befores: list[dict], afters: list[dict], cols: Sequence[str],
                   image: tuple, utf8: Collection[str] = (),
                   movable: Sequence[str] | None = None) -> list[Stmt]:
    """Check the rows still hold the planned old values (locking them), copy their
    before-images into the journal server-side, then update: no row data makes a
    round trip through the client except the new values.

    A new or old value that is the same in every row of the group (vif_type, the
    ovs vif_details, a volume's new host) travels once, as a parameter, instead
    of once per row in the temporary table. ``utf8``: the columns ``utf8_columns``
    names (read on the connection's thread); the others are converted before MD5.
    ``movable``: what ``movable_columns`` answered for the table; with it, rows whose
    primary key changes are moved by INSERT and DELETE instead of an UPDATE."""
    pk = tables.pk(db, table)
    tables.check_columns(db, table, cols)
    real = _real(cloud, db, table)
    # long old values (network_info, vif_details) are compared by digest: half the bytes
    hashed = {c for c in cols if any(isinstance(b.get(c), str) and
                                     (len(b[c]) > HASH_OVER or type(b[c]) is Digest)
                                     for b in befores)}

    if not len(keys) == len(befores) == len(afters):
        raise ValueError("keys, befores and afters differ in length")
    # small rows share one journal row (see PACKED); a group too big for one is cut
    per = None if hashed or len(keys) < 2 else _pack_rows(pk, cols, keys, befores, afters)
    if per is not None and len(keys) > per:
        return [s for a in range(0, len(keys), per) for s in prepare_update(
            cloud, lit, db, table, keys[a:a + per], befores[a:a + per], afters[a:a + per],
            cols, image, utf8, movable)]
    # a key column whose old value is the key itself (a binding's host) is checked by
    # the join already: no guard, no old-value column for it
    checked = [c for c in cols if not (c in pk and c not in hashed and all(
        type(b[c]) is type(k[c]) and b[c] == k[c] for b, k in zip(befores, keys, strict=True)))]
    # column by column: the temporary table's rows are zip()ped from these at the end
    news = {c: [a[c] for a in afters] for c in cols}
    olds = {c: ([b[c] if b[c] is None or type(b[c]) is Digest else md5_hex(b[c])
                 for b in befores] if c in hashed else [b[c] for b in befores])
            for c in checked}
    same_new = {c: v for c in cols if (v := _same_in_all(news[c])) is not _UNSET}
    same_old = {c: v for c in checked if (v := _same_in_all(olds[c])) is not _UNSET}
    var_new = [c for c in cols if c not in same_new]
    var_old = [c for c in checked if c not in same_old]
    stmts = _tmp(real, pk, var_new, var_old) + _fill(
        lit, len(pk) + len(var_new) + len(var_old),
        list(zip(*([[k[c] for k in keys] for c in pk] + [news[c] for c in var_new] +
                   [olds[c] for c in var_old]), strict=True)))

    def new_value(c: str, params: list) -> str:
        if c in same_new:
            params.append(same_new[c])
            return "%s"
        return f"c.{q('v_' + c)}"
    key_params: list = []
    key_json = ", ".join(f"{_lit(k)}, " + (new_value(k, key_params) if k in cols
                                           else f"c.{q('k_' + k)}") for k in pk)
    guard_params: list = []
    guards = ["TRUE"]
    flags: list[str] = []  # one guard per checked column, for naming a refused row
    for c in checked:
        now = _md5(f"t.{q(c)}", c in utf8) if c in hashed else f"t.{q(c)}"
        if c in same_old:
            guard_params.append(same_old[c])
            flags.append(f"{now} <=> %s")
        else:
            flags.append(f"{now} <=> c.{q('o_' + c)}")
    guards += flags
    before_json = ", ".join(f"{_lit(c)}, t.{q(c)}" for c in cols)
    # the after-image, what rollback checks a row still holds: long new values as MD5
    long_new = {c for c in cols if any(isinstance(v, str) and len(v) > HASH_OVER
                                       for v in news[c])}
    after_params: list = []

    def digest(c: str) -> str:
        if c in same_new:  # one value for the group: its MD5 made here, not once per row
            after_params.append(md5_hex(same_new[c]))
            return "%s"
        return _md5(new_value(c, after_params), c in utf8)
    after_json = ", ".join(
        f"{_lit(c)}, " + (f"JSON_OBJECT('$md5', {digest(c)})" if c in long_new
                          else new_value(c, after_params))
        for c in cols)
    journal_t, args = image
    stale = (f"{db}.{table}: {{missing}} of {len(keys)} rows changed since they were "
             "planned{rows}; run apply again to re-plan")
    diagnose = _diagnose(real, pk, flags, guard_params, checked)
    if per is not None:
        stmts.append(_packed_image(journal_t, args, real, pk, cols, same_new, var_new, long_new,
                                   utf8, guards, guard_params, len(keys), stale, diagnose))
    else:
        # one statement copies the before-images of the rows still as planned and locks
        # them; a row someone changed since the plan is missing from the count
        stmts.append(Stmt(
            f"INSERT INTO {journal_t} (run_id, batch, db, tbl, op, key_after, "  # noqa: S608
            f"row_before, cols, row_after) SELECT %s, %s, %s, %s, 'update', "
            f"JSON_OBJECT({key_json}), JSON_OBJECT({before_json}), %s, "
            f"JSON_OBJECT({after_json}) FROM {real} t JOIN {q(TMP)} c ON {_join(pk)} "
            f"WHERE {' AND '.join(guards)} FOR UPDATE",
            list(args[:4]) + key_params + [args[4]] + after_params + guard_params,
            expect=len(keys), stale=stale, diagnose=diagnose))
    set_params: list = []
    if movable and _moves(pk, cols, keys, afters):
        # the moved rows first (no row of the group is at a new key: see _moves), then
        # the old ones go; every row is locked and checked by the image above
        names = list(movable)
        select = ", ".join(new_value(c, set_params) if c in cols else f"t.{q(c)}"
                           for c in names)
        stmts.append(Stmt(f"INSERT INTO {real} ({', '.join(q(c) for c in names)}) "  # noqa: S608
                          f"SELECT {select} FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}",
                          set_params or None, expect=len(keys),
                          stale=f"{db}.{table}: {{got}} rows moved, {len(keys)} planned"))
        stmts.append(Stmt(f"DELETE t FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}",  # noqa: S608
                          expect=len(keys),
                          stale=f"{db}.{table}: {{got}} rows moved, {len(keys)} planned"))
        return stmts
    sets = ", ".join(f"t.{q(c)} = {new_value(c, set_params)}" for c in cols)
    stmts.append(Stmt(f"UPDATE {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                      f"SET {sets}", set_params or None, expect=len(keys),
                      stale=f"{db}.{table}: {{got}} rows changed, {len(keys)} planned"))
    return stmts


def _as_server_sees(values: list) -> list | None:
    """A key column's values as the server's collation compares them, or as near as
    can be told here: printable ASCII case and trailing spaces aside (``_ci``, PAD
    SPACE), other scalars as they are; None for any other text."""
    if not any(type(v) is str for v in values):
        return values
    if not all(type(v) is str for v in values):
        return None
    text = "".join(values)
    if not (text.isascii() and text.isprintable()):
        return None
    return [v.rstrip(" ").lower() for v in values]


def _moves(pk: Sequence[str], cols: Sequence[str], keys: list[dict],
           afters: list[dict]) -> bool:
    """Whether the group changes primary keys and no row's new key is, to the server,
    any row's old one: a chain of renames or a change of case only, which only an
    UPDATE (in the right order) can make."""
    if not any(c in pk for c in cols):
        return False
    was = [_as_server_sees([k[c] for k in keys]) for c in pk]
    new = [_as_server_sees([a[c] for a in afters]) if c in cols else was[i]
           for i, c in enumerate(pk)]
    if any(v is None for v in was + new):
        return False
    return set(zip(*was, strict=True)).isdisjoint(zip(*new, strict=True))


# A group of small rows (no long old value) is journaled as one row, op PACKED: its
# key_after a header (the key columns, the new values every row shares, which new
# values are held as MD5), its row_before a JSON array with one array per row: the
# key after the update, the old values of cols, the other new values. One journal
# row instead of thousands costs the server a third of the time per changed row.
# Older pacestacks do not know the op and refuse the run with nothing changed.
PACKED = "updates"
PACK_CHARS = 1_000_000  # about how much a packed image holds: rollback reads it whole
_PACK_KEY = 255  # characters: a longer key value leaves its group journaled row by row
_PACKABLE = frozenset((str, type(None), bool, int, float, decimal.Decimal, datetime.datetime,
                       datetime.date, datetime.timedelta))


def _pack_rows(pk: Sequence[str], cols: Sequence[str], keys: list[dict],
               befores: list[dict], afters: list[dict]) -> int | None:
    """How many of the rows one packed image holds at most (each counted as wide as
    the widest); None when a value could be large or is not a plain scalar (bytes, a
    long key): row by row then. Column by column, as the group's values are many."""
    width = 0
    for rows, names, most in ((keys, pk, _PACK_KEY), (befores, cols, HASH_OVER),
                              (afters, cols, None)):
        for c in names:
            values = [r[c] for r in rows]
            kinds = set(map(type, values))
            if not kinds <= _PACKABLE:
                return None
            n = 24
            if str in kinds:
                longest = max(len(v) for v in values if type(v) is str)
                if most is not None and longest > most:
                    return None
                n = max(n, min(longest, HASH_OVER) + 4)  # a long new value: its MD5
            width += n
    return max(1, PACK_CHARS // width)


def _packed_image(journal_t: str, args: Sequence, real: str, pk: Sequence[str],
                  cols: Sequence[str], same_new: dict, var_new: Sequence[str],
                  long_new: Collection[str], utf8: Collection[str], guards: Sequence[str],
                  guard_params: Sequence, n: int, stale: str, diagnose: Diagnose) -> Stmt:
    """The one INSERT journaling a group as a PACKED row (see PACKED); it inserts
    nothing unless every row is still as planned (HAVING COUNT)."""
    from pacestack.migrate.journal import digest_of, dumps

    header = dumps({"pk": list(pk), "vary": list(var_new), "md5": sorted(long_new),
                    "same": {c: digest_of(v) for c, v in same_new.items()}})
    key_params: list = []
    row = []
    for k in pk:
        if k in same_new:
            key_params.append(same_new[k])
            row.append("%s")
        else:
            row.append(f"c.{q('v_' + k)}" if k in cols else f"c.{q('k_' + k)}")
    row += [f"t.{q(c)}" for c in cols]
    row += [_md5(f"c.{q('v_' + c)}", c in utf8) if c in long_new else f"c.{q('v_' + c)}"
            for c in var_new]
    return Stmt(
        # the aggregate's length limit is the session's group_concat_max_len (1 MB by
        # default): raised for this statement so it can never cut an image short
        "SET STATEMENT group_concat_max_len = 4294967295 FOR "  # noqa: S608
        f"INSERT INTO {journal_t} (run_id, batch, db, tbl, op, key_after, "
        f"row_before, cols) SELECT %s, %s, %s, %s, '{PACKED}', %s, "
        f"JSON_ARRAYAGG(JSON_ARRAY({', '.join(row)})), %s "
        f"FROM {real} t JOIN {q(TMP)} c ON {_join(pk)} WHERE {' AND '.join(guards)} "
        "HAVING COUNT(*) = %s FOR UPDATE",
        list(args[:4]) + [header] + key_params + [args[4]] + list(guard_params) + [n],
        expect=1, stale=stale, diagnose=dataclasses.replace(diagnose, rows=True))


def _diagnose(real: str, pk: Sequence[str], flags: Sequence[str], params: Sequence,
              checked: Sequence[str]) -> Diagnose:
    """The query naming the first rows of the temporary table a guard refuses: gone
    (no row with that key) or a checked column no longer as planned."""
    select = ", ".join([f"c.{q('k_' + k)}" for k in pk] + [f"t.{q(pk[0])} IS NULL"] +
                       [f"({f})" for f in flags])
    where = f"t.{q(pk[0])} IS NULL" + (f" OR NOT ({' AND '.join(flags)})" if flags else "")
    return Diagnose(f"SELECT {select} FROM {q(TMP)} c LEFT JOIN {real} t "  # noqa: S608
                    f"ON {_join(pk)} WHERE {where} LIMIT {_NAMED}",
                    list(params) * 2 if flags else [], list(pk), list(checked),
                    f"SELECT COUNT(*) FROM {q(TMP)} c LEFT JOIN {real} t "  # noqa: S608
                    f"ON {_join(pk)} WHERE {where}", list(params) if flags else [])


def prepare_delete(cloud, lit: Literals, db: str, table: str, keys: list[dict],
                   image: tuple, row_columns: Sequence[str]) -> list[Stmt]:
    """Lock the rows (all must still be there), journal them whole (``row_columns``:
    the table's columns, from ``columns`` on the connection's thread), delete them."""
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    stmts = _tmp(real, pk, ()) + _fill(lit, len(pk), [tuple(k[c] for c in pk) for k in keys])
    stmts.append(Stmt(f"SELECT COUNT(*) FROM {real} t JOIN {q(TMP)} c "  # noqa: S608
                      f"ON {_join(pk)} FOR UPDATE", expect=len(keys), count=True,
                      stale=f"{db}.{table}: {{missing}} of {len(keys)} rows are gone since "
                            "they were planned{rows}; run apply again to re-plan",
                      diagnose=_diagnose(real, pk, [], [], [])))
    key_json = ", ".join(f"{_lit(k)}, t.{q(k)}" for k in pk)
    row_json = ", ".join(f"{_lit(c)}, t.{q(c)}" for c in row_columns)
    journal_t, args = image
    stmts.append(Stmt(
        f"INSERT INTO {journal_t} (run_id, batch, db, tbl, op, key_after, "  # noqa: S608
        f"row_before, cols) SELECT %s, %s, %s, %s, 'delete', JSON_OBJECT({key_json}), "
        f"JSON_OBJECT({row_json}), %s FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}", args))
    stmts.append(Stmt(f"DELETE t FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}"))
    return stmts


@dataclasses.dataclass
class Drift:
    """A row that no longer holds what a run wrote. ``state``: changed (``columns``:
    the ones that differ, ``now``: their values, long texts as MD5), gone (the row
    is deleted), back (a row the run deleted is there again)."""
    index: int
    state: str
    columns: list[str]
    now: dict[str, Any]


def drifted(cloud, cur, db: str, table: str, keys: list[dict], afters: list[dict] | None,
            cols: Sequence[str], hashed: Iterable[str] = (), lock: bool = False) -> list[Drift]:
    """Which rows no longer hold what a run wrote, in one join: ``afters[i][col]``
    is what it wrote (for ``hashed`` columns its MD5); ``afters`` None: the run
    deleted these rows, and any that is there again is listed. ``lock``: lock the
    rows found (FOR UPDATE) so none changes before the transaction ends."""
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    cols = list(cols) if afters is not None else []
    hashed = set(hashed)
    tmp_cols = ["CAST(0 AS UNSIGNED) AS `n`"] + [f"{q(k)} AS {q('k_' + k)}" for k in pk] + \
        [f"{q(c)} AS {q('e_' + c)}" for c in cols]
    rows = [(i,) + tuple(k[c] for c in pk) + (tuple(afters[i][c] for c in cols) if cols else ())
            for i, k in enumerate(keys)]
    run(cur, [Stmt(f"CREATE OR REPLACE TEMPORARY TABLE {q(TMP)} {_SCRATCH} AS "  # noqa: S608
                   f"SELECT {', '.join(tmp_cols)} FROM {real} LIMIT 0")]
        + _fill(Literals(cur.connection), 1 + len(pk) + len(cols), rows))
    for_update = " FOR UPDATE" if lock else ""
    if afters is None:
        cur.execute(f"SELECT c.`n` FROM {q(TMP)} c JOIN {real} t ON {_join(pk)}"  # noqa: S608
                    f"{for_update}")
        return [Drift(int(r[0]), "back", [], {}) for r in cur.fetchall()]
    utf8 = utf8_columns(cloud, db, table) if hashed else frozenset()
    now = {c: _md5(f"t.{q(c)}", c in utf8) if c in hashed else f"t.{q(c)}" for c in cols}
    same = {c: f"({now[c]} <=> c.{q('e_' + c)})" for c in cols}
    missing = f"t.{q(pk[0])} IS NULL"
    select = ", ".join(["c.`n`", missing] + [now[c] for c in cols] + [same[c] for c in cols])
    where = missing + (f" OR NOT ({' AND '.join(same.values())})" if cols else "")
    cur.execute(f"SELECT {select} FROM {q(TMP)} c LEFT JOIN {real} t ON {_join(pk)} "  # noqa: S608
                f"WHERE {where}{for_update}")
    out = []
    for r in cur.fetchall():
        if r[1]:
            out.append(Drift(int(r[0]), "gone", [], {}))
            continue
        values, flags = r[2:2 + len(cols)], r[2 + len(cols):]
        differ = [c for c, ok in zip(cols, flags, strict=True) if not ok]
        out.append(Drift(int(r[0]), "changed", differ,
                         {c: v for c, v in zip(cols, values, strict=True) if c in differ}))
    return out
