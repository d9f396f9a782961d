"""Set-based statements over many rows: the only place where SQL text is composed.

Identifiers come from tables.TABLES (whitelisted, quoted); every value travels
as a parameter. A group of changes becomes: one temporary table of keys and
new values filled with executemany, one ``SELECT ... FOR UPDATE`` for the
before-images, one ``UPDATE ... JOIN`` (or ``DELETE ... JOIN``). The new values
sit in the temporary table, so MariaDB's left-to-right SET order cannot make
one assignment see another's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pacestack.migrate import tables
from pacestack.migrate.tables import q

from pacestack.errors import RuntimeFailure

TMP = "_pacestack_rows"


class Stale(RuntimeFailure):
    """The rows are not as the plan saw them: someone else changed them."""


def _real(cloud, db: str, table: str) -> str:
    return cloud.t(db, table)


def _create_tmp(cur, real: str, keys: Sequence[str], vals: Sequence[str]) -> None:
    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {q(TMP)}")
    cols = [f"{q(k)} AS {q('k_' + k)}" for k in keys] + [f"{q(v)} AS {q('v_' + v)}"
                                                          for v in vals]
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


def locked_rows(cloud, cur, db: str, table: str, keys: list[dict]) -> list[dict]:
    """Current full rows for these keys, locked until commit."""
    pk = tables.pk(db, table)
    real = _real(cloud, db, table)
    _create_tmp(cur, real, pk, ())
    _fill_tmp(cur, len(pk), [tuple(k[c] for c in pk) for k in keys])
    cur.execute(f"SELECT t.* FROM {real} t JOIN {q(TMP)} c ON {_join(pk)} "  # noqa: S608
                "FOR UPDATE")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


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
