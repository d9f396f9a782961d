"""One read of the CIB for the node attributes a Galera decision is made from.

A decision needs every member's position and Primary flag (and this node's
override): 2N+1 ``crm_attribute`` reads of 40-50 ms each, taken in start, in
every post-notify and in every promote of a full-crash recovery, and serialised
by the CIB (bench/galera_recovery.py measured them as most of the agent's
overhead). ``crm_attribute --query`` reads the CIB as well (attrd writes reboot
attributes there), so one ``cibadmin --query`` gives the same values, as one
consistent snapshot. Whenever the snapshot cannot be read or is ambiguous the
caller falls back to crm_attribute, so nothing is decided on a guess.
"""

from __future__ import annotations

import os
import subprocess

from pacestack.cib_nvpairs import nvpairs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Snapshot:
    """Node attributes by lifetime: {"reboot"|"forever": {node uname: {name: value}}}."""

    __slots__ = ("values",)

    def __init__(self, values: dict[str, dict[str, dict[str, str]]]):
        self.values = values

    def get(self, name: str, node: str, lifetime: str = "reboot") -> str | None:
        if lifetime not in ("reboot", "forever"):
            raise ValueError(f"lifetime must be 'reboot' or 'forever', not {lifetime!r}")
        return self.values[lifetime].get(node, {}).get(name)


def _pairs(element) -> dict[str, str] | None:
    """The node's attributes; None when a name is set twice with different values."""
    return nvpairs(element, "instance_attributes", strict=True)


def parse(text: str) -> Snapshot | None:
    """The node attributes of a CIB document (None: unparseable or ambiguous)."""
    import xml.etree.ElementTree as ET  # noqa: S405 - Pacemaker's own CIB

    try:
        root = ET.fromstring(text)  # noqa: S314 - Pacemaker's own CIB
    except ET.ParseError:
        return None
    names: dict[str, str] = {}  # node id -> uname
    forever: dict[str, dict[str, str]] = {}
    for node in root.iterfind("./configuration/nodes/node"):
        uname = node.get("uname")
        if not uname:
            continue
        names[node.get("id", "")] = uname
        pairs = _pairs(node)
        if pairs is None:
            return None
        forever[uname] = pairs
    reboot: dict[str, dict[str, str]] = {}
    for state in root.iterfind("./status/node_state"):
        uname = names.get(state.get("id", "")) or state.get("uname")
        if not uname:
            continue
        merged: dict[str, str] = {}
        for transient in state.findall("transient_attributes"):
            pairs = _pairs(transient)
            if pairs is None or any(merged.get(k, v) != v for k, v in pairs.items()):
                return None
            merged.update(pairs)
        if uname in reboot and reboot[uname] != merged:
            return None
        reboot[uname] = merged
    return Snapshot({"reboot": reboot, "forever": forever})


def read(env: Mapping[str, str] | None = None) -> Snapshot | None:
    """The current CIB's node attributes (honours CIB_file); None when it cannot be read."""
    try:
        out = subprocess.run(["cibadmin", "--query"], capture_output=True, text=True,
                             timeout=30, check=False, stdin=subprocess.DEVNULL,
                             env=dict(os.environ if env is None else env))
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return parse(out.stdout)
