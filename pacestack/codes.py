"""Every finding code pacestack reports, declared once: its name, severity, the
typed fields of its payload, and the message built from them.

A call site names the code and gives the payload; it never writes the message:

    codes.CINDER_HOST_MISMATCH(subject, node="controller01", host="c1", shared="controller")

so one code always means one thing, `--format json` carries the fields a script
needs (not only prose), and the whole vocabulary can be read in this file. The
rehome state machine's few codes are the only ones still named at their call
sites (tests/core/test_codes.py holds them to that).
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from pacestack.findings import Finding, Severity

ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# what a payload field may hold; lists are joined with ", " in the message
_TYPES = {str: (str,), int: (int,), list: (list, tuple), "str?": (str, type(None)),
          "int?": (int, type(None))}


class _Formatter(string.Formatter):
    def format_field(self, value, format_spec):  # noqa: ANN001 - string.Formatter's own
        if isinstance(value, (list, tuple)):
            return ", ".join(str(v) for v in value) or "none"
        return super().format_field(value, format_spec)


_FORMAT = _Formatter()


class Code:
    """One registered code; calling it makes a Finding with a checked payload."""

    def __init__(self, name: str, severity: Severity, template: str, **fields) -> None:
        used = {f for _, f, _, _ in _FORMAT.parse(template) if f}
        if used != set(fields):
            raise ValueError(f"{name}: template fields {sorted(used)} != declared "
                             f"{sorted(fields)}")
        self.name, self.severity, self.template = name, severity, template
        self.fields: dict[str, object] = dict(fields)

    def __call__(self, subject: str, **payload) -> Finding:
        if set(payload) != set(self.fields):
            raise TypeError(f"{self.name}: payload {sorted(payload)} != {sorted(self.fields)}")
        for key, kind in self.fields.items():
            if not isinstance(payload[key], _TYPES[kind]):
                raise TypeError(f"{self.name}: {key} must be {kind}, "
                                f"not {type(payload[key]).__name__}")
        clean = {k: list(v) if isinstance(v, tuple) else v for k, v in payload.items()}
        return Finding(self.severity, self.name, subject,
                       _FORMAT.format(self.template, **clean), clean)

    def __repr__(self) -> str:
        return f"<code {self.name} ({self.severity})>"


REGISTRY: dict[str, Code] = {}


def _code(name: str, severity: Severity, template: str, **fields) -> Code:
    if name in REGISTRY:
        raise ValueError(f"finding code {name} declared twice")
    REGISTRY[name] = code = Code(name, severity, template, **fields)
    return code


def lookup(name: str) -> Code:
    return REGISTRY[name]


def declared() -> Mapping[str, Code]:
    return dict(REGISTRY)


# ---- configuration files (pacestack config check) ---------------------------
CONFIG_UNKNOWN_GROUP = _code(
    "CONFIG_UNKNOWN_GROUP", ERROR, "unknown group [{group}]", group=str)
CONFIG_UNKNOWN_OPTION = _code(
    "CONFIG_UNKNOWN_OPTION", ERROR, "unknown option {option} in [{group}]",
    option=str, group=str)
CONFIG_BAD_VALUE = _code(
    "CONFIG_BAD_VALUE", ERROR, "bad value {value} for {option}{reason}",
    value=str, option=str, reason=str)

# ---- cluster preflight (the controllers' files before the cluster exists) ---
NODE_NOT_DESCRIBED = _code(
    "NODE_NOT_DESCRIBED", ERROR, "this node {node!r} is not one of {nodes}",
    node=str, nodes=list)
PEER_NOT_CHECKED = _code(
    "PEER_NOT_CHECKED", WARNING,
    "the peer's files were not given: only this node is checked")
CINDER_CONF_MISSING = _code(
    "CINDER_CONF_MISSING", ERROR, "{node}: cinder.conf not found", node=str)
CINDER_HOST_MISMATCH = _code(
    "CINDER_HOST_MISMATCH", ERROR,
    "{node}: host is {host!r}, not the shared name {shared!r}: volumes would be owned "
    "by one controller and unmanageable after a failover",
    node=str, host="str?", shared=str)
CINDER_HOST_DIFFERS = _code(
    "CINDER_HOST_DIFFERS", ERROR, "cinder.conf host differs between nodes: {hosts}",
    hosts=list)
KEYSTONE_KEYS_MISSING = _code(
    "KEYSTONE_KEYS_MISSING", ERROR, "{node}: no keys in {directory}", node=str, directory=str)
KEYSTONE_KEYS_DIFFER = _code(
    "KEYSTONE_KEYS_DIFFER", ERROR,
    "{directory} differs between {nodes} (keys {keys}): tokens issued on one node are "
    "rejected by the other", directory=str, nodes=list, keys=list)
KEYSTONE_DB_UNREACHABLE = _code(
    "KEYSTONE_DB_UNREACHABLE", ERROR, "{error}", error=str)
KEYSTONE_DB_UNREADABLE = _code(
    "KEYSTONE_DB_UNREADABLE", ERROR, "reading keystone.endpoint: error {errno}: {error}",
    errno=str, error=str)
ENDPOINT_MALFORMED = _code(
    "ENDPOINT_MALFORMED", ERROR, "{service} {interface} endpoint {url!r} is not a URL",
    service=str, interface=str, url=str)
ENDPOINT_NOT_VIP = _code(
    "ENDPOINT_NOT_VIP", ERROR,
    "{service} {interface} endpoint {url} does not use the VIP name {vip_name}",
    service=str, interface=str, url=str, vip_name=str)
DATABASE_NOT_VIA_VIP = _code(
    "DATABASE_NOT_VIA_VIP", ERROR,
    "{node}: {resource} reaches its database at {host}, not through the VIP {vip_name}: "
    "it is not colocated with Galera, so it may run beside a node whose Galera is not "
    "Primary (name the VIP, or give [resource:{resource}] with = galera)",
    node=str, resource=str, host=str, vip_name=str)
VIP_NAME_UNRESOLVED = _code(
    "VIP_NAME_UNRESOLVED", ERROR, "{vip_name} does not resolve: {error}",
    vip_name=str, error=str)
VIP_NAME_MISMATCH = _code(
    "VIP_NAME_MISMATCH", ERROR, "{vip_name} resolves to {addresses}, not the VIP {vip}",
    vip_name=str, addresses=list, vip=str)
COROSYNC_CONF_MISSING = _code(
    "COROSYNC_CONF_MISSING", ERROR, "corosync.conf not found")
COROSYNC_TWO_NODE = _code(
    "COROSYNC_TWO_NODE", ERROR,
    "two_node: 1 is missing: one surviving controller loses quorum and stops everything")
COROSYNC_WAIT_FOR_ALL = _code(
    "COROSYNC_WAIT_FOR_ALL", WARNING,
    "wait_for_all is off: a node booting alone after a partition may start everything "
    "a second time")
COROSYNC_NODES = _code(
    "COROSYNC_NODES", ERROR, "nodes missing from the nodelist: {nodes}", nodes=list)
FENCING_NOT_DESCRIBED = _code(
    "FENCING_NOT_DESCRIBED", WARNING,
    "no fencing device is described: stonith-enabled will be false")
FENCING_DISABLED = _code(
    "FENCING_DISABLED", WARNING,
    "stonith-enabled is false in {where}: a node that hangs instead of dying can keep "
    "resources the survivor takes over", where=str)
GALERA_OPTION_MISSING = _code(
    "GALERA_OPTION_MISSING", ERROR, "{node}: {option} is not set in /etc/mysql",
    node=str, option=str)
GALERA_OPTIONS_DIFFER = _code(
    "GALERA_OPTIONS_DIFFER", ERROR, "{option} differs: {values}", option=str, values=list)
GALERA_ADDRESS_LIST = _code(
    "GALERA_ADDRESS_LIST", ERROR, "{node}: {address} lacks {absent}",
    node=str, address=str, absent=list)

# ---- cluster verify (the CIB, its failure matrix simulated) -----------------
CRM_VERIFY = _code("CRM_VERIFY", ERROR, "{problem}", problem=str)
CINDER_ACTIVE_ACTIVE = _code(
    "CINDER_ACTIVE_ACTIVE", ERROR,
    "{resource} is a {mode}: it could run on two nodes at once under the same shared host",
    resource=str, mode=str)
SERVICE_NOT_STARTED = _code(
    "SERVICE_NOT_STARTED", ERROR, "{resource} does not run even with every node up",
    resource=str)
SERVICE_STOPS = _code(
    "SERVICE_STOPS", ERROR, "{resource} stops {where}{left}", resource=str, where=str,
    left=str)
SINGLE_INSTANCE_TWICE = _code(
    "SINGLE_INSTANCE_TWICE", ERROR, "{resource} runs on {nodes} {where}",
    resource=str, nodes=list, where=str)
VIP_STOPPED = _code(
    "VIP_STOPPED", ERROR, "the VIP {vip} is down {where}", vip=str, where=str)
VIP_SEPARATED = _code(
    "VIP_SEPARATED", ERROR, "the VIP runs on {node} without {what} {where}",
    node=str, what=str, where=str)
GALERA_NO_PRIMARY = _code(
    "GALERA_NO_PRIMARY", ERROR,
    "Galera keeps {left} of {voters} votes {where}: it loses its Primary component "
    "(configure [arbitrator] host for garbd)", left=int, voters=int, where=str)

# ---- galera recover: why an operator's bootstrap is refused ----------------
# The agent honours an override only when none of these hold (galera_bootstrap);
# the CLI refuses before writing one for the same reasons.
GALERA_PRIMARY_RUNNING = _code(
    "GALERA_PRIMARY_RUNNING", ERROR,
    "a Primary component is running on {nodes}: nothing to recover (the other members "
    "join it)", nodes=list)
GALERA_OVERRIDE_PENDING = _code(
    "GALERA_OVERRIDE_PENDING", ERROR, "an override is already pending on {nodes}",
    nodes=list)
GALERA_NO_CANDIDATE = _code(
    "GALERA_NO_CANDIDATE", ERROR,
    "no member reported a position with history to bootstrap from")
GALERA_NOT_A_MEMBER = _code(
    "GALERA_NOT_A_MEMBER", ERROR, "{node} is not one of the configured members {members}",
    node=str, members=list)
GALERA_NOT_REPORTED = _code(
    "GALERA_NOT_REPORTED", ERROR,
    "{node} has not reported a position (is it up, with the galera resource started?): "
    "it cannot bootstrap", node=str)
GALERA_NO_SEQNO = _code(
    "GALERA_NO_SEQNO", ERROR, "{node} has no known last committed seqno ({position}, "
    "{source})", node=str, position=str, source=str)
GALERA_NONE_HELD_BACK = _code(
    "GALERA_NONE_HELD_BACK", ERROR, "no member is held back: the agent's own rule decides")
GALERA_FOREIGN_HISTORY = _code(
    "GALERA_FOREIGN_HISTORY", ERROR,
    "{node} is on cluster {uuid} but {others}: not the same history",
    node=str, uuid=str, others=list)
GALERA_STANDALONE_DATA = _code(
    "GALERA_STANDALONE_DATA", ERROR,
    "{nodes} hold databases written without Galera: an SST would replace them", nodes=list)
GALERA_NOT_MOST_ADVANCED = _code(
    "GALERA_NOT_MOST_ADVANCED", ERROR,
    "{node} (seqno {seqno}) is not the most advanced member that reported: {best} is at "
    "seqno {best_seqno}", node=str, seqno=int, best=str, best_seqno=int)

# ---- migrate plan: refusals (errors) and notes (warnings) -------------------
MAPPING_UNKNOWN_HOST = _code(
    "MAPPING_UNKNOWN_HOST", ERROR, "no {users} uses host {host!r}", users=str, host=str)
MAPPING_UNKNOWN_ENDPOINT_HOST = _code(
    "MAPPING_UNKNOWN_ENDPOINT_HOST", ERROR, "no keystone endpoint URL names host {host!r}",
    host=str)
MAPPING_UNKNOWN_NETWORK = _code(
    "MAPPING_UNKNOWN_NETWORK", ERROR,
    "network {network} has no segment in neutron.networksegments", network=str)
MAPPING_UNKNOWN_INSTANCE = _code(
    "MAPPING_UNKNOWN_INSTANCE", ERROR, "no live instance {instance} in nova.instances",
    instance=str)
MAPPING_SEGMENT_UNUSED = _code(
    "MAPPING_SEGMENT_UNUSED", WARNING,
    "segment selector '{selector}' matches no segment that still needs a change",
    selector=str)
SEGMENT_NEEDS_ID = _code(
    "SEGMENT_NEEDS_ID", ERROR,
    "{network_type} segment of network {network} has no id to keep: {line} must give one",
    network_type=str, network=str, line=str)
SEGMENT_ID_OUT_OF_RANGE = _code(
    "SEGMENT_ID_OUT_OF_RANGE", ERROR,
    "{segment} for network {network} ({line}) is outside ml2's ranges ({ranges})",
    segment=str, network=str, line=str, ranges=str)
SEGMENT_ID_TAKEN = _code(
    "SEGMENT_ID_TAKEN", ERROR, "{segment} for network {network} is already used by {other}",
    segment=str, network=str, other=str)
SEGMENT_ID_DUPLICATE = _code(
    "SEGMENT_ID_DUPLICATE", ERROR,
    "{segment} would be given to networks {networks} ({line})",
    segment=str, networks=list, line=str)
PORT_BINDING_CONFLICT = _code(
    "PORT_BINDING_CONFLICT", ERROR,
    "port {port} already has a binding on {new_host}; renaming its binding on {host} "
    "would break the primary key", port=str, new_host=str, host=str)
AGENT_REFERENCED = _code(
    "AGENT_REFERENCED", ERROR,
    "{agent_type} of {host} is still named by {tables}: deleting it would drop those rows "
    "by cascade; move them off the agent first", agent_type=str, host=str, tables=list)
COMPUTE_RENAMED_IN_PLACE = _code(
    "COMPUTE_RENAMED_IN_PLACE", WARNING,
    "{old_host} ({old_node}) is renamed in place to {new_host} ({new_node}), keeping its "
    "service, node and resource provider uuid {uuid} with their allocations",
    old_host=str, old_node=str, new_host=str, new_node=str, uuid=str)
COMPUTE_ALREADY_REGISTERED = _code(
    "COMPUTE_ALREADY_REGISTERED", ERROR,
    "{new_host}/{new_node} is registered already: {old_host} cannot take its name; drop "
    "'rename' to move the instances there", new_host=str, new_node=str, old_host=str)
NEW_COMPUTE_NOT_REGISTERED = _code(
    "NEW_COMPUTE_NOT_REGISTERED", ERROR,
    "no compute node {new_host}/{new_node} in nova.compute_nodes: start nova-compute on "
    "{new_host} and run cell_v2 discover_hosts first{alternative}",
    new_host=str, new_node=str, alternative=str)
INSTANCE_NOT_STOPPED = _code(
    "INSTANCE_NOT_STOPPED", ERROR,
    "instance {instance} on {host} is {state}, not stopped: {remedy}",
    instance=str, host=str, state=str, remedy=str)
ALREADY_MOVING = _code(
    "ALREADY_MOVING", ERROR,
    "instance {instance} was already moved to {host} by an earlier run; finish it with "
    "--to-host {host}",
    instance=str, host=str)
INSTANCE_UNKNOWN = _code(
    "INSTANCE_UNKNOWN", ERROR, "no instance {instance} in the new cloud", instance=str)
OLD_ROUTER_ENABLED = _code(
    "OLD_ROUTER_ENABLED", ERROR,
    "router {router} on self-service network {network} is still enabled in the old cloud "
    "and would answer for its floating IPs: openstack --os-cloud {old_cloud} router set "
    "--disable {router_id}",
    router=str, network=str, old_cloud=str, router_id=str)
OLD_STILL_RUNNING = _code(
    "OLD_STILL_RUNNING", ERROR,
    "instance {instance} is {vm_state} (power state {power_state}) in the old cloud on "
    "{host}: stop it there first (openstack --os-cloud {old_cloud} server stop {instance})",
    instance=str, vm_state=str, power_state=str, host=str, old_cloud=str)
OLD_CLOUD_UNREACHABLE = _code(
    "OLD_CLOUD_UNREACHABLE", WARNING,
    "no old neutron database configured: ports that are gone cannot be recreated")
INFO_CACHE_UNREADABLE = _code(
    "INFO_CACHE_UNREADABLE", WARNING,
    "network_info of instance {instance} is not a JSON list: left alone (nova rebuilds it "
    "on the next refresh)", instance=str)
HOST_MAPPING_MISSING = _code(
    "HOST_MAPPING_MISSING", ERROR,
    "neither {host} nor {old_host} has a host mapping: run nova-manage cell_v2 discover_hosts",
    host=str, old_host=str)
NEW_PROVIDER_MISSING = _code(
    "NEW_PROVIDER_MISSING", ERROR, "compute node {host} has no resource provider in placement",
    host=str)
ATTACHMENT_CONNECTOR_IDENTITY = _code(
    "ATTACHMENT_CONNECTOR_IDENTITY", WARNING,
    "volume {volume} of instance {instance} moves from {old_host} to {new_host}; its "
    "connector keeps {old_host}'s {keys}, to which the volume is exported: before starting "
    "the instance, on {new_host} run `nova-manage volume_attachment get_connector > "
    "connector.json` and `nova-manage volume_attachment refresh {instance} {volume} "
    "connector.json`", volume=str, instance=str, old_host="str?", new_host=str, keys=list)
CELL_NOT_SCANNED = _code(
    "CELL_NOT_SCANNED", ERROR,
    "cell {cell!r}'s database {database!r} is not on {server}: its rows cannot be searched "
    "for old names", cell="str?", database="str?", server=str)
RESIDUE_UNCOVERED = _code(
    "RESIDUE_UNCOVERED", ERROR,
    "{rows} {row_word}, e.g. {example}, naming {names}: {why}; add a rule, or '{column} = "
    "WHY' under [keep] in the mapping",
    rows=int, row_word=str, example=str, names=str, why=str, column=str)

# ---- migrate verify ----------------------------------------------------------
RESIDUE_KEPT = _code("RESIDUE_KEPT", INFO, "{rows} rows: {rule}", rows=int, rule=str)
RESIDUE_SCANNED = _code(
    "RESIDUE_SCANNED", INFO,
    "{columns} text columns of {databases} databases searched for {names} old names; "
    "{uncovered} rows uncovered", columns=int, databases=int, names=int, uncovered=int)
CELL_OLD_HOST = _code(
    "CELL_OLD_HOST", ERROR, "cell {cell} {column} still names {host}",
    cell=str, column=str, host=str)
ENDPOINT_OLD_HOST = _code(
    "ENDPOINT_OLD_HOST", ERROR, "endpoint still names {host}", host=str)
NOVA_READBACK_FAILED = _code("NOVA_READBACK_FAILED", ERROR, "{error}", error=str)
NOVA_READBACK_OK = _code(
    "NOVA_READBACK_OK", INFO, "{count} moved instances read back through nova", count=int)
UPSTREAM_CHECK_MISSING = _code(
    "UPSTREAM_CHECK_MISSING", ERROR, "{program} is not installed", program=str)
UPSTREAM_CHECK_ERROR = _code("UPSTREAM_CHECK_ERROR", ERROR, "{error}", error=str)
UPSTREAM_CHECK_TIMEOUT = _code(
    "UPSTREAM_CHECK_TIMEOUT", ERROR, "{check} took over {seconds}s", check=str, seconds=str)
UPSTREAM_CHECK_NEEDS_SERVICE = _code(
    "UPSTREAM_CHECK_NEEDS_SERVICE", INFO, "needs a running service, not judged: {details}",
    details=str)
UPSTREAM_CHECK_OK = _code("UPSTREAM_CHECK_OK", INFO, "success")
UPSTREAM_CHECK_WARNING = _code("UPSTREAM_CHECK_WARNING", WARNING, "{details}", details=str)
UPSTREAM_CHECK_FAILURE = _code(
    "UPSTREAM_CHECK_FAILURE", ERROR, "{result}: {details}", result=str, details=str)
# the invariants verify checks after apply: one finding per offending row (up to a few)
_INVARIANT = "{check}: {row}"
SEGMENT_NOT_ALLOCATED = _code("SEGMENT_NOT_ALLOCATED", ERROR, _INVARIANT, check=str, row=str)
SEGMENT_DUPLICATE = _code("SEGMENT_DUPLICATE", ERROR, _INVARIANT, check=str, row=str)
# plan refuses a target id in this state too: no segment uses it, yet it is allocated
ALLOCATION_LEAKED = _code("ALLOCATION_LEAKED", ERROR, _INVARIANT, check=str, row=str)
BINDING_LINUXBRIDGE = _code("BINDING_LINUXBRIDGE", ERROR, _INVARIANT, check=str, row=str)
BINDING_OLD_HOST = _code("BINDING_OLD_HOST", ERROR, _INVARIANT, check=str, row=str)
AGENT_STALE = _code("AGENT_STALE", ERROR, _INVARIANT, check=str, row=str)
CINDER_OLD_HOST = _code("CINDER_OLD_HOST", ERROR, _INVARIANT, check=str, row=str)
CINDER_SERVICE_UNVERSIONED = _code("CINDER_SERVICE_UNVERSIONED", ERROR, _INVARIANT,
                                   check=str, row=str)
CINDER_SERVICE_UUID = _code("CINDER_SERVICE_UUID", ERROR, _INVARIANT, check=str, row=str)
INSTANCE_OLD_HOST = _code("INSTANCE_OLD_HOST", ERROR, _INVARIANT, check=str, row=str)
INSTANCE_COMPUTE_ID = _code("INSTANCE_COMPUTE_ID", ERROR, _INVARIANT, check=str, row=str)
INFO_CACHE_BRIDGE = _code("INFO_CACHE_BRIDGE", ERROR, _INVARIANT, check=str, row=str)
ALLOCATION_ELSEWHERE = _code("ALLOCATION_ELSEWHERE", ERROR, _INVARIANT, check=str, row=str)
