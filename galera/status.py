"""Where every Galera member stands, as Pacemaker and the nodes themselves see it.

Sources, cheapest first: one ``cibadmin --query`` (the resource's parameters, the
node attributes ocf:pacestack:galera records: the reported position, the Primary
flag, the promotion score, the persistent last-committed record, a pending
operator override), one ``crm_mon --output-as=xml`` (who is online, the role of
each instance, failed actions) and, for the node this runs on, its own files and
server (grastate.dat, the mariadbd PID, live wsrep status over the local socket).
Both CIB tools honour ``CIB_file``, so this also reads a saved CIB.

The agent's own rule (galera_bootstrap.choose_bootstrap) then says what it is
waiting for. Everything returns dataclasses; galera.cli renders them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
import xml.etree.ElementTree as ET  # noqa: S405 - Pacemaker's own CIB and crm_mon output
from dataclasses import dataclass, field

from pacestack.agents import attributes, galera_cib
from pacestack.agents import galera as agent
from pacestack.agents.galera_bootstrap import choose_bootstrap
from pacestack.agents.galera_mysqld import Mysqld, MysqldError
from pacestack.agents.galera_records import DEPARTED, SST_METHODS
from pacestack.agents.galera_state import (
    Position,
    StateError,
    parse_recorded,
    parse_report,
    read_grastate,
)
from pacestack.cluster import crm_mon
from pacestack.cluster.cib import nvpairs

from pacestack.errors import ConfigError, RuntimeFailure

AGENT = ("ocf", "pacestack", "galera")
# the agent's parameter defaults, for the local node's files and socket
DEFAULTS = {p.name: p.default for p in agent.GaleraAgent.parameters}


@dataclass
class Pos:
    """A position as shown: UUID, seqno, where it came from, when (records only)."""

    uuid: str
    seqno: int
    source: str
    at: int | None = None

    @classmethod
    def of(cls, p: Position, at: int | None = None) -> Pos:
        return cls(p.uuid, p.seqno, p.source, at)

    def position(self) -> Position:
        return Position(self.uuid, self.seqno, self.source)

    @property
    def empty(self) -> bool:
        return self.position().empty


@dataclass
class LocalState:
    """What the node this runs on says about itself."""

    datadir: str
    grastate: Pos | None = None        # grastate.dat (seqno -1 while running / after a crash)
    safe_to_bootstrap: bool | None = None
    mariadbd_pid: int | None = None
    wsrep: dict[str, str] = field(default_factory=dict)  # live status (socket), if running
    error: str | None = None


@dataclass
class MemberState:
    node: str
    pacemaker: str = "unknown"          # online, offline, unclean, standby, unknown
    role: str = "Stopped"               # the instance's role per crm_mon
    reported: Pos | None = None         # <rsc>-position (reboot lifetime)
    recorded: Pos | None = None         # <rsc>-last-committed (forever)
    primary_flag: bool = False          # <rsc>-primary
    score: int | None = None            # master-<rsc>
    override: str | None = None         # <rsc>-bootstrap-override, pending
    sst_methods: list[str] = field(default_factory=list)  # <rsc>-sst-methods: it can donate
    departed: list[str] = field(default_factory=list)     # <rsc>-departed: node UUIDs it saw leave
    failures: list[str] = field(default_factory=list)
    local: LocalState | None = None
    waiting: str | None = None          # what the agent on this node waits for

    @property
    def running(self) -> bool:
        if self.local is not None:
            return self.local.mariadbd_pid is not None
        return self.role == "Promoted"

    @property
    def cluster_status(self) -> str | None:
        if self.local is not None and self.local.wsrep:
            return self.local.wsrep.get("wsrep_cluster_status")
        return "Primary" if self.role == "Promoted" else None

    @property
    def state(self) -> str | None:
        if self.local is not None and self.local.wsrep:
            return self.local.wsrep.get("wsrep_local_state_comment")
        return "Synced" if self.role == "Promoted" else None

    @property
    def primary(self) -> bool:
        return self.cluster_status == "Primary" or self.primary_flag or \
            self.role == "Promoted"

    @property
    def position(self) -> Pos | None:
        """The best-known last committed position: live, reported, grastate.dat, record."""
        w = self.local.wsrep if self.local else {}
        if w.get("wsrep_last_committed") and w.get("wsrep_cluster_state_uuid"):
            try:
                return Pos(w["wsrep_cluster_state_uuid"], int(w["wsrep_last_committed"]),
                           "running")
            except ValueError:
                pass
        if self.reported is not None:
            return self.reported
        if self.local is not None and self.local.grastate is not None and \
                self.local.grastate.seqno >= 0:
            return self.local.grastate
        return self.recorded

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(running=self.running, cluster_status=self.cluster_status, state=self.state,
                 primary=self.primary,
                 position=dataclasses.asdict(self.position) if self.position else None)
        return d


@dataclass
class ArbitratorState:
    address: str
    in_component: bool | None = None    # seen by a running member (None: nobody to ask)


@dataclass
class GaleraStatus:
    resource: str
    clone: str | None
    members: list[MemberState]
    arbitrators: list[ArbitratorState]
    local_node: str | None
    quorate: bool | None
    decision: dict
    seconds: float = 0.0

    def member(self, name: str) -> MemberState:
        for m in self.members:
            if m.node == name:
                return m
        raise ConfigError(f"{name!r} is not a member of {self.resource} "
                          f"(members: {', '.join(m.node for m in self.members)})")

    @property
    def member_names(self) -> list[str]:
        return [m.node for m in self.members]

    def reports(self) -> dict[str, Position | None]:
        return {m.node: m.reported.position() if m.reported else None for m in self.members}

    def records(self) -> dict[str, Position | None]:
        return {m.node: m.recorded.position() if m.recorded else None for m in self.members}

    def to_dict(self) -> dict:
        return {"resource": self.resource, "clone": self.clone, "local_node": self.local_node,
                "quorate": self.quorate, "decision": self.decision,
                "members": [m.to_dict() for m in self.members],
                "arbitrators": [dataclasses.asdict(a) for a in self.arbitrators],
                "seconds": round(self.seconds, 3)}


# ---- reading Pacemaker ------------------------------------------------------------

def _tool(argv: list[str], timeout: float = 30) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"{' '.join(argv[:2])} did not answer within {timeout:g} s"
                             ) from None
    except OSError as err:
        raise RuntimeFailure(f"{argv[0]}: {err.strerror or err}") from None
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        raise RuntimeFailure(f"{' '.join(argv[:2])} failed (exit {res.returncode}): "
                             f"{detail[-1] if detail else 'no output'}")
    return res.stdout


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)  # noqa: S314 - Pacemaker's own output
    except ET.ParseError as err:
        raise RuntimeFailure(f"{what}: not XML ({err})") from None


def find_resource(cib: ET.Element, resource: str | None = None) -> tuple[str, str | None, dict]:
    """(primitive id, clone id, instance parameters) of the ocf:pacestack:galera resource."""
    found = []
    for parent in cib.iterfind("./configuration/resources//clone"):
        for prim in parent.iterfind("primitive"):
            found.append((prim, parent.get("id")))
    found += [(p, None) for p in cib.iterfind("./configuration/resources/primitive")]
    galera = [(p, c) for p, c in found
              if (p.get("class"), p.get("provider"), p.get("type")) == AGENT]
    if resource:
        galera = [(p, c) for p, c in galera if resource in (p.get("id"), c)]
    if not galera:
        what = f"named {resource!r} " if resource else ""
        raise ConfigError(f"no ocf:pacestack:galera resource {what}in the CIB")
    if len(galera) > 1:
        names = ", ".join(p.get("id", "") for p, _ in galera)
        raise ConfigError(f"several ocf:pacestack:galera resources ({names}): name one "
                          "with --resource")
    prim, clone = galera[0]
    params = nvpairs(prim)
    return prim.get("id", ""), clone, params


def members_of(params: dict[str, str]) -> tuple[list[str], list[str]]:
    """(data members, arbitrator addresses) from the resource's parameters."""
    address = params.get("wsrep_cluster_address", "")
    try:
        hosts = agent.parse_cluster_address(address)
        mapping = agent.parse_host_map(params.get("cluster_host_map", "")) \
            if params.get("cluster_host_map", "").strip() else {h: h for h in hosts}
    except ValueError as err:
        raise ConfigError(f"the galera resource's parameters: {err}") from None
    mapped = set(mapping.values())
    return sorted(mapping), [h for h in hosts if h not in mapped]


def _pos(raw: str | None, where: str) -> Pos | None:
    if not raw:
        return None
    try:
        return Pos.of(parse_report(raw, where))
    except StateError:
        return None


def _recorded(raw: str | None, where: str) -> Pos | None:
    if not raw:
        return None
    try:
        p, at = parse_recorded(raw, where)
    except StateError:
        return None
    return Pos.of(p, at)


def local_node_name() -> str | None:
    try:
        res = subprocess.run(["crm_node", "-n"], capture_output=True, text=True, timeout=15,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def local_state(params: dict[str, str]) -> LocalState:
    """This node's own view: grastate.dat, the mariadbd PID, live wsrep status."""
    p = {**DEFAULTS, **{k: v for k, v in params.items() if v}}
    m = Mysqld(binary=p["binary"], config=p["config"], datadir=p["datadir"],
               socket=p["socket"], pid_file=p["pid"], log=p["log"], user=p["user"],
               group=p["group"], cluster_address=p["wsrep_cluster_address"] or "",
               check_defaults_file=p["check_defaults_file"] or "")
    out = LocalState(datadir=m.datadir)
    try:
        st = read_grastate(m.grastate_path())
        if st is not None:
            out.grastate = Pos(st.uuid, st.seqno, "grastate")
            out.safe_to_bootstrap = st.safe_to_bootstrap
    except StateError as err:
        out.error = str(err)
    out.mariadbd_pid = m.pid()
    if out.mariadbd_pid is not None:
        try:
            out.wsrep = wsrep_status(m)
        except MysqldError as err:
            out.error = str(err)
    return out


def wsrep_status(m: Mysqld, timeout: float = 10) -> dict[str, str]:
    """Every wsrep_% status variable, by the agent's own query (same socket and
    authentication as its monitor)."""
    return m.status(timeout, every=True)


def _arbitrators(addresses: list[str], members: list[MemberState]) -> list[ArbitratorState]:
    """An arbitrator is in a running member's component when that component is larger
    than the data members Pacemaker runs. (An empty incoming address is not proof:
    a data node that just joined by SST shows one too, for a moment.)"""
    seen = None
    running = sum(1 for m in members
                  if m.running or m.role in ("Promoted", "Unpromoted", "Started"))
    for m in members:
        w = m.local.wsrep if m.local else {}
        if w.get("wsrep_cluster_size", "").isdigit():
            seen = int(w["wsrep_cluster_size"]) > running
            break
    return [ArbitratorState(a, seen) for a in addresses]


def _waiting(members: list[MemberState], names: list[str], decision) -> None:
    """What the agent on each member waits for (None: nothing, it runs or may start)."""
    primaries = [m.node for m in members if m.primary]
    for m in members:
        if m.role == "Promoted":
            continue
        if m.pacemaker != "online":
            m.waiting = f"node is {m.pacemaker} to Pacemaker"
        elif m.role not in ("Unpromoted", "Started"):
            m.waiting = "not started by Pacemaker"
        elif primaries:
            m.waiting = f"joins {primaries[0]} (Primary) when Pacemaker promotes it"
        elif decision.kind == "bootstrap":
            m.waiting = None if decision.bootstrap_node == m.node else \
                f"waiting for {decision.bootstrap_node} to bootstrap"
        else:
            m.waiting = decision.reason


def collect(resource: str | None = None, local: bool = True) -> GaleraStatus:
    """Every member's state; raises ConfigError/RuntimeFailure with one line."""
    t0 = time.monotonic()
    cib_text = _tool(["cibadmin", "--query"])
    cib = _xml(cib_text, "cibadmin --query")
    rid, clone, params = find_resource(cib, resource)
    names, arbitrators = members_of(params)
    mon = crm_mon.parse(_tool(list(crm_mon.ARGV)))
    if mon is None:
        raise RuntimeFailure("crm_mon: no answer, or not its XML")
    nodes, quorate, failures = mon.states, mon.quorate, mon.failures_of(rid)
    roles = {node: role for node, role in mon.active.get(rid, [])}
    # the node attributes exactly as the agent reads them for its decision
    snap = galera_cib.parse(cib_text)
    if snap is None:
        raise RuntimeFailure("cibadmin --query: node attributes are ambiguous (a name set "
                             "twice with different values)")
    me = local_node_name() if local and "CIB_file" not in os.environ else None
    members = []
    for name in names:
        def attr(what: str, lifetime: str = "reboot", node: str = name) -> str | None:
            return snap.get(f"{rid}-{what}", node, lifetime)

        score = snap.get(attributes.promotion_attribute(rid), name)
        m = MemberState(
            node=name, pacemaker=nodes.get(name, "unknown"),
            role=roles.get(name, "Stopped"),
            reported=_pos(attr(agent.POSITION), f"{name}'s position"),
            recorded=_recorded(attr(agent.LAST_COMMITTED, "forever"), f"{name}'s record"),
            primary_flag=attr(agent.PRIMARY) == "1",
            score=int(score) if score and score.lstrip("-").isdigit() else None,
            override=attr(agent.OVERRIDE),
            sst_methods=[x for x in (attr(SST_METHODS) or "").split(",") if x],
            departed=(attr(DEPARTED) or "").split(),
            failures=failures.get(name, []))
        if name == me:
            m.local = local_state(params)
        members.append(m)
    reports = {m.node: m.reported.position() if m.reported else None for m in members}
    records = {m.node: m.recorded.position() if m.recorded else None for m in members}
    decision = choose_bootstrap(names, reports, last_known=records)
    _waiting(members, names, decision)
    primaries = [m.node for m in members if m.primary]
    if primaries:
        summary = {"kind": "running", "reason": f"Primary on {', '.join(primaries)}",
                   "bootstrap_node": None, "waiting_for": []}
    else:
        summary = {"kind": decision.kind, "reason": decision.reason,
                   "bootstrap_node": decision.bootstrap_node,
                   "waiting_for": list(decision.waiting_for)}
    return GaleraStatus(rid, clone, members, _arbitrators(arbitrators, members), me,
                        quorate, summary, time.monotonic() - t0)
