"""Every old name in every live row: found, and accounted for (migrate/residue.py)."""

from __future__ import annotations

import contextlib

from pacestack.migrate import plan as planmod
from pacestack.migrate import residue


def _acc(seeded, changes=()):
    with contextlib.closing(seeded.cloud()) as c:
        return residue.account(c, seeded.mapping(), changes)


def test_probe(seeded):
    with contextlib.closing(seeded.cloud()) as c:
        p = planmod.build(c, seeded.mapping())
    for e in p.accounting.entries:
        print(e.outcome, e.where, e.rows, e.by[:50], e.example, e.names)
    print(p.accounting.columns_scanned, sorted(p.accounting.databases))
    assert 0

