"""THE place where Galera bootstrap is decided. Pure: no I/O, no clock.

Input: the configured data members (Pacemaker node names), the position each
member reported (or None when it has not reported), which members are already
Primary, and this node's name. Output: JOIN a Primary peer, BOOTSTRAP a new
Primary component from this node, or WAIT, with a reason naming whom it waits
for. The rule (issue 3): bootstrap only from the most advanced member (highest
seqno, ties broken by the lowest node name), only when every member reported,
and only when all members with history share one cluster UUID. Anything else
could throw committed transactions away ("Reversing history"), so it waits.

One exception, made by an operator (``pacestack galera recover``): when members
have not reported (gone, disk lost), an Override names the node to bootstrap
from and the position it was shown. It is honoured only while that node still
is at exactly that position, is the most advanced of the members that did
report, and every known history (reports and the missing members' last recorded
positions) shares its cluster UUID; a Primary anywhere still wins (JOIN).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence

from pacestack.agents.galera_state import Position

JOIN = "join"
BOOTSTRAP = "bootstrap"
WAIT = "wait"


class Decision(namedtuple("Decision", "kind reason peer waiting_for bootstrap_node override",
                          defaults=(None, (), None, False))):
    """kind: JOIN, BOOTSTRAP or WAIT; reason: one line (logged, the exit reason);
    peer: JOIN's Primary peer or the node WAIT waits on; waiting_for: every node
    WAIT waits on; bootstrap_node: who may bootstrap, when known; override: True
    when an operator's Override made this BOOTSTRAP (honoured once, then cleared)."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.kind.upper()}: {self.reason}"


def _names(names: Iterable[str]) -> str:
    return ", ".join(names)


class Override(namedtuple("Override", "node uuid seqno missing gap by at")):
    """An operator's decision to bootstrap from ``node`` at ``uuid:seqno`` without
    the ``missing`` members; ``gap``: transactions that may be lost (None: unknown);
    ``by``: who decided; ``at``: when (epoch seconds)."""

    __slots__ = ()


def format_override(o: Override) -> str:
    """The node attribute value (``;``-separated key=value, no spaces)."""
    gap = "unknown" if o.gap is None else str(o.gap)
    return (f"node={o.node};uuid={o.uuid};seqno={o.seqno};missing={','.join(o.missing)};"
            f"gap={gap};by={o.by};at={int(o.at)}")


def parse_override(text: str) -> Override:
    """ValueError (one line) for anything that is not exactly what format_override wrote."""
    fields: dict[str, str] = {}
    for item in text.strip().split(";"):
        key, sep, value = item.partition("=")
        if not sep or key in fields:
            raise ValueError(f"bootstrap override {text[:80]!r} is not key=value;...")
        fields[key] = value
    want = ("node", "uuid", "seqno", "missing", "gap", "by", "at")
    if sorted(fields) != sorted(want):
        raise ValueError(f"bootstrap override {text[:80]!r} needs exactly {', '.join(want)}")
    try:
        seqno, at = int(fields["seqno"]), int(fields["at"])
        gap = None if fields["gap"] == "unknown" else int(fields["gap"])
    except ValueError:
        raise ValueError(f"bootstrap override {text[:80]!r}: seqno, gap, at must be "
                         "integers") from None
    missing = tuple(m for m in fields["missing"].split(",") if m)
    if not fields["node"] or not missing:
        raise ValueError(f"bootstrap override {text[:80]!r} names no node or no missing member")
    return Override(fields["node"], fields["uuid"], seqno, missing, gap, fields["by"], at)


def check_override(members: Sequence[str], positions: Mapping[str, Position | None],
                   override: Override,
                   last_known: Mapping[str, Position | None] | None = None) -> str | None:
    """Why ``override`` must not be honoured with these reports (None: it may)."""
    me = override.node
    mine = positions.get(me)
    missing = [m for m in members if positions.get(m) is None]
    if me not in members:
        return f"{me} is not one of the configured members {_names(members)}"
    if mine is None:
        return f"{me} has not reported a position"
    if (mine.uuid, mine.seqno) != (override.uuid, override.seqno):
        return (f"{me} is now at {mine}, not at {override.uuid}:{override.seqno} as when "
                "the operator decided")
    if mine.empty or mine.seqno < 0:
        return f"{me} has no known last committed seqno ({mine})"
    if not missing:
        return "every member reported: the normal rule decides"
    if sorted(override.missing) != sorted(missing):
        return (f"the operator decided without {_names(override.missing)}, but now "
                f"{_names(missing) or 'nobody'} is missing")
    histories = {m: p for m, p in positions.items() if p is not None and not p.empty}
    for m, p in sorted((last_known or {}).items()):
        if m in missing and p is not None and not p.empty:
            histories.setdefault(m, p)
    foreign = sorted(f"{m} on {p.uuid}" for m, p in histories.items() if p.uuid != mine.uuid)
    if foreign:
        return (f"{me} is on cluster {mine.uuid} but {_names(foreign)}: not the same "
                "history")
    unknown = sorted(m for m, p in positions.items()
                     if m != me and p is not None and not p.empty and p.seqno < 0)
    if unknown:
        return f"{_names(unknown)} reported no known seqno: {me} cannot be shown ahead"
    ahead = sorted(m for m, p in positions.items()
                   if p is not None and not p.empty and p.seqno > mine.seqno)
    if ahead:
        return f"{_names(ahead)} reported a higher seqno than {me} ({mine.seqno})"
    return None


def choose_bootstrap(members: Sequence[str],
                     positions: Mapping[str, Position | None],
                     override: Override | None = None,
                     last_known: Mapping[str, Position | None] | None = None) -> Decision:
    """Which member may bootstrap, seen from nowhere in particular.

    BOOTSTRAP (bootstrap_node set) or WAIT (waiting_for set). Every node computes
    the same answer from the same reports, so any of them can publish the score.
    An operator's ``override`` counts only while members are missing and
    check_override() finds nothing against it.
    """
    missing = [m for m in members if positions.get(m) is None]
    if missing and override is not None and \
            check_override(members, positions, override, last_known) is None:
        gap = "an unknown number of" if override.gap is None else f"up to {override.gap}"
        return Decision(BOOTSTRAP, f"operator override by {override.by}: {override.node} "
                                   f"bootstraps at {positions[override.node]} without "
                                   f"{_names(missing)} ({gap} transactions of theirs lost)",
                        bootstrap_node=override.node, override=True)
    if missing:
        return Decision(WAIT, f"waiting for {_names(missing)} to report a position: "
                              "bootstrapping without them could lose their commits",
                        peer=missing[0], waiting_for=tuple(missing))
    reports = {m: positions[m] for m in members}
    history = {m: p for m, p in reports.items() if not p.empty}
    if not history:
        first = min(members)
        return Decision(BOOTSTRAP, f"no member has Galera history; {first} forms a new "
                                   "cluster (lowest node name)", bootstrap_node=first)
    uuids: dict[str, list[str]] = {}
    for m, p in sorted(history.items()):
        uuids.setdefault(p.uuid, []).append(m)
    if len(uuids) > 1:
        detail = "; ".join(f"{_names(ms)} on {u}" for u, ms in uuids.items())
        return Decision(WAIT, f"members disagree on the cluster UUID ({detail}): an "
                              "operator must choose which history to keep",
                        waiting_for=tuple(sorted(history)))
    known = {m: p for m, p in history.items() if p.seqno >= 0}
    if not known:
        return Decision(WAIT, f"no member knows its last committed seqno "
                              f"({_names(sorted(history))} report -1): an operator must "
                              "recover one", waiting_for=tuple(sorted(history)))
    # most advanced first; equal seqnos: the lowest node name, so all nodes agree
    best = min(known, key=lambda m: (-known[m].seqno, m))
    pos = known[best]
    return Decision(BOOTSTRAP, f"{best} is the most advanced member ({pos}); all "
                               f"{len(members)} members reported", bootstrap_node=best)


def decide(members: Sequence[str], positions: Mapping[str, Position | None],
           primary: Sequence[str], me: str, override: Override | None = None,
           last_known: Mapping[str, Position | None] | None = None) -> Decision:
    """This node's next step on promote (a Primary peer always wins over an override)."""
    if me not in members:
        raise ValueError(f"{me} is not one of the configured members {_names(members)}")
    peers = sorted(p for p in primary if p != me and p in members)
    if peers:
        return Decision(JOIN, f"{peers[0]} is Primary: joining it", peer=peers[0])
    choice = choose_bootstrap(members, positions, override, last_known)
    if choice.kind == WAIT:
        return choice
    if choice.bootstrap_node == me:
        return choice
    mine = positions.get(me)
    return Decision(WAIT, f"waiting for {choice.bootstrap_node} to bootstrap: "
                          f"{choice.reason}; this node is at {mine}",
                    peer=choice.bootstrap_node, waiting_for=(choice.bootstrap_node,),
                    bootstrap_node=choice.bootstrap_node)


# Promotion scores: Pacemaker promotes the highest first. Only the bootstrap
# node and joiners of an existing Primary get one; a node that would only WAIT
# gets none, so Pacemaker does not promote it into a wait.
SCORE_BOOTSTRAP = 1000
SCORE_JOIN = 100


def promotion_score(decision: Decision) -> int | None:
    return {BOOTSTRAP: SCORE_BOOTSTRAP, JOIN: SCORE_JOIN}.get(decision.kind)
