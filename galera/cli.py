"""``pacestack galera status|recover``: parse, call galera.status / galera.recover, render."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pacestack import commands, render
from pacestack.errors import ConfigError, RuntimeFailure

from . import recover, status

STATUS_HELP = """\
Every Galera member of the ocf:pacestack:galera resource: what Pacemaker says
(online, role, failed actions), the node attributes the agent records (the
position it reported, Primary, promotion score, the persistent last-committed
record, a pending operator override) and, for the node this runs on, its own
grastate.dat and live wsrep status. The last column says what the agent on that
node is waiting for, and why. Run it on a cluster node as root.

Positions are UUID:SEQNO; SOURCE says where the seqno came from: running
(wsrep_last_committed), grastate (grastate.dat after a clean stop), recovered
(mariadbd --wsrep-recover after a crash), empty (no datadir: nothing to lose),
recorded (the last seqno the member recorded before it went away).
"""

RECOVER_HELP = """\
When the agent waits because a member is held back (it never reported its
position because the node is gone; it reports a cluster but no seqno; its data
is gone although it recorded a history), it waits for good: bootstrapping
without that member could throw away transactions only it committed. This
command shows the decision an operator faces, with the agent's own rule, and
carries it out only when told to.

Without --bootstrap-from it only shows: the node that would bootstrap (the most
advanced of the members that reported), its seqno, the highest seqno each
missing member recorded before it went away, and the GAP between them: how
many committed transactions, as far as the cluster knows, exist only on the
missing members and are lost if you go on. It counts seqnos: committed
transactions and membership changes (Galera 4 orders both). A gap of 0 means
the survivor has everything the missing member last recorded. A member records
its seqno at every start, stop and promote, when its view changes, at every
monitor while it alone holds the newest commits, else once a minute; the
record lives in the CIB, so this node knows it only if its own cluster stack
was up to receive it. Commits after the record shown (see its time) are not
counted. "unknown" means a missing member never recorded.

With --bootstrap-from NODE it asks you to type the gap to confirm (or takes
--accept-loss N for scripts; N must be at least the gap), then sets one node
attribute that the agent on NODE honours once: it bootstraps under Pacemaker's
control, clears the attribute and logs the decision, who made it and the gap.
Nothing is started by hand and grastate.dat is not edited. The missing member,
once back with an empty datadir, rejoins by a full state transfer (SST).

Refused (exit 2, nothing changed) whenever the agent would refuse it: members
report different cluster UUIDs (different histories: decide which to keep and
wipe the other's datadir), a member holds databases written without Galera,
the named node is not the most advanced of those not held back, a Primary
component is still running somewhere (members join it; nothing to recover).
Before you accept a gap: try to bring the missing node back; if its disk
survived, it reports and the agent decides alone with no loss.
"""


def _pos(p: status.Pos | None) -> str:
    return f"{p.uuid}:{p.seqno} ({p.source})" if p else "-"


def _seqno(p: status.Pos | None) -> str:
    return "-" if p is None else f"{p.seqno} ({p.source})"


def render_status(st: status.GaleraStatus) -> str:
    uuids = {m.position.uuid for m in st.members if m.position and not m.position.empty}
    rows = []
    for m in st.members:
        pos = m.position
        rows.append((
            m.node + (" *" if m.node == st.local_node else ""), m.pacemaker, m.role,
            "yes" if m.running else ("?" if m.local is None and m.role != "Promoted" else "no"),
            m.cluster_status or "-", m.state or "-",
            (pos.uuid[:8] if pos and not pos.empty else ("empty" if pos else "-")),
            _seqno(pos), _seqno(m.recorded) if m.recorded else "-",
            m.waiting or "-"))
    out = [f"galera resource {st.resource}" + (f" (clone {st.clone})" if st.clone else "")
           + (f", quorum: {'yes' if st.quorate else 'NO'}" if st.quorate is not None else "")]
    out.append(render.table(("NODE", "PACEMAKER", "ROLE", "MARIADBD", "CLUSTER", "STATE",
                             "UUID", "SEQNO (SOURCE)", "LAST RECORDED", "WAITING FOR"), rows))
    for a in st.arbitrators:
        seen = {True: "in the Primary component", False: "NOT in the component",
                None: "unknown (no running member here to ask)"}[a.in_component]
        out.append(f"arbitrator {a.address}: {seen}")
    if len(uuids) > 1:
        out.append(f"WARNING: members hold different cluster UUIDs: {', '.join(sorted(uuids))}")
    for m in st.members:
        for f in m.failures:
            out.append(f"failed on {m.node}: {f}")
        if m.override:
            out.append(f"override pending on {m.node}: {m.override}")
        if m.sst_methods:
            out.append(f"{m.node} can donate by: {', '.join(m.sst_methods)}")
        if m.departed:
            out.append(f"{m.node} saw leave its view: {' '.join(m.departed)}")
        if m.local and m.local.error:
            out.append(f"{m.node} (local): {m.local.error}")
    d = st.decision
    out.append(f"agent: {d['kind'].upper()}: {d['reason']}")
    if d["kind"] == "wait" and any(m.reported is None for m in st.members):
        out.append("a member has not reported: `pacestack galera recover` shows the way out")
    out.append("(* = this node; its own files and server were read)" if st.local_node
               else "(no member is this node: Pacemaker's view only)")
    return "\n".join(out) + "\n"


def render_plan(p: recover.RecoveryPlan) -> str:
    out = []
    if p.candidate_position is not None:
        out.append(f"bootstrap node:      {p.candidate} at {_pos(p.candidate_position)}")
    elif p.candidate:
        out.append(f"bootstrap node:      {p.candidate} (no position reported)")
    for m in p.missing:
        rec = (f"last recorded seqno {m.recorded.seqno} on {m.recorded.uuid}"
               + (f" at {_when(m.recorded.at)}" if m.recorded.at else "")) \
            if m.recorded else "never recorded a seqno"
        out.append(f"held-back member:    {m.node} ({m.why}): {rec}")
    if p.missing and p.candidate_position is not None:
        gap = "unknown" if p.gap is None else str(p.gap)
        out.append(f"gap:                 {gap} committed transactions may be lost "
                   "(see --help)")
    out.append(f"agent says:          {p.reason}")
    for r in p.refusals:
        out.append(f"REFUSED: {r.message} [{r.code}]")
    if p.ok:
        out.append(f"to go on: pacestack galera recover --bootstrap-from {p.candidate} "
                   f"--accept-loss {'unknown' if p.gap is None else p.gap}")
    return "\n".join(out) + "\n"


def _when(epoch: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _in_lab(args) -> int:
    """Run this same galera command inside a lab node (`pacestack lab up`), with the
    terminal passed through (recover's confirmation works there too). The lab is
    reached through its entry point: this module runs on real controllers, where
    the lab need not be."""
    argv = sys.argv[sys.argv.index("galera") + 1:]
    inner, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--lab":
            skip = args.lab != "*"
        elif not a.startswith("--lab="):
            inner.append(a)
    exe = str(Path(sys.executable).with_name("pacestack"))
    return commands.lab_entry("run_inside")(args.lab, [exe, "galera", *inner])


def _status(conf, args) -> int:
    if args.lab:
        return _in_lab(args)
    st = status.collect(args.resource)
    if args.format == "json":
        render.print_json(st.to_dict())
    else:
        sys.stdout.write(render_status(st))
    return 0


def _accepts(value: str, gap: int | None) -> bool:
    if gap is None:
        return value.strip().lower() == "unknown"
    try:
        return int(value.strip()) >= gap
    except ValueError:
        return False


def _recover(conf, args) -> int:
    if args.lab:
        return _in_lab(args)
    st = status.collect(args.resource)
    p = recover.plan(st, args.bootstrap_from)
    if args.bootstrap_from is None:
        if args.format == "json":
            render.print_json(p.to_dict())
        else:
            sys.stdout.write(render_plan(p))
        return 0
    if not p.ok:
        if args.format == "text":
            sys.stderr.write(render_plan(p))
        raise ConfigError(f"recover refused, nothing changed: {p.refusals[0].message}")
    gap = "unknown" if p.gap is None else str(p.gap)
    if args.accept_loss is not None:
        if not _accepts(args.accept_loss, p.gap):
            raise ConfigError(f"--accept-loss {args.accept_loss} does not cover the gap of "
                              f"{gap} transactions: nothing changed")
    elif sys.stdin.isatty():
        sys.stdout.write(render_plan(p))
        sys.stdout.write(f"Bootstrap {p.candidate} and accept losing up to {gap} committed "
                         f"transactions? Type {gap} to confirm: ")
        sys.stdout.flush()
        if not _accepts(sys.stdin.readline(), p.gap):
            raise RuntimeFailure("not confirmed: nothing changed")
    else:
        raise ConfigError(f"recover --bootstrap-from {p.candidate} needs confirmation: run "
                          f"it on a terminal, or add --accept-loss {gap} (the gap): "
                          "nothing changed")
    # re-read right before acting: the cluster may have moved while we asked
    again = recover.plan(status.collect(args.resource), args.bootstrap_from)
    if not again.ok or again.candidate_position != p.candidate_position or again.gap != p.gap:
        raise RuntimeFailure("the cluster changed while confirming: nothing changed; run "
                             "recover again")
    ovr = recover.apply(again)
    result = {"plan": again.to_dict(), "override": ovr._asdict(), "promoted_after_s": None}
    if args.format == "text":
        print(f"handed to the agent on {ovr.node}: bootstrap at {ovr.uuid}:{ovr.seqno} "
              f"without {', '.join(ovr.missing)} (gap {gap}), decided by {ovr.by}")
    if not args.no_wait:
        why = recover.nudge(st, ovr.node)
        if why:
            print(f"pacestack: note: {why}; the agent reads the decision at its next "
                  "monitor", file=sys.stderr)
        took = recover.wait_promoted(st.resource, ovr.node, args.timeout)
        if took is None:
            raise RuntimeFailure(f"{ovr.node} not Promoted after {args.timeout:.0f}s: see "
                                 "`pacestack galera status` and the Pacemaker log")
        result["promoted_after_s"] = round(took, 2)
        if args.format == "text":
            print(f"{ovr.node} is Promoted (Primary, Synced) after {took:.1f} s")
    if args.format == "json":
        render.print_json(result)
    return 0


def register(subparsers) -> None:
    _, verbs = commands.add_group(
        subparsers, "galera", "Galera under ocf:pacestack:galera: status and guarded recovery",
        "Where every Galera member stands, and the guarded way out when a member never "
        "comes back (run on a cluster node).")
    p = verbs.add_parser("status", help="every member's position, role and what it waits for",
                         description=STATUS_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resource", metavar="ID", help="the galera primitive or clone id "
                   "(default: the one ocf:pacestack:galera resource)")
    _lab_argument(p)
    commands.add_format_argument(p)
    p.set_defaults(func=_status)

    p = verbs.add_parser("recover", help="show (and on request carry out) a bootstrap "
                         "without a member that never returns", description=RECOVER_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resource", metavar="ID", help="the galera primitive or clone id")
    p.add_argument("--bootstrap-from", metavar="NODE",
                   help="carry the decision out: NODE bootstraps (after confirmation)")
    p.add_argument("--accept-loss", metavar="N",
                   help="non-interactive confirmation: accept losing up to N committed "
                   "transactions (at least the gap shown; 'unknown' when it is unknown)")
    p.add_argument("--no-wait", action="store_true",
                   help="return once the agent has the decision (default: wait until "
                   "NODE is Promoted)")
    p.add_argument("--timeout", type=float, default=300,
                   help="seconds to wait for Promoted (default 300)")
    _lab_argument(p)
    commands.add_format_argument(p)
    p.set_defaults(func=_recover)


def _lab_argument(p) -> None:
    p.add_argument("--lab", nargs="?", const="*", metavar="NODE",
                   help="run it inside a node of the local lab (`pacestack lab up`; "
                   "default: the first node that is up)")
