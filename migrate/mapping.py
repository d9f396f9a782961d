"""The mapping file: what the operator tells ``pacestack migrate`` about the cutover.

An ini file (no new dependency, and what OpenStack operators write all day).
Every error names ``FILE:LINE`` and is one line. The format is documented in
docs/migrate-mapping.md; examples/seed-mapping.conf is the seed's cutover::

    [hosts]                 # old service host = new service host
    old-control = controller
    [endpoints]             # old host in endpoint URLs = new host
    ocata-vm = controller.domain
    [segments]              # selector = target
    flat dmz = vlan provider 100
    vlan physnet1 = vxlan
    network 5b99...c2 = vxlan 5000
    [computes]              # old compute host (or: instance UUID) = new host [node]
    compute01 = compute05 compute05.domain
    [options]
    overlay_mtu = 1422
    firewall_driver = openvswitch
"""

from __future__ import annotations

import dataclasses
import re
import uuid

from pacestack import files
from pacestack.errors import ConfigError

# Host names as OpenStack stores them: RFC 1123 labels plus '_' (seen in the wild).
_HOST_RE = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,253}[A-Za-z0-9_])?$")
_PHYSNET_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
NETWORK_TYPES = ("flat", "vlan", "vxlan")
FIREWALL_DRIVERS = ("openvswitch", "iptables_hybrid", "noop")
SECTIONS = ("hosts", "endpoints", "segments", "computes", "options", "keep")
CHOICES = ("rename", "remove")
_COLUMN_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
OPTIONS = {
    "overlay_mtu": "MTU of networks that become VXLAN (default: underlay MTU minus overhead)",
    "underlay_mtu": "physical MTU (default: neutron.conf global_physnet_mtu, else 1500)",
    "overlay_ip_version": "4 or 6: the tunnel's IP version (50 or 70 bytes of overhead)",
    "firewall_driver": "openvswitch (default), iptables_hybrid or noop: vif_details of ovs ports",
    "integration_bridge": "OVS integration bridge (default br-int)",
    "nova_control_services": "rename (default) or remove: nova services other than "
                             "nova-compute registered on an old service host",
    "neutron_agents": "rename (default) or remove: DHCP/L3/metadata agents of an old service "
                      "host (rename keeps their network and router scheduling)",
}


@dataclasses.dataclass(frozen=True)
class SegmentSelector:
    """Which old segments a [segments] line matches."""

    network_type: str | None = None  # flat/vlan/vxlan, None: any
    physical_network: str | None = None  # None: any
    network_id: str | None = None

    @property
    def specificity(self) -> int:
        # a network id beats type+physnet beats type alone
        if self.network_id:
            return 3
        return 2 if self.physical_network else 1

    def matches(self, network_id: str, network_type: str, physnet: str | None) -> bool:
        if self.network_id:
            return self.network_id == network_id
        if self.network_type and self.network_type != network_type:
            return False
        return self.physical_network is None or self.physical_network == physnet

    def __str__(self) -> str:
        if self.network_id:
            return f"network {self.network_id}"
        return " ".join(x for x in (self.network_type, self.physical_network) if x)


@dataclasses.dataclass(frozen=True)
class SegmentTarget:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None  # None for vxlan: keep the old id as VNI

    def __str__(self) -> str:
        parts = [self.network_type, self.physical_network,
                 None if self.segmentation_id is None else str(self.segmentation_id)]
        return " ".join(p for p in parts if p)


@dataclasses.dataclass(frozen=True)
class SegmentRule:
    selector: SegmentSelector
    target: SegmentTarget
    line: int


@dataclasses.dataclass(frozen=True)
class ComputeMove:
    old_host: str | None  # every instance of this host ...
    instance_uuid: str | None  # ... or one instance
    new_host: str
    new_node: str
    line: int
    rename: bool = False  # rename the old host in place instead of moving its instances


@dataclasses.dataclass
class Mapping:
    path: str
    hosts: dict[str, str] = dataclasses.field(default_factory=dict)
    endpoints: dict[str, str] = dataclasses.field(default_factory=dict)
    segments: list[SegmentRule] = dataclasses.field(default_factory=list)
    computes: list[ComputeMove] = dataclasses.field(default_factory=list)
    overlay_mtu: int | None = None
    underlay_mtu: int | None = None
    overlay_ip_version: int | None = None
    firewall_driver: str = "openvswitch"
    integration_bridge: str = "br-int"
    nova_control_services: str = "rename"
    neutron_agents: str = "rename"
    # "db.table.column" -> why the operator keeps old names there (residue.py)
    keep: dict[str, str] = dataclasses.field(default_factory=dict)
    lines: dict[str, int] = dataclasses.field(default_factory=dict)  # "section key" -> line

    def segment_rule(self, network_id: str, network_type: str,
                     physnet: str | None) -> SegmentRule | None:
        best = None
        for rule in self.segments:
            if rule.selector.matches(network_id, network_type, physnet):
                if best is None or rule.selector.specificity > best.selector.specificity:
                    best = rule
        return best

    def to_dict(self) -> dict:
        return {
            "path": self.path, "hosts": self.hosts, "endpoints": self.endpoints,
            "segments": [{"selector": str(r.selector), "target": str(r.target)}
                         for r in self.segments],
            "computes": [dataclasses.asdict(c) for c in self.computes],
            "overlay_mtu": self.overlay_mtu, "firewall_driver": self.firewall_driver,
            "nova_control_services": self.nova_control_services,
            "neutron_agents": self.neutron_agents, "keep": self.keep,
        }


def _shown(text: str) -> str:
    """A value quoted for an error message: never more than one line, never huge."""
    text = text if len(text) <= 60 else text[:57] + "..."
    return repr(text)


def _host(where: str, text: str, what: str) -> str:
    if not _HOST_RE.match(text):
        raise ConfigError(f"{where}: {what} {_shown(text)} is not a valid host name")
    return text


def _uuid(where: str, text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ConfigError(f"{where}: {_shown(text)} is not a UUID") from None


def _physnet(where: str, text: str) -> str:
    if not _PHYSNET_RE.match(text):
        raise ConfigError(f"{where}: {_shown(text)} is not a valid physical network name")
    return text


def _int(where: str, text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise ConfigError(f"{where}: {what} {_shown(text)} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {what} {value} is outside {lo}..{hi}")
    return value


def _selector(where: str, key: str) -> SegmentSelector:
    words = key.split()
    if len(words) == 2 and words[0] == "network":
        return SegmentSelector(network_id=_uuid(where, words[1]))
    if not words or len(words) > 2 or words[0] not in NETWORK_TYPES:
        raise ConfigError(f"{where}: segment selector {_shown(key)} must be 'TYPE [PHYSNET]' "
                          f"(TYPE one of {', '.join(NETWORK_TYPES)}) or 'network UUID'")
    physnet = None
    if len(words) == 2 and words[1] != "*":
        physnet = _physnet(where, words[1])
    return SegmentSelector(network_type=words[0], physical_network=physnet)


def _target(where: str, value: str) -> SegmentTarget:
    words = value.split()
    if not words or words[0] not in NETWORK_TYPES:
        raise ConfigError(f"{where}: segment target {_shown(value)} must start with one of "
                          f"{', '.join(NETWORK_TYPES)}")
    kind = words[0]
    if kind == "vlan":
        if len(words) != 3:
            raise ConfigError(f"{where}: a vlan target is 'vlan PHYSNET VLAN_ID', "
                              f"got {_shown(value)}")
        return SegmentTarget("vlan", _physnet(where, words[1]),
                             _int(where, words[2], "VLAN id", 1, 4094))
    if kind == "vxlan":
        if len(words) > 2:
            raise ConfigError(f"{where}: a vxlan target is 'vxlan [VNI]', got {_shown(value)}")
        vni = _int(where, words[1], "VNI", 1, 2**24 - 1) if len(words) == 2 else None
        return SegmentTarget("vxlan", None, vni)
    if len(words) != 2:
        raise ConfigError(f"{where}: a flat target is 'flat PHYSNET', got {_shown(value)}")
    return SegmentTarget("flat", _physnet(where, words[1]), None)


def _strip_comment(line: str) -> str:
    # '#' or ';' starts a comment at the line start or after whitespace
    for i, ch in enumerate(line):
        if ch in "#;" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def parse_text(text: str, path: str = "<mapping>") -> Mapping:
    mp = Mapping(path=path)
    section: str | None = None
    seen: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{path}:{lineno}"
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{where}: section header {_shown(line)} has no closing ']'")
            section = line[1:-1].strip()
            if section not in SECTIONS:
                raise ConfigError(f"{where}: unknown section [{_shown(section)[1:-1]}] "
                                  f"(known: {', '.join(SECTIONS)})")
            continue
        if "=" not in line:
            raise ConfigError(f"{where}: expected 'KEY = VALUE', got {_shown(line)}")
        if section is None:
            raise ConfigError(f"{where}: {_shown(line)} is outside any [section]")
        key, value = (part.strip() for part in line.split("=", 1))
        key = " ".join(key.split())
        if not key:
            raise ConfigError(f"{where}: empty key")
        if not value:
            raise ConfigError(f"{where}: {_shown(key)} has no value")
        if (section, key) in seen:
            raise ConfigError(f"{where}: {_shown(key)} in [{section}] repeats line "
                              f"{seen[(section, key)]}")
        seen[(section, key)] = lineno
        mp.lines[f"{section} {key}"] = lineno
        _parse_entry(mp, section, key, value, where, lineno)
    _check_whole(mp)
    return mp


def _parse_entry(mp: Mapping, section: str, key: str, value: str, where: str,
                 lineno: int) -> None:
    if section == "hosts":
        old = _host(where, key, "old host")
        new = _host(where, value, "new host")
        if old == new:
            raise ConfigError(f"{where}: host {old!r} is mapped to itself")
        mp.hosts[old] = new
    elif section == "endpoints":
        mp.endpoints[_host(where, key, "old endpoint host").lower()] = \
            _host(where, value, "new endpoint host")
    elif section == "segments":
        mp.segments.append(SegmentRule(_selector(where, key), _target(where, value), lineno))
    elif section == "computes":
        words = key.split()
        targets = value.split()
        rename = len(targets) > 1 and targets[-1] == "rename"
        if rename:
            targets = targets[:-1]
        if len(targets) not in (1, 2):
            raise ConfigError(f"{where}: a compute target is 'NEW_HOST [NEW_NODE] [rename]', "
                              f"got {_shown(value)}")
        new_host = _host(where, targets[0], "new compute host")
        new_node = _host(where, targets[-1], "new compute node")
        if len(words) == 2 and words[0] == "instance":
            if rename:
                raise ConfigError(f"{where}: 'rename' renames a whole compute host, not one "
                                  "instance")
            mp.computes.append(ComputeMove(None, _uuid(where, words[1]), new_host, new_node,
                                           lineno))
        elif len(words) == 1:
            old = _host(where, words[0], "old compute host")
            if old == new_host:
                raise ConfigError(f"{where}: compute host {old!r} is mapped to itself")
            mp.computes.append(ComputeMove(old, None, new_host, new_node, lineno, rename))
        else:
            raise ConfigError(f"{where}: {_shown(key)} must be 'OLD_HOST' or 'instance UUID'")
    elif section == "options":
        if key == "overlay_mtu":
            mp.overlay_mtu = _int(where, value, "overlay_mtu", 576, 9216)
        elif key == "underlay_mtu":
            mp.underlay_mtu = _int(where, value, "underlay_mtu", 576, 9216)
        elif key == "overlay_ip_version":
            mp.overlay_ip_version = _int(where, value, "overlay_ip_version", 4, 6)
            if mp.overlay_ip_version not in (4, 6):
                raise ConfigError(f"{where}: overlay_ip_version must be 4 or 6")
        elif key == "firewall_driver":
            if value not in FIREWALL_DRIVERS:
                raise ConfigError(f"{where}: firewall_driver {_shown(value)} must be one of "
                                  f"{', '.join(FIREWALL_DRIVERS)}")
            mp.firewall_driver = value
        elif key == "integration_bridge":
            mp.integration_bridge = _host(where, value, "integration_bridge")
        elif key in ("nova_control_services", "neutron_agents"):
            if value not in CHOICES:
                raise ConfigError(f"{where}: {key} {_shown(value)} must be one of "
                                  f"{', '.join(CHOICES)}")
            setattr(mp, key, value)
        else:
            raise ConfigError(f"{where}: unknown option {_shown(key)} in [options] "
                              f"(known: {', '.join(OPTIONS)})")
    elif section == "keep":
        if not _COLUMN_RE.match(key):
            raise ConfigError(f"{where}: {_shown(key)} must be DB.TABLE.COLUMN "
                              "(as RESIDUE_UNCOVERED names it)")
        mp.keep[key] = value


def _check_whole(mp: Mapping) -> None:
    """Conflicts that no single line shows."""
    targets: dict[tuple, int] = {}
    for rule in mp.segments:
        t = rule.target
        if t.segmentation_id is None:
            continue
        k = (t.network_type, t.physical_network, t.segmentation_id)
        if k in targets:
            raise ConfigError(f"{mp.path}:{rule.line}: segmentation id {t} is also the target "
                              f"of line {targets[k]}")
        targets[k] = rule.line
    olds = {}
    for move in mp.computes:
        k = move.old_host or move.instance_uuid
        if k in olds:
            raise ConfigError(f"{mp.path}:{move.line}: {k} is also mapped on line {olds[k]}")
        olds[k] = move.line


def load(path: str) -> Mapping:
    files.check_readable(path, "mapping file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such mapping file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a mapping file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse_text(text, path)
