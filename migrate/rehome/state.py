"""The persisted per-instance state machine, in a table beside migrate's journal.

One row per instance: the last step that completed, the data later steps need
(ports recreated, the DB move's run id) and the outcome. A step is recorded only
after it completed, so a run killed at any point redoes at most the step it was
in, and every step checks the world before acting (see machine.py), so redoing
it changes nothing twice. A per-instance server lock (GET_LOCK, freed by the
server when the holder dies) keeps two runs off the same instance.
"""

from __future__ import annotations

import json
from typing import Any

from pacestack.errors import RuntimeFailure

# The order of the machine; "new" is the state before any step.
STEPS = ("preflight", "old_stopped", "db_moved", "ports_bound", "rebooted", "ports_repaired",
         "started", "verified")
TABLE = "rehome_instances"

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " instance_uuid VARCHAR(36) NOT NULL PRIMARY KEY,"
    " target_host VARCHAR(255) NOT NULL, target_node VARCHAR(255) NOT NULL,"
    " step VARCHAR(32) NOT NULL,"  # last completed step, or 'new'
    " status VARCHAR(16) NOT NULL,"  # running | done | failed | refused
    " data MEDIUMTEXT NOT NULL, error TEXT NULL,"
    " started_at DATETIME NOT NULL, updated_at DATETIME NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
)


def next_step(done: str) -> str | None:
    if done == "new":
        return STEPS[0]
    i = STEPS.index(done)
    return STEPS[i + 1] if i + 1 < len(STEPS) else None


class StateStore:
    """Rows of one instance at a time, on the worker's own connection."""

    def __init__(self, conn, database: str):
        self.conn = conn
        self.db = "`" + database.replace("`", "``") + "`"
        self._locks: set[str] = set()

    def _q(self, template: str) -> str:
        # the only substitution: our own quoted database and table names
        return template.replace("{t}", f"{self.db}.{TABLE}")

    def ensure_schema(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {self.db} CHARACTER SET utf8mb4")
            cur.execute(_SCHEMA.replace(f"EXISTS {TABLE}", f"EXISTS {self.db}.{TABLE}"))
        self.conn.commit()

    def lock(self, instance: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 0)", [f"pacestack.rehome.{instance}"])
            got = cur.fetchone()[0]
        if got != 1:
            raise RuntimeFailure(f"instance {instance} is being rehomed by another run")
        self._locks.add(instance)

    def unlock(self, instance: str) -> None:
        if instance in self._locks:
            with self.conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", [f"pacestack.rehome.{instance}"])
            self._locks.discard(instance)

    def get(self, instance: str) -> dict[str, Any] | None:
        with self.conn.cursor() as cur:
            cur.execute(self._q("SELECT instance_uuid, target_host, target_node, step, status, "
                                "data, error FROM {t} WHERE instance_uuid = %s"), [instance])
            row = cur.fetchone()
        self.conn.commit()
        if row is None:
            return None
        keys = ("instance", "target_host", "target_node", "step", "status", "data", "error")
        out = dict(zip(keys, row, strict=True))
        out["data"] = json.loads(out["data"])
        return out

    def begin(self, instance: str, host: str, node: str) -> dict[str, Any]:
        """The row to resume from, created when new. A finished instance keeps its row."""
        with self.conn.cursor() as cur:
            cur.execute(self._q("INSERT IGNORE INTO {t} (instance_uuid, target_host, "
                        "target_node, step, status, data, started_at, updated_at) VALUES "
                        "(%s, %s, %s, 'new', 'running', '{}', UTC_TIMESTAMP(), "
                        "UTC_TIMESTAMP())"),
                        [instance, host, node])
        self.conn.commit()
        return self.get(instance)

    def record(self, instance: str, step: str, data: dict, status: str = "running") -> None:
        with self.conn.cursor() as cur:
            cur.execute(self._q("UPDATE {t} SET step = %s, status = %s, data = %s, "
                        "error = NULL, updated_at = UTC_TIMESTAMP() WHERE instance_uuid = %s"),
                        [step, status, json.dumps(data, sort_keys=True), instance])
        self.conn.commit()

    def fail(self, instance: str, status: str, error: str, data: dict) -> None:
        with self.conn.cursor() as cur:
            cur.execute(self._q("UPDATE {t} SET status = %s, error = %s, data = %s, "
                        "updated_at = UTC_TIMESTAMP() WHERE instance_uuid = %s"),
                        [status, error[:2000], json.dumps(data, sort_keys=True), instance])
        self.conn.commit()

    def retarget(self, instance: str, host: str, node: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(self._q("UPDATE {t} SET target_host = %s, target_node = %s "
                        "WHERE instance_uuid = %s"), [host, node, instance])
        self.conn.commit()

    def all(self) -> list[dict[str, Any]]:
        with self.conn.cursor() as cur:
            cur.execute(self._q("SELECT instance_uuid FROM {t} ORDER BY instance_uuid"))
            ids = [r[0] for r in cur.fetchall()]
        self.conn.commit()
        return [self.get(i) for i in ids]
