"""Where resources run, as one lab node's crm_mon sees it (data for status and drills)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .nodes import Node


def placement(node: Node, timeout: float = 15) -> dict[str, list[tuple[str, str]]] | None:
    """resource id -> sorted [(node, role)] of its active, unfailed instances; None when
    the node cannot answer (down, no DC yet). Clone instances report their base id."""
    if not node.booted:
        return None
    try:
        res = node.run(["crm_mon", "-1", "--output-as=xml"], check=False, timeout=timeout)
    except Exception:  # noqa: BLE001 - a timeout while the node dies: no answer
        return None
    if res.returncode != 0 or not res.stdout.strip():
        return None
    try:
        doc = ET.fromstring(res.stdout)
    except ET.ParseError:
        return None
    placed: dict[str, list[tuple[str, str]]] = {}
    resources = doc.find("resources")
    if resources is None:
        return {}
    for el in resources.iter("resource"):
        rid = (el.get("id") or "").split(":")[0]
        slot = placed.setdefault(rid, [])
        if el.get("active") == "true" and el.get("failed") != "true":
            slot.extend((n.get("name", ""), el.get("role", "")) for n in el.findall("node"))
    return {k: sorted(v) for k, v in placed.items()}


def failures(node: Node, timeout: float = 15) -> list[dict[str, str]]:
    """The failed actions crm_mon lists (resource, node, operation, exit reason)."""
    res = node.run(["crm_mon", "-1", "--output-as=xml"], check=False, timeout=timeout)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    try:
        doc = ET.fromstring(res.stdout)
    except ET.ParseError:
        return []
    return [{k: f.get(k, "") for k in ("op_key", "node", "exitreason", "status")}
            for f in doc.iterfind("./failures/failure")]
