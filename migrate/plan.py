"""Building a plan: every step's changes read from the cloud (the model is model.py).
Building a plan only reads; nothing here writes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator

from pacestack.migrate import cinder, keystone, neutron, nova, residue
from pacestack.migrate.cinder import split_host
from pacestack.migrate.journal import applied_before
from pacestack.migrate.model import STEPS, Change, Plan

from pacestack import codes
from pacestack.findings import Finding


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


def known_hosts(cloud) -> set[str]:
    """Every host name a service, agent, binding or volume of the cloud uses."""
    out: set[str] = set()
    for sql in ("SELECT DISTINCT host FROM {neutron.agents}",
                "SELECT DISTINCT host FROM {neutron.ml2_port_bindings}",
                "SELECT DISTINCT host FROM {cinder.services} WHERE deleted = 0",
                "SELECT DISTINCT host FROM {cinder.volumes} WHERE deleted = 0",
                "SELECT DISTINCT host FROM {nova.services} WHERE deleted = 0"):
        out.update(split_host(r["host"])[0] for r in cloud.rows(sql) if r["host"])
    return out


def build(cloud, mapping, only: list[str] | None = None, force: bool = False,
          planned: Callable[[list[Change]], None] | None = None) -> Plan:
    """Read the cloud and compute every step's changes; writes nothing. planned: called
    with the steps' changes when they hold no refusal, before the residue accounting
    (apply starts reading what it needs before writing there, beside the accounting)."""
    with no_cyclic_gc():
        return _build(cloud, mapping, only, force, planned)


def _build(cloud, mapping, only: list[str] | None, force: bool,
           planned: Callable[[list[Change]], None] | None) -> Plan:
    wanted = only or list(STEPS)
    whole = set(STEPS) <= set(wanted)
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
    changes = plan.changes
    if planned is not None and changes and not plan.refusals:
        planned(changes)
    if found is not None and not plan.refusals:
        # only the whole cutover can be held to account for every old name (and only a
        # plan without refusals says what the steps will rewrite)
        plan.accounting = residue.account(cloud, mapping, changes, found.result())
        general.extend(plan.accounting.refusals)
    elif found is not None:
        found.cancel()  # refused: nothing to account for (a running search just ends)
    return plan
