"""Set-based statements over many rows: the only place where SQL text is composed.

Identifiers come from tables.TABLES (whitelisted, quoted); every value travels
as a parameter. A group of changes becomes: one temporary table of keys and
new values filled with executemany, one ``SELECT ... FOR UPDATE`` for the
before-images, one ``UPDATE ... JOIN`` (or ``DELETE ... JOIN``). The new values
sit in the temporary table, so MariaDB's left-to-right SET order cannot make
one assignment see another's result.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from pacestack.migrate import tables
from pacestack.migrate.tables import q

from pacestack.errors import RuntimeFailure

TMP = "_pacestack_rows"
HASH_OVER = 64  # characters: longer old values are checked by MD5


def _md5(value: str) -> str:
    return hashlib.md5(value.encode("utf-8"), usedforsecurity=False).hexdigest()


class Stale(RuntimeFailure):
    """The rows are not as the plan saw them: someone else changed them."""


def _real(cloud, db: str, table: str) -> str:
    return cloud.t(db, table)


def _create_tmp(cur, real: str, keys: Sequence[str], vals: Sequence[str],
                olds: Sequence[str] = ()) -> None:
    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {q(TMP)}")
    cols = [f"{q(k)} AS {q('k_' + k)}" for k in keys] + [f"{q(v)} AS {q('v_' + v)}"
                                                          for v in vals] + \
        [f"{q(o)} AS {q('o_' + o)}" for o in olds]
    # column types copied from the real table; no rows copied
    cur.execute(f"CREATE TEMPORARY TABLE {q(TMP)} AS SELECT {', '.join(cols)} "  # noqa: S608
                f"FROM {real} LIMIT 0")


def _fill_tmp(cur, n_cols: int, rows: list[tuple]) -> None:
    marks = ", ".join(["%s"] * n_cols)
    for i in range(0, len(rows), 5000):
        cur.executemany(f"INSERT INTO {q(TMP)} VALUES ({marks})",  # noqa: S608
                        rows[i:i + 5000])


def _join(keys: Sequence[str]) -> str:
    return " AND ".join(f"t.{q(k)} = c.{q('k_' + k)}" for k in keys)


def update_rows(cloud, cur, db: str, table: str, keys: list[dict], values: list[dict],
                cols: Sequence[str]) -> int:
    """UPDATE the rows named by keys (current primary key) to values[i][col]."""
    pk = tables.pk(db, table)
    tables.check_columns(db, table, cols)
    real = _real(cloud, db, table)
    _create_tmp(cur, real, pk, cols)
    _fill_tmp(cur, len(pk) + len(cols),
              [tuple(k[c] for c in pk) + tuple(v[c] for c in cols)
               for k, v in zip(keys, values, strict=True)])
    sets = ", ".join(f"t.{q(c)} = c.{q('v_' + c)}" for c in cols)
    return cur.execute(f"UPDATE {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                       f"SET {sets}")


def delete_rows(cloud, cur, db: str, table: str, keys: list[dict]) -> int:
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    _create_tmp(cur, real, pk, ())
    _fill_tmp(cur, len(pk), [tuple(k[c] for c in pk) for k in keys])
    return cur.execute(f"DELETE t FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}")


def insert_rows(cloud, cur, db: str, table: str, rows: list[dict],
                whole_row: bool = False) -> int:
    """INSERT rows; whole_row (a restored before-image) may hold any column of the table."""
    cols = list(rows[0])
    if not whole_row:
        tables.check_columns(db, table, cols)
    elif (db, table) not in tables.TABLES:
        raise ValueError(f"{db}.{table} is not whitelisted")
    real = _real(cloud, db, table)
    names = ", ".join(q(c) for c in cols)
    marks = ", ".join(["%s"] * len(cols))
    n = 0
    for i in range(0, len(rows), 5000):
        n += cur.executemany(f"INSERT INTO {real} ({names}) VALUES ({marks})",  # noqa: S608
                             [tuple(r[c] for c in cols) for r in rows[i:i + 5000]])
    return n


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


def journaled_update(cloud, cur, db: str, table: str, keys: list[dict], befores: list[dict],
                     afters: list[dict], cols: Sequence[str], image: tuple) -> None:
    """Check the rows still hold the planned old values (locking them), copy their
    before-images into the journal server-side, then update: no row data makes a
    round trip through the client except the new values."""
    pk = tables.pk(db, table)
    tables.check_columns(db, table, cols)
    real = _real(cloud, db, table)
    _create_tmp(cur, real, pk, cols, cols)
    # long old values (network_info, vif_details) are compared by digest: half the bytes
    hashed = {c for c in cols if any(isinstance(b.get(c), str) and len(b[c]) > HASH_OVER
                                     for b in befores)}

    def old(b: dict, c: str):
        v = b[c]
        return _md5(v) if c in hashed and v is not None else v
    _fill_tmp(cur, len(pk) + 2 * len(cols),
              [tuple(k[c] for c in pk) + tuple(a[c] for c in cols) +
               tuple(old(b, c) for c in cols)
               for k, b, a in zip(keys, befores, afters, strict=True)])
    guard = " AND ".join(
        (f"MD5(CONVERT(t.{q(c)} USING utf8mb4)) <=> c.{q('o_' + c)}" if c in hashed
         else f"t.{q(c)} <=> c.{q('o_' + c)}") for c in cols)
    key_json = ", ".join(f"{_lit(k)}, c.{q(('v_' if k in cols else 'k_') + k)}" for k in pk)
    before_json = ", ".join(f"{_lit(c)}, t.{q(c)}" for c in cols)
    journal_t, args = image
    # one statement copies the before-images of the rows still as planned and locks them;
    # a row someone changed since the plan is missing from the count
    found = cur.execute(
        f"INSERT INTO {journal_t} (run_id, batch, db, tbl, op, key_after, "  # noqa: S608
        f"row_before, cols) SELECT %s, %s, %s, %s, 'update', JSON_OBJECT({key_json}), "
        f"JSON_OBJECT({before_json}), %s FROM {real} t JOIN {q(TMP)} c ON {_join(pk)} "
        f"WHERE {guard} FOR UPDATE", args)
    if found != len(keys):
        raise Stale(f"{db}.{table}: {len(keys) - found} of {len(keys)} rows changed since "
                    "they were planned; run apply again to re-plan")
    sets = ", ".join(f"t.{q(c)} = c.{q('v_' + c)}" for c in cols)
    n = cur.execute(f"UPDATE {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                    f"SET {sets}")
    if n != len(keys):
        raise Stale(f"{db}.{table}: {n} rows changed, {len(keys)} planned")


def journaled_delete(cloud, cur, db: str, table: str, keys: list[dict], image: tuple) -> None:
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    _create_tmp(cur, real, pk, ())
    _fill_tmp(cur, len(pk), [tuple(k[c] for c in pk) for k in keys])
    cur.execute(f"SELECT COUNT(*) FROM {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                "FOR UPDATE")
    found = cur.fetchone()[0]
    if found != len(keys):
        raise Stale(f"{db}.{table}: {len(keys) - found} of {len(keys)} rows are gone since "
                    "they were planned; run apply again to re-plan")
    key_json = ", ".join(f"{_lit(k)}, t.{q(k)}" for k in pk)
    row_json = ", ".join(f"{_lit(c)}, t.{q(c)}" for c in columns(cloud, db, table))
    journal_t, args = image
    cur.execute(f"INSERT INTO {journal_t} (run_id, batch, db, tbl, op, key_after, "  # noqa: S608
                f"row_before, cols) SELECT %s, %s, %s, %s, 'delete', JSON_OBJECT({key_json}), "
                f"JSON_OBJECT({row_json}), %s FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}",
                args)
    cur.execute(f"DELETE t FROM {real} t JOIN {q(TMP)} c ON {_join(pk)}")
