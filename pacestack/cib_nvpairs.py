"""The one reader of the CIB's name/value sets (nvpair elements), for every part.

Pacemaker keeps resource parameters, meta attributes, cluster properties and node
attributes as ``<nvpair name= value=>`` inside blocks (instance_attributes,
meta_attributes, cluster_property_set, a node's or node_state's attributes). The
agents read node attributes to decide a bootstrap, the cluster part reads the
configuration: both through here, so a rule about the format holds everywhere.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the agents import this on their monitor path: no typing module
if TYPE_CHECKING:
    from xml.etree.ElementTree import Element


def nvpairs(elem: Element | None, tag: str = "instance_attributes", *,
            strict: bool = False) -> dict[str, str] | None:
    """name -> value of the nvpairs in ``elem``'s ``tag`` blocks ({} for no element).

    An nvpair without a name is skipped. A name given twice: the last value wins,
    unless ``strict``, where two different values give None (crm_attribute refuses
    to choose between them, and a decision read from them must not choose either).
    """
    out: dict[str, str] = {}
    if elem is None:
        return out
    for block in elem.findall(tag):
        for nv in block.findall("nvpair"):
            name, value = nv.get("name"), nv.get("value", "")
            if name is None:
                continue
            if strict and name in out and out[name] != value:
                return None
            out[name] = value
    return out
