"""crm_mon's XML (``crm_mon --one-shot --output-as=xml``), read in one place.

The lab's status, the drill's targets (lab and ssh) and ``galera status`` all ask
Pacemaker the same questions: which members are online, which is the DC, is the
partition quorate, where each resource runs and in which role, which actions
failed. ``parse()`` answers all of them from one document. Standard library only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - Pacemaker's own output
from dataclasses import dataclass, field

FAILURE_KEYS = ("op_key", "node", "exitreason", "exitstatus", "status")
# the one question every reader asks (operations adds each node's operation history)
ARGV = ("crm_mon", "--one-shot", "--output-as=xml")
WITH_OPERATIONS = (*ARGV, "--include=operations")


@dataclass
class CrmMon:
    """One node's crm_mon, parsed once."""

    online: dict[str, bool]                 # cluster member (no remote nodes) -> online
    dc: str | None                          # the elected DC, None while there is none
    quorate: bool | None                    # None: no DC to say
    states: dict[str, str]                  # node -> online|offline|unclean|standby
    # resource id (clone instances by their base id) -> sorted [(node, role)]
    placement: dict[str, list[tuple[str, str]]]     # active and not failed
    active: dict[str, list[tuple[str, str]]]        # active, failed or not
    failures: list[dict[str, str]] = field(default_factory=list)

    def failures_of(self, resource: str) -> dict[str, list[str]]:
        """node -> ["<op_key>: <exit reason or status>"] of ``resource``'s failed actions."""
        out: dict[str, list[str]] = {}
        for f in self.failures:
            if f["op_key"].startswith(f"{resource}_"):
                out.setdefault(f["node"], []).append(
                    f"{f['op_key']}: {f['exitreason'] or f['exitstatus']}")
        return out


def _state(n: ET.Element) -> str:
    if n.get("unclean") == "true":
        return "unclean"
    if n.get("online") != "true":
        return "offline"
    if n.get("standby") == "true":
        return "standby"
    return "online"


def _document(text: str) -> ET.Element | None:
    """The XML of an answer; None for no answer or one that is not XML."""
    if not text or not text.strip():
        return None
    try:
        return ET.fromstring(text)  # noqa: S314 - Pacemaker's own output
    except ET.ParseError:
        return None


def parse(text: str) -> CrmMon | None:
    """The document, or None for no answer or one that is not crm_mon's XML."""
    doc = _document(text)
    if doc is None:
        return None
    nodes = doc.findall("./nodes/node")
    online = {n.get("name", ""): n.get("online") == "true" for n in nodes
              if n.get("type", "member") == "member"}
    states = {n.get("name", ""): _state(n) for n in nodes}
    dc_el = doc.find("./summary/current_dc")
    present = dc_el is not None and dc_el.get("present") == "true"
    dc = dc_el.get("name") if present else None
    quorate = None if dc_el is None else dc_el.get("with_quorum") == "true"
    placement: dict[str, list[tuple[str, str]]] = {}
    active: dict[str, list[tuple[str, str]]] = {}
    resources = doc.find("resources")
    for el in resources.iter("resource") if resources is not None else ():
        rid = (el.get("id") or "").split(":")[0]
        slot, seen = placement.setdefault(rid, []), active.setdefault(rid, [])
        if el.get("active") == "true":
            where = [(n.get("name", ""), el.get("role", "")) for n in el.findall("node")]
            seen.extend(where)
            if el.get("failed") != "true":
                slot.extend(where)
    failures = [{k: f.get(k, "") for k in FAILURE_KEYS} for f in doc.iterfind("./failures/failure")]
    return CrmMon(online, dc, quorate, states, {k: sorted(v) for k, v in placement.items()},
                  {k: sorted(v) for k, v in active.items()}, failures)


@dataclass(frozen=True)
class Operation:
    """One entry of a node's operation history (``--include=operations``)."""

    node: str
    resource: str
    call: str
    task: str
    exec_s: float


def operations(text: str) -> list[Operation] | None:
    """Every operation crm_mon still remembers, in its order (only those with an
    execution time); None for no answer or one that is not crm_mon's XML."""
    doc = _document(text)
    if doc is None:
        return None
    return [Operation(nh.get("name", ""), rh.get("id", ""), op.get("call", ""),
                      op.get("task", ""), int(op.get("exec-time", "").rstrip("ms")) / 1000.0)
            for nh in doc.iterfind("./node_history/node")
            for rh in nh.iterfind("resource_history")
            for op in rh.iterfind("operation_history") if op.get("exec-time")]
