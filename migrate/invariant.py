"""An invariant: a set-based query over the databases that must return no row.

Each step's module (keystone, neutron, cinder, nova) states its own invariants
with ``rows_found``; verify.py runs them in step order.
"""

from __future__ import annotations

from pacestack import codes
from pacestack.findings import Finding


def rows_found(cloud, code: codes.Code, what: str, sql: str, args=None,
               limit: int = 5) -> list[Finding]:
    """A finding per row the query returns (the first ``limit``, then one counting the
    rest): each row breaks the invariant ``what``."""
    rows = cloud.rows(sql, args)
    out = [code(what, check=what, row=", ".join(f"{k}={v}" for k, v in r.items()))
           for r in rows[:limit]]
    if len(rows) > limit:
        out.append(code(what, check=what, row=f"{len(rows) - limit} more rows"))
    return out
