"""The run lock: one row in the journal database that keeps two runs (apply,
rollback, a rehome's journaled write) apart on every server of a Galera cluster.

A server-side lock (GET_LOCK) holds on one node only, so an apply through one
node and a rollback through another could interleave. The row is an InnoDB
row: taking it is a conditional UPDATE (``token IS NULL``) committed in its own
transaction on its own connection, so two nodes' attempts are both written to
the same row and Galera's certification lets exactly one commit; the other
fails (deadlock error) or finds the row taken, and refuses.

The holder refreshes ``heartbeat`` from a thread. A holder killed with SIGKILL
leaves its row behind; once its heartbeat is older than ``stale_after`` seconds,
the refusal says it is stale, and ``--break-lock HOST:PID`` (naming that
holder) takes it over. The same command re-run on the host where its killed
holder ran (its process is gone: pid and process start time) takes it over
without the flag: re-running a step after a crash just works. A live holder's lock is never
broken, and a holder that finds its row taken over stops before its next batch
(``check``).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import threading
import time
import uuid
from typing import Any

from pacestack.migrate.tables import q

from pacestack import db
from pacestack.errors import ConfigError, RuntimeFailure

NAME = "migrate"
HEARTBEAT_SECONDS = 2.0
STALE_AFTER = 30.0  # seconds without a heartbeat before a lock may be broken

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {table} ("
    " name VARCHAR(32) NOT NULL PRIMARY KEY,"
    " token CHAR(36) NULL, owner VARCHAR(64) NULL, host VARCHAR(255) NULL, pid INT NULL,"
    " command VARCHAR(32) NULL, started_at DATETIME(6) NULL, heartbeat DATETIME(6) NULL,"
    " pid_start BIGINT NULL"  # the process's start time (clock ticks after boot)
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
)


def process_start(pid: int) -> int | None:
    """When the process started (/proc/PID/stat field 22), None when it is gone: a
    pid reused by another process has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return int(fields[19]) if len(fields) > 19 else None


def _dead(host: str, pid: int, pid_start: int | None) -> bool:
    """Provably gone: it ran here and its process is not running any more."""
    if host != socket.gethostname():
        return False
    now = process_start(pid)
    return now is None or (pid_start is not None and now != pid_start)

# ER_LOCK_DEADLOCK: Galera's certification failure (another node's attempt won)
_LOST_RACE = (1213,)


def _lost_race(err: BaseException) -> bool:
    import pymysql

    return isinstance(err, pymysql.err.OperationalError) and bool(err.args) and \
        err.args[0] in _LOST_RACE


@dataclasses.dataclass
class Holder:
    owner: str
    host: str
    pid: int
    command: str
    started_at: Any
    heartbeat_age: float  # seconds since its last heartbeat, by the server's clock
    stale: bool
    dead: bool = False  # ran on this host, its process is gone

    @property
    def ident(self) -> str:
        """What --break-lock names."""
        return f"{self.host}:{self.pid}"

    def describe(self) -> str:
        age = f"last heartbeat {self.heartbeat_age:.0f} s ago"
        if self.dead:
            state = f"stale ({age}, its process is gone); run again with --break-lock " \
                f"{self.ident}"
        elif self.stale:
            state = f"stale ({age}); if that process is gone, run again with --break-lock " \
                f"{self.ident}"
        else:
            state = f"live, {age}; wait for it to finish"
        return (f"{self.command} by {self.owner} on {self.host} pid {self.pid} since "
                f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC: {state}")

    def to_dict(self) -> dict:
        return {"owner": self.owner, "host": self.host, "pid": self.pid,
                "command": self.command, "started_at": str(self.started_at),
                "heartbeat_age": round(self.heartbeat_age, 1), "stale": self.stale,
                "dead": self.dead,
                "break_lock": self.ident}


class Held(RuntimeFailure):
    """Another run holds the lock."""

    def __init__(self, holder: Holder, endpoint: str):
        super().__init__(f"another pacestack migrate run holds the journal lock on {endpoint}: "
                         f"{holder.describe()}")
        self.holder = holder


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry: the uid names the owner
        return str(os.getuid())


class RunLock:
    """``with RunLock(cloud, "apply")``: hold the journal's run lock; a heartbeat
    thread keeps it fresh on its own connection until the block ends."""

    def __init__(self, cloud, command: str, *, break_lock: str | None = None,
                 stale_after: float = STALE_AFTER, heartbeat: float = HEARTBEAT_SECONDS):
        self.cloud = cloud
        self.command = command
        self.break_lock = break_lock
        self.stale_after = stale_after
        self.interval = heartbeat
        self.table = f"{q(cloud.journal_db)}.{q('run_lock')}"
        self.token = str(uuid.uuid4())
        self.conn = None
        self.lost: str | None = None
        self.took_over: Holder | None = None  # a dead holder's lock taken over
        self._stop = threading.Event()
        self._conn_lock = threading.Lock()  # the heartbeat thread and check() share conn
        self._thread: threading.Thread | None = None

    # -- taking and giving back

    def __enter__(self) -> RunLock:
        self.conn = db.connect(self.cloud.server, database="")
        try:
            self._ensure()
            if self.break_lock is not None:
                self._break()
            for attempt in range(10):
                if self._take():
                    return self._started()
                holder = self.holder()
                if holder is not None and holder.dead and holder.command == self.command \
                        and self.took_over is None:
                    # the same command ran on this host and its process is gone (pid and
                    # start time): nothing can still be writing under it, so re-running
                    # it after a crash needs no flag; another command (a rollback after
                    # a killed apply) or a holder elsewhere needs --break-lock
                    self.break_lock, self.took_over = holder.ident, holder
                    self._break()
                    continue
                if holder is not None:
                    raise Held(holder, self.cloud.server.endpoint)
                # released between our attempt and the look, or the row another node
                # created at the same moment is not here yet
                time.sleep(0.05 * (attempt + 1))
                self._ensure()
            raise RuntimeFailure("the journal lock changed hands while taking it; run again")
        except BaseException:
            self._close()
            raise

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            for _attempt in range(5):  # a Galera certification conflict: write it again
                try:
                    with self.conn.cursor() as cur:
                        cur.execute(f"UPDATE {self.table} SET token = NULL, owner = NULL, "  # noqa: S608
                                    "host = NULL, pid = NULL, command = NULL, "
                                    "started_at = NULL, heartbeat = NULL WHERE name = %s AND "
                                    "token = %s", [NAME, self.token])
                    if self._commit_or_lost_race():
                        break
                except Exception as err:  # noqa: BLE001 - else it goes stale, reported so
                    self._rollback()
                    if not _lost_race(err):
                        break
        finally:
            self._close()

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

    def _started(self) -> RunLock:
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat",
                                        daemon=True)
        self._thread.start()
        return self

    def _ensure(self) -> None:
        with self.conn.cursor() as cur:
            # a Galera node reads only after applying what the cluster committed before:
            # a loser of the race sees the winner's row, not the free one it lost on
            cur.execute("SHOW VARIABLES LIKE 'wsrep_sync_wait'")
            if cur.fetchone() is not None:
                cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {q(self.cloud.journal_db)} "
                        "CHARACTER SET utf8mb4")
            cur.execute(SCHEMA.format(table=self.table))
            try:
                cur.execute(f"INSERT IGNORE INTO {self.table} (name) VALUES (%s)",  # noqa: S608
                            [NAME])
            except Exception as err:
                self._rollback()
                if not _lost_race(err):
                    raise
                return  # another node inserted the row at the same moment
        self._commit_or_lost_race()

    def _rollback(self) -> None:
        """Roll back; a transaction Galera aborted reports the deadlock once more here."""
        try:
            self.conn.rollback()
        except Exception as err:  # noqa: BLE001
            if not _lost_race(err):
                raise

    def _commit_or_lost_race(self) -> bool:
        try:
            self.conn.commit()
            return True
        except Exception as err:
            if _lost_race(err):
                self._rollback()
                return False
            raise

    def _take(self) -> bool:
        """One conditional UPDATE in its own transaction: on Galera, two nodes that
        both saw the row free write the same row and only one commit certifies."""
        try:
            with self.conn.cursor() as cur:
                n = cur.execute(
                    f"UPDATE {self.table} SET token = %s, owner = %s, host = %s, "  # noqa: S608
                    "pid = %s, pid_start = %s, command = %s, started_at = UTC_TIMESTAMP(6), "
                    "heartbeat = UTC_TIMESTAMP(6) WHERE name = %s AND token IS NULL",
                    [self.token, _user(), socket.gethostname(), os.getpid(),
                     process_start(os.getpid()), self.command, NAME])
        except Exception as err:
            self._rollback()
            if _lost_race(err):
                return False
            raise
        if n != 1:
            self._rollback()
            return False
        return self._commit_or_lost_race()

    def _row(self, cur, for_update: bool = False) -> tuple | None:
        cur.execute(f"SELECT token, owner, host, pid, pid_start, command, started_at, "  # noqa: S608
                    "heartbeat, TIMESTAMPDIFF(MICROSECOND, heartbeat, UTC_TIMESTAMP(6)) / 1e6 "
                    f"FROM {self.table} WHERE name = %s" + (" FOR UPDATE" if for_update else ""),
                    [NAME])
        row = cur.fetchone()
        return None if row is None or row[0] is None else row

    def _holder(self, row: tuple) -> Holder:
        _token, owner, host, pid, pid_start, command, started, _hb, age = row
        dead = _dead(host, int(pid), pid_start)
        age = float(age)
        return Holder(owner, host, int(pid), command, started, age,
                      dead or age > self.stale_after, dead)

    def holder(self) -> Holder | None:
        with self.conn.cursor() as cur:
            row = self._row(cur)
        self.conn.commit()
        return None if row is None else self._holder(row)

    def _break(self) -> None:
        """Free a stale lock held by exactly the named holder; never a live one."""
        with self.conn.cursor() as cur:
            row = self._row(cur, for_update=True)
            if row is None:
                self._rollback()
                return  # nothing to break: take it as usual
            h = self._holder(row)
            if h.ident != self.break_lock:
                self._rollback()
                raise ConfigError(f"--break-lock {self.break_lock}: the journal lock is held "
                                  f"by {h.ident}, not by {self.break_lock}")
            if not h.stale:
                self._rollback()
                raise RuntimeFailure(f"--break-lock {h.ident}: that holder is live (last "
                                     f"heartbeat {h.heartbeat_age:.0f} s ago, stale after "
                                     f"{self.stale_after:.0f} s): not breaking it")
            cur.execute(f"UPDATE {self.table} SET token = NULL WHERE name = %s "  # noqa: S608
                        "AND token = %s AND heartbeat <=> %s", [NAME, row[0], row[7]])
        if not self._commit_or_lost_race():
            raise RuntimeFailure(f"--break-lock {h.ident}: another run took the lock at the "
                                 "same time; run again")

    # -- holding

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self._conn_lock, self.conn.cursor() as cur:
                    n = cur.execute(f"UPDATE {self.table} SET "  # noqa: S608
                                    "heartbeat = UTC_TIMESTAMP(6) WHERE name = %s AND "
                                    "token = %s", [NAME, self.token])
                    self.conn.commit()
            except Exception:  # noqa: BLE001 - a missed beat: the next one retries
                try:
                    self.conn.rollback()
                except Exception:  # noqa: BLE001
                    pass
                continue
            if n == 0:
                self.lost = "the journal lock was taken over by another run (--break-lock)"
                return

    def check(self) -> None:
        """Before each batch: still ours? A holder paused past its heartbeat (SIGSTOP,
        a frozen VM) may have been broken meanwhile; it must not write on."""
        if not self.lost:
            try:
                with self._conn_lock, self.conn.cursor() as cur:
                    cur.execute(f"SELECT token FROM {self.table} WHERE name = %s",  # noqa: S608
                                [NAME])
                    row = cur.fetchone()
                    self.conn.commit()
            except Exception:  # noqa: BLE001 - the heartbeat decides on an unreachable server
                return
            if row is None or row[0] != self.token:
                self.lost = "the journal lock was taken over by another run (--break-lock)"
        if self.lost:
            raise RuntimeFailure(f"{self.lost}; stopped before the next batch")
