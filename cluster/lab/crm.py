"""Where resources run, as one lab node's crm_mon sees it (data for status and drills)."""

from __future__ import annotations

from pacestack.cluster import crm_mon

from .nodes import Node


def view(node: Node, timeout: float = 15) -> crm_mon.CrmMon | None:
    """The node's crm_mon; None when it cannot answer (down, no DC yet)."""
    if not node.booted:
        return None
    try:
        res = node.run(list(crm_mon.ARGV), check=False, timeout=timeout)
    except Exception:  # noqa: BLE001 - a timeout while the node dies: no answer
        return None
    return crm_mon.parse(res.stdout) if res.returncode == 0 else None


def placement(node: Node, timeout: float = 15) -> dict[str, list[tuple[str, str]]] | None:
    """resource id -> sorted [(node, role)] of its active, unfailed instances; None when
    the node cannot answer (down, no DC yet). Clone instances report their base id."""
    v = view(node, timeout)
    return None if v is None else v.placement


def failures(node: Node, timeout: float = 15) -> list[dict[str, str]]:
    """The failed actions crm_mon lists (resource, node, operation, exit reason)."""
    v = view(node, timeout)
    return [] if v is None else v.failures
