"""Reading an existing CIB: what resources, constraints and properties it already has.

Only the configuration section matters to a plan; the status section is what
``verify`` reads (through crm_simulate), not this module.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import xml.etree.ElementTree as ET

from pacestack import cib_nvpairs
from pacestack.errors import ConfigError, RuntimeFailure


@dataclasses.dataclass(frozen=True)
class Primitive:
    id: str
    agent: str  # ocf:heartbeat:IPaddr2, systemd:memcached, stonith:fence_ipmilan
    params: dict[str, str]
    meta: dict[str, str]
    monitor_ops: tuple[tuple[str, str], ...]  # (role or "", interval) of recurring monitors
    clone_id: str | None = None  # the clone (or promotable clone) wrapping it
    clone_meta: dict[str, str] = dataclasses.field(default_factory=dict)
    group_id: str | None = None

    @property
    def mode(self) -> str:
        if self.clone_id is None:
            return "single"
        return "promotable" if self.clone_meta.get("promotable") == "true" else "clone"


@dataclasses.dataclass(frozen=True)
class Constraint:
    id: str
    kind: str  # order | colocation | location | ...
    attrs: dict[str, str]

    def signature(self) -> tuple:
        """What makes two constraints the same, whatever their ids."""
        a = self.attrs
        if self.kind == "order":
            return ("order", a.get("first"), a.get("first-action", "start"), a.get("then"),
                    a.get("then-action", a.get("first-action", "start")),
                    a.get("kind", "Mandatory") if "score" not in a else a["score"],
                    a.get("symmetrical", "true").lower())
        if self.kind == "colocation":
            return ("colocation", a.get("rsc"), a.get("rsc-role", "Started"),
                    a.get("with-rsc"), a.get("with-rsc-role", "Started"),
                    a.get("score", "INFINITY").replace("+", "").upper())
        return (self.kind, tuple(sorted(a.items())))


@dataclasses.dataclass(frozen=True)
class Cib:
    properties: dict[str, str]
    primitives: dict[str, Primitive]  # resources, by primitive id
    stonith: dict[str, Primitive]
    constraints: dict[str, Constraint]
    nodes: tuple[str, ...]
    ids: frozenset[str]  # every id in the configuration (pcs refuses to reuse one)
    resource_defaults: dict[str, str] = dataclasses.field(default_factory=dict)  # rsc_defaults

    def by_any_id(self, ident: str) -> Primitive | None:
        """The primitive whose own or clone id is ``ident``."""
        if ident in self.primitives:
            return self.primitives[ident]
        return next((p for p in self.primitives.values() if p.clone_id == ident), None)

    def constraint_signatures(self) -> dict[tuple, str]:
        return {c.signature(): c.id for c in self.constraints.values()}


def nvpairs(elem: ET.Element | None, tag: str = "instance_attributes") -> dict[str, str]:
    """name -> value of the nvpairs in ``elem``'s ``tag`` blocks (instance_attributes,
    meta_attributes, cluster_property_set...), the last value of a repeated name."""
    return cib_nvpairs.nvpairs(elem, tag) or {}


def agent_name(prim: ET.Element) -> str:
    """A primitive's agent as pcs names it: class:provider:type, or class:type."""
    klass, provider, kind = prim.get("class", ""), prim.get("provider"), prim.get("type", "")
    return f"{klass}:{provider}:{kind}" if provider else f"{klass}:{kind}"


def _primitive(prim: ET.Element, clone: ET.Element | None, group: ET.Element | None
               ) -> Primitive:
    ops = tuple(
        (op.get("role", ""), op.get("interval", ""))
        for op in prim.findall("operations/op")
        if op.get("name") == "monitor"
        and op.get("interval", "0").rstrip("ms") not in ("", "0")  # the probe is not one
    )
    return Primitive(
        id=prim.get("id", ""), agent=agent_name(prim),
        params=nvpairs(prim, "instance_attributes"), meta=nvpairs(prim, "meta_attributes"),
        monitor_ops=ops,
        clone_id=clone.get("id") if clone is not None else None,
        clone_meta=nvpairs(clone, "meta_attributes") if clone is not None else {},
        group_id=group.get("id") if group is not None else None,
    )


def parse(xml_text: str, source: str = "CIB") -> Cib:
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise ConfigError(f"{source}: not a CIB: {exc}") from None
    config = root.find("configuration")
    if root.tag != "cib" or config is None:
        raise ConfigError(f"{source}: not a CIB: no <cib><configuration>")
    props = nvpairs(config.find("crm_config"), "cluster_property_set")
    prims: dict[str, Primitive] = {}
    stonith: dict[str, Primitive] = {}

    def add(prim, clone=None, group=None):
        p = _primitive(prim, clone, group)
        (stonith if p.agent.startswith("stonith:") else prims)[p.id] = p

    resources = config.find("resources")
    for child in (resources if resources is not None else []):
        if child.tag == "primitive":
            add(child)
        elif child.tag == "group":
            for prim in child.findall("primitive"):
                add(prim, group=child)
        elif child.tag in ("clone", "master"):
            for prim in child.findall("primitive"):
                add(prim, clone=child)
            for group in child.findall("group"):
                for prim in group.findall("primitive"):
                    add(prim, clone=child, group=group)
    constraints: dict[str, Constraint] = {}
    cons = config.find("constraints")
    for c in (cons if cons is not None else []):
        kind = c.tag.removeprefix("rsc_")
        constraints[c.get("id", "")] = Constraint(c.get("id", ""), kind, dict(c.attrib))
    nodes = tuple(n.get("uname", "") for n in config.findall("nodes/node"))
    ids = frozenset(e.get("id") for e in config.iter() if e.get("id"))
    return Cib(props, prims, stonith, constraints, nodes, ids,
               nvpairs(config.find("rsc_defaults"), "meta_attributes"))


def read_file(path: str) -> Cib:
    try:
        with open(path, encoding="utf-8") as fh:
            return parse(fh.read(), path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such CIB file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def query_live(timeout: float = 30) -> str:
    """The live cluster's CIB XML (cibadmin talks to the local pacemaker)."""
    env = {k: v for k, v in os.environ.items() if k != "CIB_file"}
    try:
        proc = subprocess.run(["cibadmin", "--query"], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except FileNotFoundError:
        raise RuntimeFailure("cibadmin not found: install pacemaker-cli-utils") from None
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"cibadmin --query: no answer in {timeout:.0f} s") from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise RuntimeFailure(f"cibadmin --query: {msg} (is the cluster running here?)")
    return proc.stdout


def empty_cib() -> str:
    """A fresh CIB with the schema this Pacemaker writes."""
    proc = subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True, check=True)
    return proc.stdout
