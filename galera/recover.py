"""The guarded way out when ocf:pacestack:galera waits for a member that never returns.

plan() computes the decision the operator faces from a GaleraStatus with the
agent's own rule (galera_bootstrap.held_back, override_refusals, loss_gap): the
members held back (not reported, no known seqno, data gone although recorded),
which node would bootstrap, its seqno, the highest seqno the held-back members
ever recorded (the agent keeps it as a lifetime=forever node attribute, so it
survives the full crash), and so how many committed transactions may be lost
(the gap). It refuses what the agent would refuse.

apply() changes nothing but one node attribute: it hands the decision to the
agent (``<rsc>-bootstrap-override`` on the chosen node), which honours it once
on its next check, clears it and bootstraps under Pacemaker's control. The
decision, who made it and the gap are logged to syslog here and to the HA log
by the agent.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field

from pacestack.agents import attributes
from pacestack.agents import galera as agent
from pacestack.agents import galera_bootstrap as rule
from pacestack.agents.galera_bootstrap import Override, format_override

from pacestack import codes, proc
from pacestack.errors import ConfigError, RuntimeFailure
from pacestack.findings import Finding

from .status import GaleraStatus, Pos, collect


@dataclass
class Missing:
    """A member held back from the rule (not reported, no known seqno, data gone)."""

    node: str
    recorded: Pos | None          # its last-committed record (None: never recorded)
    why: str = ""


@dataclass
class RecoveryPlan:
    resource: str
    candidate: str | None
    candidate_position: Pos | None
    missing: list[Missing] = field(default_factory=list)
    gap: int | None = None        # None: unknown (a missing member never recorded)
    refusals: list[Finding] = field(default_factory=list)
    bad_input: bool = False       # a refusal caused by what the operator named
    reason: str = ""              # the agent's own view (what it waits for)

    @property
    def ok(self) -> bool:
        return not self.refusals and self.candidate is not None

    @property
    def highest_missing(self) -> int | None:
        seqnos = [m.recorded.seqno for m in self.missing if m.recorded]
        return max(seqnos) if seqnos else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, highest_missing_seqno=self.highest_missing,
                 refusals=[f.to_dict() for f in self.refusals])
        return d


def plan(status: GaleraStatus, bootstrap_from: str | None = None) -> RecoveryPlan:
    """The decision (and every reason to refuse it); never changes anything.

    The held-back members, the candidate, the refusals and the gap come from the
    agent's own rule (galera_bootstrap), so what this offers is what the agent
    will honour."""
    if bootstrap_from is not None:
        status.member(bootstrap_from)  # ConfigError (exit 2) for a name that is no member
    names = status.member_names
    reports = status.reports()
    records = status.records()
    held = rule.held_back(names, reports, records)
    missing = [Missing(n, status.member(n).recorded, why) for n, why in sorted(held.items())]
    out = RecoveryPlan(status.resource, None, None, missing,
                       reason=status.decision.get("reason", ""))

    primaries = [m.node for m in status.members if m.primary]
    if primaries:
        out.refusals.append(codes.GALERA_PRIMARY_RUNNING(status.resource, nodes=primaries))
    override_pending = [m.node for m in status.members if m.override]
    if override_pending:
        out.refusals.append(codes.GALERA_OVERRIDE_PENDING(status.resource,
                                                          nodes=override_pending))
    best = rule.most_advanced({n: p for n, p in reports.items() if n not in held})
    out.candidate = bootstrap_from or best
    if out.candidate is None:
        out.refusals.append(codes.GALERA_NO_CANDIDATE(status.resource))
        return out
    refusals = rule.override_refusals(names, reports, out.candidate, records)
    out.refusals += refusals
    out.bad_input = bool(refusals) and bootstrap_from is not None and bootstrap_from != best
    cand = reports.get(out.candidate)
    if cand is None:
        return out
    out.candidate_position = Pos.of(cand)
    out.gap = rule.loss_gap(cand, held, records)
    return out


def operator() -> str:
    """Who decided, for the logs: the login behind sudo when there is one."""
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}".replace(";", "_").replace("=", "_")


def log_decision(message: str) -> None:
    """To syslog (authpriv would hide it from the HA team; daemon is where they look)."""
    import syslog

    syslog.openlog("pacestack-galera", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_WARNING, message)
    syslog.closelog()


def apply(p: RecoveryPlan, who: str | None = None) -> Override:
    """Hand the decision to the agent (one node attribute); returns what was written."""
    if not p.ok or p.candidate_position is None:
        raise RuntimeFailure("refusing: " + "; ".join([f.message for f in p.refusals]
                                                      or ["no candidate"]))
    pos = p.candidate_position
    ovr = Override(p.candidate, pos.uuid, pos.seqno, tuple(m.node for m in p.missing), p.gap,
                   who or operator(), int(time.time()))
    try:
        attributes.set(f"{p.resource}-{agent.OVERRIDE}", format_override(ovr), p.candidate,
                       "reboot")
    except attributes.AttributeFailure as err:
        raise RuntimeFailure(str(err)) from None
    gap = "unknown" if p.gap is None else str(p.gap)
    log_decision(f"galera recover: {ovr.by} decided {ovr.node} bootstraps {p.resource} at "
                 f"{pos.uuid}:{pos.seqno} without {', '.join(ovr.missing)} "
                 f"(highest seqno they recorded: {p.highest_missing}); seqno gap {gap}")
    return ovr


def nudge(status: GaleraStatus, node: str, timeout: float = 60) -> str | None:
    """Ask Pacemaker to re-check the resource on ``node`` now (a refresh re-probes it and
    restarts its monitor, whose first run reads the override) instead of waiting for
    the next Unpromoted monitor (up to 20 s). Only a shortcut: when the refresh hangs
    or fails the override stands; returns why (None: done)."""
    target = status.clone or status.resource
    try:
        res = subprocess.run(["crm_resource", "--refresh", "--resource", target, "--node", node],
                             capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"crm_resource --refresh did not finish within {timeout:g} s"
    except OSError as err:
        return f"crm_resource --refresh: {err.strerror or err}"
    if res.returncode != 0:
        detail = (res.stderr or res.stdout).strip().splitlines()
        return f"crm_resource --refresh failed: {detail[-1] if detail else res.returncode}"
    return None


def wait_promoted(resource: str, node: str, timeout: float) -> float | None:
    """Seconds until crm_mon shows ``node`` Promoted and its server Primary/Synced
    where this node can ask (None: timed out)."""
    t0 = time.monotonic()

    def promoted() -> bool:
        try:
            st = collect(resource)
        except (ConfigError, RuntimeFailure):
            return False
        m = st.member(node)
        if m.role != "Promoted":
            return False
        return m.local is None or (m.cluster_status == "Primary" and m.state == "Synced")

    if proc.wait_for(promoted, timeout, interval=0.5):
        return time.monotonic() - t0
    return None
