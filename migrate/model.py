"""A plan as data: a plain list of per-row changes, with before/after values, counts
and refusals per step (plan.py builds it; apply and rehome's journaled writes
consume it).

A Change belongs to a *unit*: the changes that must commit together for the
data to stay consistent (one instance with its info cache and allocations, one
network with its segment, allocations and MTU). apply never splits a unit
across transactions, so re-planning after a crash finds either all or none of
a unit's changes still to do.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any

from pacestack.migrate import tables

from pacestack.findings import Finding, Severity

# The cutover's steps, in the order they plan, apply and verify
STEPS = ("keystone", "neutron", "cinder", "nova")

# Unit kinds whose changes touch only rows of their own subject (keyed by its id): no
# other unit writes those rows, and the rows they reference by foreign key (ports,
# network segments, cinder services) are written only by units of other kinds. So
# batches made of these alone may commit in any order, and apply runs them on
# parallel connections. Every other kind (a network's segments and shared allocation
# rows, a cinder service, a segment-host mapping, an agent, a cluster, a host
# mapping) is a barrier: it runs alone, after everything planned before it.
INDEPENDENT_UNITS = frozenset({"endpoint", "port", "volume", "backup", "group", "attachment",
                               "cache-entry",
                               "instance"})


def independent(unit: str) -> bool:
    return unit.partition(":")[0] in INDEPENDENT_UNITS


# (db, table, key columns, written columns) already checked against the whitelist:
# a plan holds ~180,000 changes of a few dozen shapes
_CHECKED: set[tuple] = set()


@dataclasses.dataclass(slots=True)
class Change:
    step: str
    db: str  # logical service database (tables.SERVICE_DATABASES, or a nova cell's)
    table: str
    op: str  # "update" | "insert" | "delete"
    key: dict[str, Any]  # primary key of the row as it is now (insert: as it will be)
    before: dict[str, Any]  # changed columns' current values (delete: {}; insert: {})
    after: dict[str, Any]  # changed columns' new values (insert: the whole row)
    unit: str
    why: str = ""

    def __post_init__(self) -> None:
        shape = (self.db, self.table, tuple(self.key), tuple(self.after))
        if shape in _CHECKED:
            return
        if not tables.whitelisted(self.db, self.table):
            raise ValueError(f"{self.db}.{self.table} is not whitelisted")
        tables.check_columns(self.db, self.table, list(self.key) + list(self.after))
        _CHECKED.add(shape)

    @property
    def new_key(self) -> dict[str, Any]:
        return {k: self.after.get(k, v) for k, v in self.key.items()}

    def signature(self) -> tuple:
        """Changes with one signature are applied by one set-based statement."""
        return (tables.order(self.db, self.table), self.db, self.table, self.op,
                tuple(sorted(self.after)))

    def to_dict(self) -> dict:
        return {"step": self.step, "table": f"{self.db}.{self.table}", "op": self.op,
                "key": self.key, "before": self._shown(self.before),
                "after": self._shown(self.after), "unit": self.unit, "why": self.why}

    def _shown(self, values: dict) -> dict:
        return {c: mask_url(v) if (self.db, self.table, c) in tables.SECRET_COLUMNS else v
                for c, v in values.items()}


def mask_url(value: Any) -> Any:
    """A URL with the password of each user:password@ replaced by ***."""
    if not isinstance(value, str):
        return value
    return re.sub(r"(://|,)([^:@/,]*):[^@/]*@", r"\1\2:***@", value)


@dataclasses.dataclass
class StepPlan:
    step: str
    changes: list[Change] = dataclasses.field(default_factory=list)
    refusals: list[Finding] = dataclasses.field(default_factory=list)
    notes: list[Finding] = dataclasses.field(default_factory=list)

    def refuse(self, finding: Finding) -> None:
        """A reason not to apply (a registered code of severity error)."""
        assert finding.severity is Severity.ERROR, finding.code
        self.refusals.append(finding)

    def note(self, finding: Finding) -> None:
        """Something the operator should know before applying (severity warning)."""
        assert finding.severity is Severity.WARNING, finding.code
        self.notes.append(finding)

    def update(self, db: str, table: str, key: dict, before: dict, after: dict, unit: str,
               why: str = "") -> None:
        """Record an update of only the columns whose value really changes."""
        get = before.get
        new = {c: v for c, v in after.items() if get(c) != v}
        if new:
            self.changes.append(Change(self.step, db, table, "update", key,
                                       {c: get(c) for c in new}, new, unit, why))

    def insert(self, db: str, table: str, row: dict, unit: str, why: str = "") -> None:
        key = {c: row[c] for c in tables.pk(db, table) if c in row}
        self.changes.append(Change(self.step, db, table, "insert", key, {}, row, unit, why))

    def delete(self, db: str, table: str, key: dict, unit: str, why: str = "") -> None:
        self.changes.append(Change(self.step, db, table, "delete", key, {}, {}, unit, why))

    def counts(self) -> dict[str, int]:
        c = Counter(f"{ch.db}.{ch.table} {ch.op}" for ch in self.changes)
        return dict(sorted(c.items()))

    def to_dict(self, with_changes: bool = True) -> dict:
        out = {"step": self.step, "changes_total": len(self.changes), "counts": self.counts(),
               "refusals": self.refusals, "notes": self.notes}
        if with_changes:
            out["changes"] = self.changes
        return out


@dataclasses.dataclass
class Plan:
    steps: list[StepPlan]
    mapping_path: str = ""
    general: list[Finding] = dataclasses.field(default_factory=list)  # refusals of no step
    accounting: Any = None  # residue.Accounting: every old name found, and its fate
    release: str = ""  # the OpenStack release the plan was made for (releases.detect)

    @property
    def changes(self) -> list[Change]:
        return [c for s in self.steps for c in s.changes]

    @property
    def refusals(self) -> list[Finding]:
        return self.general + [r for s in self.steps for r in s.refusals]

    def step(self, name: str) -> StepPlan:
        for s in self.steps:
            if s.step == name:
                return s
        raise KeyError(name)

    def tables(self) -> list[tuple[str, str]]:
        return sorted({(c.db, c.table) for c in self.changes}, key=lambda k: tables.order(*k))

    def to_dict(self, with_changes: bool = True) -> dict:
        return {"mapping": self.mapping_path, "release": self.release, "ok": not self.refusals,
                "changes_total": len(self.changes), "refusals": self.general,
                "steps": [s.to_dict(with_changes) for s in self.steps],
                "accounting": self.accounting.to_dict() if self.accounting else None}
