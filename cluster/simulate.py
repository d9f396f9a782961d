"""crm_simulate on CIB files: a steady state and where every resource runs in it.

A scenario starts from a CIB with a status section, injects one change (a node
fails, a resource can no longer run on a node) and runs the scheduler's
transitions until nothing is left to do. Placement is read from crm_simulate's
own XML output (``revised_cluster_status``), not guessed from the configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from pacestack.errors import RuntimeFailure

MAX_TRANSITIONS = 5
PROMOTION_SCORE = "10"

# resource (primitive) id -> [(node, role)] of its active instances
Placement = dict[str, list[tuple[str, str]]]


def _run(argv: list[str]) -> ET.Element:
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    proc = subprocess.run(["crm_simulate", *argv, "--output-as=xml"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    try:
        return ET.fromstring(proc.stdout)
    except ET.ParseError:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise RuntimeFailure(f"crm_simulate {' '.join(argv)}: {tail}") from None


def placement_of(status: ET.Element | None) -> Placement:
    out: Placement = {}
    if status is None:
        return out
    for res in status.iter("resource"):
        rid = res.get("id", "")
        slot = out.setdefault(rid, [])
        if res.get("active") != "true":
            continue
        for node in res.findall("node"):
            slot.append((node.get("name", ""), res.get("role", "Started")))
    return out


def _pending_actions(result: ET.Element) -> int:
    actions = result.find("actions")
    if actions is None:
        return 0
    return sum(1 for a in actions if a.get("blocked") != "true")


def settle(cib_in: str, cib_out: str, inject: Sequence[str] = (), *,
           max_transitions: int = MAX_TRANSITIONS) -> Placement:
    """Apply ``inject`` (crm_simulate options) and run transitions until stable, or
    ``max_transitions`` of them. One transition is all a single injected failure
    needs once promotion scores are in place (tests/cluster check that the settled
    matrix is the same); the baseline is always settled."""
    if max_transitions == 1:
        # nothing reads the resulting CIB: skip writing it
        result = _run(["-x", cib_in, *inject, "-S"])
        return _revised_placement(result)
    current = cib_in
    result = None
    for i in range(max_transitions):
        out = f"{cib_out}.{i}"
        result = _run(["-x", current, *(inject if i == 0 else ()), "-S", "-O", out])
        current = out
        if _pending_actions(result) == 0:
            break
    shutil.move(current, cib_out)
    for i in range(MAX_TRANSITIONS):
        if os.path.exists(f"{cib_out}.{i}"):
            os.unlink(f"{cib_out}.{i}")
    assert result is not None
    return _revised_placement(result)


def _revised_placement(result: ET.Element) -> Placement:
    revised = result.find("revised_cluster_status")
    if revised is None:
        revised = result.find("cluster_status")
    return placement_of(revised.find("resources") if revised is not None else None)


def _node_attrs(root: ET.Element, node: str) -> ET.Element:
    status = root.find("status")
    if status is None:
        status = ET.SubElement(root, "status")
    state = next((s for s in status.findall("node_state")
                  if s.get("uname") == node or s.get("id") == node), None)
    if state is None:
        raise RuntimeFailure(f"node {node} has no state in the simulated CIB")
    trans = state.find("transient_attributes")
    if trans is None:
        trans = ET.SubElement(state, "transient_attributes", id=state.get("id", node))
    attrs = trans.find("instance_attributes")
    if attrs is None:
        attrs = ET.SubElement(trans, "instance_attributes", id=f"status-{state.get('id')}")
    return attrs


def set_node_attributes(cib_path: str, values: dict[str, dict[str, str]]) -> None:
    """Reboot-lifetime node attributes (node -> name -> value), as attrd would record
    them: promotion scores an agent sets on start, fail counts after a failed start."""
    tree = ET.parse(cib_path)
    root = tree.getroot()
    for node, attrs in values.items():
        block = _node_attrs(root, node)
        for name, value in attrs.items():
            nid = f"{block.get('id')}-{name}".replace("#", "_")
            for nv in [nv for nv in block.findall("nvpair") if nv.get("name") == name]:
                block.remove(nv)
            ET.SubElement(block, "nvpair", id=nid, name=name, value=value)
    tree.write(cib_path)


def online_nodes(cib_path: str) -> set[str]:
    root = ET.parse(cib_path).getroot()
    return {s.get("uname", "") for s in root.findall("status/node_state")
            if s.get("crmd") == "online" and s.get("in_ccm") == "true"}


def baseline(cib_path: str, out_path: str, nodes: Sequence[str],
             promotable: Sequence[str]) -> Placement:
    """Every node up with quorum, promotion scores for promotable resources on every
    node (what their agents set once started), then run until stable. A CIB whose
    status already has every node online (a live cluster's) is used as it is."""
    if set(nodes) <= online_nodes(cib_path):
        return settle(cib_path, out_path)
    injected = f"{out_path}.up"
    argv = ["-x", cib_path, "--quorum", "true", "-O", injected]
    for node in nodes:
        argv += ["--node-up", node]
    _run(argv)
    if promotable:
        set_node_attributes(injected, {n: {f"master-{r}": PROMOTION_SCORE for r in promotable}
                                       for n in nodes})
    try:
        return settle(injected, out_path)
    finally:
        os.unlink(injected)


def node_failure(base_path: str, out_path: str, node: str, max_transitions: int = 1
                 ) -> Placement:
    return settle(base_path, out_path, ["--node-fail", node], max_transitions=max_transitions)


def resource_failure(base_path: str, out_path: str, resource: str, node: str,
                     max_transitions: int = 1) -> Placement:
    """``resource`` fails on ``node`` and cannot start there again (its start fail
    count is INFINITY, as after a failed start): where does everything run then?"""
    scratch = f"{out_path}.in"
    shutil.copyfile(base_path, scratch)
    set_node_attributes(scratch, {node: {f"fail-count-{resource}#start_0": "INFINITY"}})
    try:
        return settle(scratch, out_path, max_transitions=max_transitions)
    finally:
        os.unlink(scratch)


def monitor_failure_stops(base_path: str, resource: str, node: str, interval_ms: int
                          ) -> set[str]:
    """``resource``'s recurring monitor (every ``interval_ms``) finds it not running on
    ``node``: the resources (primitive ids) the scheduler's next transition stops there,
    its own recovery included."""
    result = _run(["-x", base_path, "-S",
                   "-i", f"{resource}_monitor_{interval_ms}@{node}=7"])
    transition = result.find("transition")
    if transition is None:
        return set()
    return {a.get("resource", "") for a in transition.findall("rsc_action")
            if a.get("op") == "stop" and a.get("node") == node}
