"""batch.Literals must give exactly the text pymysql's own escaping gives: it only
replaces str.translate with str.replace for speed (info caches are megabytes)."""

from __future__ import annotations

import datetime

import pymysql
from pacestack.migrate import batch
from pymysql.constants import SERVER_STATUS

HOSTILE = ["", "plain", "it's", 'say "hi"', "back\\slash", "nul\0byte", "line\nbreak\r\n",
           "ctrl-z\032", "\\'; DROP TABLE x; --", "ünïcødé ✓ 🐍", "\\\\''\"\"\0\0", "\t\b\x1b",
           '[{"id": "p1", "details": {"port_filter": true}}]' * 50, "\udcff surrogate"]


def _conn(status: int) -> pymysql.connections.Connection:
    conn = pymysql.connections.Connection(defer_connect=True, charset="utf8mb4")
    conn.server_status = status
    return conn


def test_literal_is_pymysql_escape():
    for status in (0, SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES):
        conn = _conn(status)
        literal = batch.Literals(conn)
        values = HOSTILE + [None, 0, -7, 3.5, True, b"\0bin'", datetime.datetime(2026, 11, 26, 1)]
        for v in values:
            assert literal(v) == conn.escape(v), repr(v)


def test_fill_cuts_statements_like_executemany():
    rows = [(i, "x" * 3000) for i in range(1000)]
    stmts = batch._fill(batch.Literals(_conn(0)), 2, rows)
    assert all(s.params is None and s.many is None for s in stmts)
    sent = [s.sql for s in stmts]
    assert len(sent) > 1 and all(len(s.encode()) <= batch._MAX_STATEMENT for s in sent)
    assert sum(s.count("'xxx") for s in sent) == 1000
