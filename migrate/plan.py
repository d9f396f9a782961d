"""A plan: a plain list of per-row changes, with before/after values, counts and
refusals per step. Building a plan only reads; nothing here writes.

A Change belongs to a *unit*: the changes that must commit together for the
data to stay consistent (one instance with its info cache and allocations, one
network with its segment, allocations and MTU). apply never splits a unit
across transactions, so re-planning after a crash finds either all or none of
a unit's changes still to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pacestack.migrate import tables

from pacestack import codes
from pacestack.findings import Finding, Severity

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


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Planning allocates millions of short-lived dicts and lists (rows, parsed
    info caches, changes) and creates no reference cycles: the cyclic collector's
    passes over them cost a third of a plan's CPU time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
        old: dict[str, Any] = {}
        new: dict[str, Any] = {}
        for c, v in after.items():
            was = before.get(c)
            if was != v:
                old[c] = was
                new[c] = v
        if new:
            self.changes.append(Change(self.step, db, table, "update", key, old, new, unit,
                                       why))

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


def known_hosts(cloud) -> set[str]:
    """Every host name a service, agent, binding or volume of the cloud uses."""
    from pacestack.migrate.cinder import split_host

    out: set[str] = set()
    for sql in ("SELECT DISTINCT host FROM {neutron.agents}",
                "SELECT DISTINCT host FROM {neutron.ml2_port_bindings}",
                "SELECT DISTINCT host FROM {cinder.services} WHERE deleted = 0",
                "SELECT DISTINCT host FROM {cinder.volumes} WHERE deleted = 0",
                "SELECT DISTINCT host FROM {nova.services} WHERE deleted = 0"):
        out.update(split_host(r["host"])[0] for r in cloud.rows(sql) if r["host"])
    return out


def applied_before(cloud) -> bool:
    exists = cloud.rows("SELECT COUNT(*) AS n FROM information_schema.tables "
                        "WHERE table_schema = %s AND table_name = 'runs'", [cloud.journal_db])
    if not exists[0]["n"]:
        return False
    return bool(cloud.rows("SELECT run_id FROM {journal.runs} WHERE status IN "
                           "('running', 'done') LIMIT 1"))


def build(cloud, mapping, only: list[str] | None = None, force: bool = False) -> Plan:
    """Read the cloud and compute every step's changes; writes nothing."""
    with no_cyclic_gc():
        return _build(cloud, mapping, only, force)


def _build(cloud, mapping, only: list[str] | None, force: bool) -> Plan:
    from pacestack.migrate import cinder, keystone, neutron, nova

    wanted = only or list(STEPS)
    whole = set(STEPS) <= set(wanted)
    from pacestack.migrate import residue

    # the residue search needs no plan: the server runs it while the steps plan here
    found = residue.scan_aside(cloud, mapping) if whole else None
    builders = {"keystone": keystone.plan, "neutron": neutron.plan,
                "cinder": cinder.plan, "nova": nova.plan}
    general: list[Finding] = []
    if mapping.hosts and ({"neutron", "cinder"} & set(wanted)):
        present = known_hosts(cloud)
        # once a run has applied, the old names are gone: a re-run must not call them typos
        applied = applied_before(cloud)
        for old in mapping.hosts:
            if old not in present and not applied:
                general.append(codes.MAPPING_UNKNOWN_HOST(
                    f"{mapping.path}:{mapping.lines.get('hosts ' + old)}",
                    users="service, agent, port binding or volume", host=old))
    # nova's instance moves decide which port bindings and attachments follow: compute once
    moves = nova.instance_moves(cloud, mapping, force=force)
    shared = moves if "nova" in wanted else moves.only_done()
    steps = [builders[name](cloud, mapping, moves if name == "nova" else shared)
             for name in STEPS if name in wanted]
    release = cloud.release.release if cloud.release else ""
    plan = Plan(steps, mapping.path, general, release=release)
    if found is not None and not plan.refusals:
        # only the whole cutover can be held to account for every old name (and only a
        # plan without refusals says what the steps will rewrite)
        plan.accounting = residue.account(cloud, mapping, plan.changes, found.result())
        general.extend(plan.accounting.refusals)
    elif found is not None:
        found.cancel()  # refused: nothing to account for (a running search just ends)
    return plan
