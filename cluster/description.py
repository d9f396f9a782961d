"""The cluster description: oslo.config file(s) → a validated, plain ``Description``.

Every problem is a ``ConfigError`` with one line naming the file, the group and the
option, raised before anything is planned or written.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Sequence

from oslo_config import cfg
from pacestack.cluster import options, profile

from pacestack import files
from pacestack.errors import ConfigError

OCF_ROOT = "/usr/lib/ocf"
PROFILE_ORIGIN = "built-in profile"
# Pacemaker ids are XML IDs; pcs refuses anything else
_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_FILE_BYTES = 1024 * 1024  # a two-node description is a few KiB
_CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_AGENT_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:\\-]*$")
_NODE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*$")
_SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]\s*$")


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    address: str


@dataclasses.dataclass(frozen=True)
class Vip:
    address: str
    cidr_netmask: int
    nic: str | None
    name: str
    resource: str
    fronts: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Fencing:
    name: str
    agent: str
    params: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Arbitrator:
    host: str
    address: str | None


@dataclasses.dataclass(frozen=True)
class Resource:
    name: str
    agent: str
    params: dict[str, str]
    mode: str = "clone"  # clone | single | promotable
    after: tuple[str, ...] = ()
    with_: tuple[str, ...] = ()
    clients_reconnect: bool = False
    meta: dict[str, str] = dataclasses.field(default_factory=dict)
    clone_meta: dict[str, str] = dataclasses.field(default_factory=dict)
    monitor_interval: int | None = None
    origin: str = PROFILE_ORIGIN  # the file that defined or last overrode it

    @property
    def pcs_id(self) -> str:
        """The id constraints refer to: the clone for clone/promotable resources."""
        return self.name if self.mode == "single" else f"{self.name}-clone"


@dataclasses.dataclass(frozen=True)
class Description:
    name: str
    nodes: tuple[Node, ...]
    vip: Vip
    resources: tuple[Resource, ...]  # dependency order: every 'after' comes first
    fencing: tuple[Fencing, ...] = ()
    arbitrator: Arbitrator | None = None
    shared_host: str = "controller"
    corosync_conf: str | None = None
    disabled: tuple[str, ...] = ()  # resources switched off with enabled = false
    sources: tuple[str, ...] = ()

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def resource(self, name: str) -> Resource | None:
        return next((r for r in self.resources if r.name == name), None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Where:
    """Which file set each (group, option), for error messages and overrides."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)
        self.raw: dict[str, dict[str, tuple[str, list[str]]]] = {}
        for path in self.paths:
            _check_duplicate_groups(path)
            for section, values in files.read_ini(path).items():
                slot = self.raw.setdefault(section, {})
                for key, vals in values.items():
                    slot[key] = (path, vals)

    def file(self, group: str, option: str | None = None) -> str:
        slot = self.raw.get(group, {})
        if option and option in slot:
            return slot[option][0]
        if slot:
            return next(iter(slot.values()))[0]
        return self.paths[-1] if self.paths else PROFILE_ORIGIN

    def is_set(self, group: str, option: str) -> bool:
        return option in self.raw.get(group, {})

    def fail(self, group: str, option: str | None, message: str) -> ConfigError:
        where = f"[{group}] {option}" if option else f"[{group}]"
        return ConfigError(f"{self.file(group, option)}: {where}: {message}")


def _check_duplicate_groups(path: str) -> None:
    # oslo.config silently merges a repeated [group]; for named resources that hides
    # a copy-paste mistake, so it is an error
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB: "
                              "not a cluster description")
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError:
        return  # parse_file reports it with the right wording
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        m = _SECTION_RE.match(line)
        if not m:
            continue
        name = m.group(1).strip()
        if name in seen and name.split(":", 1)[0] in ("resource", "fencing"):
            raise ConfigError(f"{path}: [{name}]: duplicate name: the group appears twice "
                              f"(lines {seen[name]} and {lineno})")
        seen.setdefault(name, lineno)


def _check_types(where: _Where) -> None:
    """Unknown options in our groups and values their type rejects."""
    for section, values in where.raw.items():
        kind = section.split(":", 1)[0] if ":" in section else None
        if kind in options.TEMPLATES:
            opts = options.TEMPLATES[kind]
            if not section.split(":", 1)[1]:
                raise where.fail(section, None, f"a [{kind}:NAME] group needs a name")
        elif section in options.FIXED_GROUPS:
            opts = options.FIXED_GROUPS[section][1]
        else:
            continue  # another part's group
        by_name = {o.dest: o for o in opts}
        for key, (_path, raws) in values.items():
            opt = by_name.get(key)
            if opt is None:
                raise where.fail(section, key, f"unknown option {key}")
            for raw in raws:
                try:
                    opt.type(raw)
                except (ValueError, TypeError) as exc:
                    if isinstance(opt, cfg.IPOpt):
                        reason = f"{raw!r} is not an IP address"
                    else:
                        reason = f"bad value {raw!r}: {' '.join(str(exc).split())}"
                    raise where.fail(section, key, reason) from None


def _ip(where: _Where, group: str, option: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise where.fail(group, option, f"{value!r} is not an IP address") from None


def agent_problem(agent: str) -> str | None:
    """Why ``agent`` cannot be used here, or None. ocf agents must be installed (pcs
    reads their meta-data); systemd units are checked on the nodes by preflight."""
    parts = agent.split(":")
    if len(parts) == 3 and parts[0] == "ocf" and all(parts):
        if not all(_AGENT_PART_RE.match(part) for part in parts[1:]):
            return f"unknown agent {agent!r}: provider and type are plain names"
        path = os.path.join(OCF_ROOT, "resource.d", parts[1], parts[2])
        if not os.access(path, os.X_OK):
            return f"unknown agent {agent!r}: {path} is not installed"
        return None
    if len(parts) == 2 and parts[0] in ("systemd", "lsb", "service") and parts[1]:
        if not _UNIT_RE.match(parts[1]):
            return f"unknown agent {agent!r}: {parts[1]!r} is not a unit name"
        return None
    return (f"unknown agent {agent!r}: expected ocf:PROVIDER:TYPE or systemd:UNIT")


def load(paths: Sequence[str], *, check_agents: bool = True) -> Description:
    """Read the description from ``paths`` (later files override earlier ones)."""
    if not paths:
        raise ConfigError("no cluster description: pass --description FILE "
                          "(or --config-file FILE)")
    where = _Where(paths)
    _check_types(where)
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    named = {"resource": [], "fencing": []}
    for section in where.raw:
        kind, _, name = section.partition(":")
        if kind in named and name:
            named[kind].append(name)
            options.register_named_group(conf, kind, name)
    conf([], project="pacestack", default_config_files=list(paths), default_config_dirs=[],
         use_env=False)

    if not _CLUSTER_NAME_RE.match(conf.cluster.name or ""):
        # corosync's cluster_name, and an argument of pcs cluster setup
        raise where.fail("cluster", "name", f"{conf.cluster.name!r} is not a cluster name "
                         "(up to 32 letters, digits, _ . -; starting with a letter or digit)")
    nodes = _nodes(where, conf)
    vip = _vip(where, conf)
    arbitrator = None
    if conf.arbitrator.host:
        address = conf.arbitrator.address
        arbitrator = Arbitrator(conf.arbitrator.host, str(address) if address else None)
    fencing = tuple(_fencing(where, conf, name) for name in named["fencing"])
    resources = _resources(where, conf, named["resource"], nodes, arbitrator)
    _check_ids(where, vip, resources, fencing)
    _check_references(where, vip, resources)
    ordered = _dependency_order(where, resources)
    if check_agents:
        for r in ordered:
            problem = agent_problem(r.agent)
            if problem:
                raise ConfigError(f"{r.origin}: [resource:{r.name}] agent: {problem}")
    return Description(
        name=conf.cluster.name, nodes=nodes, vip=vip, resources=tuple(ordered),
        fencing=fencing, arbitrator=arbitrator, shared_host=conf.cluster.shared_host,
        corosync_conf=conf.cluster.corosync_conf,
        disabled=tuple(n for n in named["resource"] if not conf[f"resource:{n}"].enabled),
        sources=tuple(os.path.abspath(p) for p in paths),
    )


def _nodes(where: _Where, conf: cfg.ConfigOpts) -> tuple[Node, ...]:
    names = [n.strip() for n in conf.cluster.nodes]
    addresses = [a.strip() for a in conf.cluster.addresses]
    if len(names) < 2:
        raise where.fail("cluster", "nodes", "list at least two nodes")
    seen: set[str] = set()
    for name in names:
        if not _NODE_RE.match(name):
            raise where.fail("cluster", "nodes", f"{name!r} is not a valid node name")
        if name in seen:
            raise where.fail("cluster", "nodes", f"{name} is listed twice")
        seen.add(name)
    if len(addresses) != len(names):
        raise where.fail("cluster", "addresses",
                         f"{len(addresses)} addresses for {len(names)} nodes")
    addrs = [_ip(where, "cluster", "addresses", a) for a in addresses]
    for i, a in enumerate(addrs):
        if a in addrs[:i]:
            raise where.fail("cluster", "addresses", f"{a} is listed twice")
    return tuple(Node(n, a) for n, a in zip(names, addrs, strict=True))


def _vip(where: _Where, conf: cfg.ConfigOpts) -> Vip:
    if conf.vip.address is None:
        raise where.fail("vip", "address", "missing: the VIP address is required")
    address = _ip(where, "vip", "address", str(conf.vip.address))
    net = f"{address}/{conf.vip.cidr_netmask}"
    try:
        ipaddress.ip_interface(net)
    except ValueError:
        raise where.fail("vip", "cidr_netmask", f"{net} is not a valid address/prefix") from None
    resource = conf.vip.resource
    if not _ID_RE.match(resource):
        raise where.fail("vip", "resource", f"{resource!r} is not a valid Pacemaker id")
    return Vip(address=address, cidr_netmask=conf.vip.cidr_netmask, nic=conf.vip.nic,
               name=conf.vip.name, resource=resource,
               fronts=tuple(f.strip() for f in conf.vip.fronts if f.strip()))


def _fencing(where: _Where, conf: cfg.ConfigOpts, name: str) -> Fencing:
    group = f"fencing:{name}"
    if not _ID_RE.match(name):
        raise where.fail(group, None, f"{name!r} is not a valid Pacemaker id")
    agent = conf[group].agent
    if not agent:
        raise where.fail(group, "agent", "missing: a fence agent such as fence_ipmilan")
    agent = agent.removeprefix("stonith:")
    if check_fence_agent(agent) is not None:
        raise where.fail(group, "agent", check_fence_agent(agent))
    params = dict(conf[group].params)
    _check_keys(where, group, "params", params)
    return Fencing(name, agent, params)


_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


def _check_keys(where: _Where, group: str, option: str, pairs: dict[str, str]) -> None:
    """Every key becomes a ``key=value`` word of a pcs command: one starting with a
    dash (``--force``, ``-f``) would be read by pcs as an option of its own."""
    for key in pairs:
        if not _KEY_RE.match(key.strip()):
            raise where.fail(group, option, f"key {key!r} is not a parameter name "
                             "(letters, digits, _ . : -; not starting with - . :)")


def check_fence_agent(agent: str) -> str | None:
    if not re.match(r"^fence_[A-Za-z0-9_-]+$", agent):
        return f"unknown fence agent {agent!r}: expected fence_NAME"
    if not any(os.access(os.path.join(d, agent), os.X_OK) for d in ("/usr/sbin", "/sbin")):
        return f"unknown fence agent {agent!r}: not installed in /usr/sbin"
    return None


def _resources(where: _Where, conf: cfg.ConfigOpts, names: list[str], nodes, arbitrator
               ) -> list[Resource]:
    base: dict[str, Resource] = {}
    if conf.cluster.profile == "controller":
        for r in profile.controller_stack(
                nodes=[(n.name, n.address) for n in nodes], shared_host=conf.cluster.shared_host,
                arbitrator=(arbitrator.address or arbitrator.host) if arbitrator else None):
            base[r.name] = r
    out: dict[str, Resource] = dict(base)
    for name in names:
        group = f"resource:{name}"
        if not _ID_RE.match(name) or name.endswith("-clone"):
            raise where.fail(group, None, f"{name!r} is not a valid resource name "
                             "(letters, digits, . _ -; not ending in -clone)")
        g = conf[group]
        if not g.enabled:
            out.pop(name, None)
            continue
        fields: dict = {}
        for opt, attr in (("agent", "agent"), ("params", "params"), ("mode", "mode"),
                          ("after", "after"), ("with", "with_"), ("meta", "meta"),
                          ("clients_reconnect", "clients_reconnect"),
                          ("clone_meta", "clone_meta"),
                          ("monitor_interval", "monitor_interval")):
            if where.is_set(group, opt) or name not in base:
                value = g[opt]
                if isinstance(value, list):
                    value = tuple(v.strip() for v in value if v.strip())
                elif isinstance(value, dict):
                    _check_keys(where, group, opt, value)
                    value = {k.strip(): str(v).strip() for k, v in value.items()}
                fields[attr] = value
        if name in base:
            merged = dataclasses.replace(base[name], origin=where.file(group), **fields)
        else:
            if not fields.get("agent"):
                raise where.fail(group, "agent", "missing: every resource needs an agent")
            merged = Resource(name=name, origin=where.file(group), **fields)
        if merged.mode != "single" and "interleave" not in merged.clone_meta:
            # per-node ordering between clones: a service waits for its own node's peers
            merged = dataclasses.replace(
                merged, clone_meta={**merged.clone_meta, "interleave": "true"})
        if merged.mode == "promotable" and "promoted-max" not in merged.clone_meta:
            # multi-primary: every node may be promoted (Galera is)
            merged = dataclasses.replace(
                merged, clone_meta={**merged.clone_meta, "promoted-max": str(len(nodes))})
        if merged.mode == "promotable" and "notify" not in merged.clone_meta:
            # a promotable agent learns its peers' starts and promotions from
            # notifications (Galera scores its joiners there); without them a
            # node waits for its next Unpromoted monitor to be promoted
            merged = dataclasses.replace(
                merged, clone_meta={**merged.clone_meta, "notify": "true"})
        out[name] = merged
    return list(out.values())


def _check_ids(where: _Where, vip: Vip, resources: list[Resource], fencing) -> None:
    taken: dict[str, str] = {vip.resource: "[vip] resource"}
    for f in fencing:
        if f.name in taken:
            raise where.fail(f"fencing:{f.name}", None,
                             f"duplicate name: {f.name} is also {taken[f.name]}")
        taken[f.name] = f"[fencing:{f.name}]"
    for r in resources:
        for ident in {r.name, r.pcs_id}:
            if ident in taken:
                raise ConfigError(f"{r.origin}: [resource:{r.name}]: duplicate name: "
                                  f"{ident} is also {taken[ident]}")
            taken[ident] = f"[resource:{r.name}]"


def _check_references(where: _Where, vip: Vip, resources: list[Resource]) -> None:
    known = {r.name for r in resources} | {vip.resource}
    for r in resources:
        for opt, refs in (("after", r.after), ("with", r.with_)):
            for ref in refs:
                if ref == r.name:
                    raise ConfigError(f"{r.origin}: [resource:{r.name}] {opt}: "
                                      f"{ref} refers to itself")
                if ref not in known:
                    raise ConfigError(f"{r.origin}: [resource:{r.name}] {opt}: no resource "
                                      f"named {ref!r} (disabled or never defined)")
    if where.is_set("vip", "fronts"):
        for ref in vip.fronts:
            if ref not in known:
                raise where.fail("vip", "fronts", f"no resource named {ref!r}")


def _dependency_order(where: _Where, resources: list[Resource]) -> list[Resource]:
    """Resources in an order where every 'after' comes first; a cycle is an error."""
    by_name = {r.name: r for r in resources}
    done: list[Resource] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(r: Resource, path: list[str]) -> None:
        if state.get(r.name) == 2:
            return
        if state.get(r.name) == 1:
            cycle = path[path.index(r.name):] + [r.name]
            first = by_name[cycle[0]]
            raise ConfigError(f"{first.origin}: [resource:{first.name}] after: ordering "
                              f"cycle: {' after '.join(cycle)}")
        state[r.name] = 1
        for dep in r.after:
            if dep in by_name:
                visit(by_name[dep], path + [r.name])
        state[r.name] = 2
        done.append(r)

    for r in resources:
        visit(r, [])
    return done
