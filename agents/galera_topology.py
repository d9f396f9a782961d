"""Who is in a Galera cluster, from the galera agent's parameters: the data members
(Pacemaker node names), their gcomm addresses, and the arbitrators (garbd)."""

from __future__ import annotations

import re
from collections import namedtuple


class Topology(namedtuple("Topology", "members addresses arbitrators")):
    """members: Pacemaker node names of the data members; addresses: member -> gcomm
    address; arbitrators: gcomm addresses that are no member (garbd)."""

    __slots__ = ()


def parse_cluster_address(text: str) -> list[str]:
    """``gcomm://a,b:4567,c`` → ['a', 'b:4567', 'c'] (options after '?' dropped)."""
    text = text.strip()
    if not text.startswith("gcomm://"):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} does not start with gcomm://")
    hosts = text[len("gcomm://"):].split("?", 1)[0]
    items = [h.strip() for h in hosts.split(",")]
    if not hosts or any(not h or not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+", h) for h in items):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} lists no valid hosts")
    if len(set(items)) != len(items):
        raise ValueError(f"wsrep_cluster_address {text[:80]!r} lists a host twice")
    return items


def parse_host_map(text: str) -> dict[str, str]:
    """``controller01:10.0.0.11;controller02:10.0.0.12`` → {node: address}."""
    out: dict[str, str] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        node, sep, addr = entry.partition(":")
        node, addr = node.strip(), addr.strip()
        if not sep or not node or not addr:
            raise ValueError(f"cluster_host_map entry {entry[:60]!r} is not node:address")
        if node in out:
            raise ValueError(f"cluster_host_map names {node} twice")
        out[node] = addr
    return out


def topology(cluster_address: str, host_map: str, me: str) -> Topology:
    """Members and arbitrators from the parameters; ValueError names what is wrong."""
    hosts = parse_cluster_address(cluster_address)
    mapping = parse_host_map(host_map) if host_map.strip() else {h: h for h in hosts}
    if me not in mapping:
        raise ValueError(f"this node {me} is not in cluster_host_map "
                         f"({', '.join(sorted(mapping)) or 'empty'})")
    unknown = [f"{n}={a}" for n, a in mapping.items() if a not in hosts]
    if unknown:
        raise ValueError(f"cluster_host_map addresses {', '.join(unknown)} are not in "
                         "wsrep_cluster_address")
    mapped = set(mapping.values())
    return Topology(tuple(sorted(mapping)), mapping,
                    tuple(h for h in hosts if h not in mapped))
