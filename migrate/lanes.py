"""Writer lanes: extra connections that commit batches of independent units side
by side (model.INDEPENDENT_UNITS), so the server works on two transactions at once
instead of one.

Each lane is its own connection and transaction; a batch is still one
transaction with its before-images, so a crash leaves whole batches committed
or not, and the re-plan of the next run finds what is left, as with one
connection. A batch refused by a lock conflict (a deadlock, or a lock wait
timeout: the server rolled it back) is run again alone once the other lanes are
idle. Lanes open only on the very server the run holds its lock on; anything
else (a load balancer handing out another node, no free connection) leaves
apply on its one connection, in plan order, and says why.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import queue
from collections.abc import Callable
from typing import Any

from pacestack import db

# ER_LOCK_DEADLOCK (also Galera's brute-force abort), ER_LOCK_WAIT_TIMEOUT
_RETRY_ALONE = (1213, 1205)


def server_identity(conn) -> tuple:
    """What tells two connections apart if they reached different servers (or Galera
    nodes behind one address)."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@hostname, @@port, @@datadir")
        ident = tuple(cur.fetchone())
        cur.execute("SHOW STATUS LIKE 'wsrep_gcomm_uuid'")
        row = cur.fetchone()
    return ident + ((row[1],) if row else ())


def lock_conflict(err: BaseException) -> bool:
    import pymysql

    return isinstance(err, pymysql.err.OperationalError) and bool(err.args) \
        and err.args[0] in _RETRY_ALONE


class Lanes:
    """``with Lanes(cloud, n, run) as lanes``: ``run(lane_cloud, batch)`` commits one
    prepared batch on a lane's connection. ``submit`` and ``drain`` return the tags
    of the batches that finished, in the order they were collected."""

    def __init__(self, cloud, n: int, run: Callable[[Any, Any], None],
                 say: Callable[[str], None] = lambda _m: None):
        self.cloud = cloud
        self.run = run
        self.say = say
        self.n = n
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        self.clouds: list = []
        self.pool: cf.ThreadPoolExecutor | None = None
        self.inflight: dict[cf.Future, tuple[Any, Any]] = {}

    @property
    def parallel(self) -> bool:
        return self.pool is not None

    def __enter__(self) -> Lanes:
        if self.n < 2:
            return self
        try:
            home = server_identity(self.cloud.conn)
            for _ in range(self.n):
                lane = copy.copy(self.cloud)
                lane.conn = db.connect(self.cloud.server, database=self.cloud.journal_db)
                self.clouds.append(lane)
                if server_identity(lane.conn) != home:
                    self.say("a second connection reached another server: writing on one")
                    self._close()
                    return self
        except Exception as err:  # noqa: BLE001 - parallel writes are an optimisation only
            self.say(f"cannot open writer connections ({err}): writing on one")
            self._close()
            return self
        for lane in self.clouds:
            self.idle.put(lane)
        self.pool = cf.ThreadPoolExecutor(self.n, thread_name_prefix="lane")
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
        finally:
            self._close()

    def _close(self) -> None:
        for lane in self.clouds:
            lane.close()
        self.clouds = []

    def _task(self, batch: Any) -> None:
        lane = self.idle.get()
        try:
            self.run(lane, batch)
        finally:
            self.idle.put(lane)

    def submit(self, batch: Any, tag: Any) -> list[Any]:
        """Start batch on a free lane, first waiting for one if all are busy."""
        done: list[Any] = []
        while len(self.inflight) >= self.n:
            done += self._collect(cf.FIRST_COMPLETED)
        self.inflight[self.pool.submit(self._task, batch)] = (batch, tag)
        return done

    def drain(self) -> list[Any]:
        """Wait until every lane is idle."""
        done: list[Any] = []
        while self.inflight:
            done += self._collect(cf.ALL_COMPLETED)
        return done

    def _collect(self, when: str) -> list[Any]:
        finished, _ = cf.wait(self.inflight, return_when=when)
        if any(fut.exception() is not None for fut in finished):
            # let the others finish (or fail) before retrying or raising: no lane is
            # left writing behind the caller's back
            finished, _ = cf.wait(self.inflight)
        done: list[Any] = []
        failed: list[tuple[BaseException, Any, Any]] = []
        for fut in finished:
            batch, tag = self.inflight.pop(fut)
            err = fut.exception()
            if err is None:
                done.append(tag)
            else:
                failed.append((err, batch, tag))
        fatal = [f for f in failed if not lock_conflict(f[0])]
        if fatal:
            raise fatal[0][0]
        for err, batch, tag in failed:
            self.say(f"batch {getattr(batch, 'number', '?')} hit a lock conflict "
                     f"({err.args[-1]}); running it again alone")
            self._task(batch)
            done.append(tag)
        return done
