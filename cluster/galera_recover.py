"""The guarded way out when ocf:pacestack:galera waits for a member that never returns.

plan() computes the decision the operator faces from a GaleraStatus: which node
would bootstrap, its seqno, the highest seqno the missing members ever recorded
(the agent keeps it as a lifetime=forever node attribute, so it survives the full
crash), and so how many committed transactions may be lost (the gap). It refuses
when the histories differ (cluster UUIDs), when the named node is not the most
advanced of the members that reported, or when a Primary component still runs.

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
from pacestack.agents.galera_bootstrap import Override, format_override

from pacestack import proc
from pacestack.errors import ConfigError, RuntimeFailure

from . import galera_status
from .galera_status import GaleraStatus, Pos


@dataclass
class Missing:
    node: str
    recorded: Pos | None          # its last-committed record (None: never recorded)


@dataclass
class RecoveryPlan:
    resource: str
    candidate: str | None
    candidate_position: Pos | None
    missing: list[Missing] = field(default_factory=list)
    gap: int | None = None        # None: unknown (a missing member never recorded)
    refusals: list[str] = field(default_factory=list)
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
        d.update(ok=self.ok, highest_missing_seqno=self.highest_missing)
        return d


def plan(status: GaleraStatus, bootstrap_from: str | None = None) -> RecoveryPlan:
    """The decision (and every reason to refuse it); never changes anything."""
    if bootstrap_from is not None:
        status.member(bootstrap_from)  # ConfigError (exit 2) for a name that is no member
    reports = {m.node: m.reported for m in status.members}
    missing = [Missing(m.node, m.recorded) for m in status.members if m.reported is None]
    out = RecoveryPlan(status.resource, None, None, missing,
                       reason=status.decision.get("reason", ""))

    primaries = [m.node for m in status.members if m.primary]
    if primaries:
        out.refusals.append(f"a Primary component is running on {', '.join(primaries)}: "
                            "nothing to recover (the other members join it)")
    if not missing:
        out.refusals.append("every member reported its position: the agent decides by "
                            "itself (" + (status.decision.get("reason") or "") + ")")
    override_pending = [m.node for m in status.members if m.override]
    if override_pending:
        out.refusals.append(f"an override is already pending on "
                            f"{', '.join(override_pending)}")

    histories = {n: p for n, p in reports.items() if p is not None and not p.empty}
    for m in missing:
        if m.recorded is not None:
            histories.setdefault(m.node, m.recorded)
    uuids: dict[str, list[str]] = {}
    for n, p in sorted(histories.items()):
        uuids.setdefault(p.uuid, []).append(n)
    if len(uuids) > 1:
        detail = "; ".join(f"{', '.join(ns)} on {u}" for u, ns in uuids.items())
        out.refusals.append(f"the members report different cluster UUIDs ({detail}): "
                            "they hold different histories; bootstrapping either could "
                            "discard the other")

    known = {n: p for n, p in histories.items() if reports.get(n) is not None}
    unknown = sorted(n for n, p in known.items() if p.seqno < 0)
    if unknown:
        out.refusals.append(f"{', '.join(unknown)} reported no known seqno (-1): the most "
                            "advanced member cannot be told")
    ranked = sorted((n for n, p in known.items() if p.seqno >= 0),
                    key=lambda n: (-known[n].seqno, n))
    best = ranked[0] if ranked else None
    out.candidate = bootstrap_from or best
    if out.candidate is None:
        out.refusals.append("no member reported a position with history to bootstrap from")
        return out
    cand = reports.get(out.candidate)
    if cand is None:
        out.refusals.append(f"{out.candidate} has not reported a position (is it up, with "
                            "the galera resource started?): it cannot bootstrap")
        out.bad_input = bootstrap_from is not None
        return out
    out.candidate_position = cand
    if cand.empty:
        out.refusals.append(f"{out.candidate} has no Galera history (empty datadir)")
        out.bad_input = bootstrap_from is not None
    elif best is not None and out.candidate != best and known[best].seqno > cand.seqno:
        out.refusals.append(f"{out.candidate} (seqno {cand.seqno}) is not the most advanced "
                            f"member that reported: {best} is at seqno {known[best].seqno}")
        out.bad_input = True
    if any(m.recorded is None for m in missing):
        out.gap = None
    else:
        same = [m.recorded.seqno for m in missing if m.recorded.uuid == cand.uuid]
        out.gap = max([0] + [s - cand.seqno for s in same])
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
        raise RuntimeFailure("refusing: " + "; ".join(p.refusals or ["no candidate"]))
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
            st = galera_status.collect(resource)
        except (ConfigError, RuntimeFailure):
            return False
        m = st.member(node)
        if m.role != "Promoted":
            return False
        return m.local is None or (m.cluster_status == "Primary" and m.state == "Synced")

    if proc.wait_for(promoted, timeout, interval=0.5):
        return time.monotonic() - t0
    return None
