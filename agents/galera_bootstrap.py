"""THE place where Galera bootstrap is decided. Pure: no I/O, no clock.

Input: the configured data members (Pacemaker node names), the position each
member reported (or None when it has not reported), which members are already
Primary, and this node's name. Output: JOIN a Primary peer, BOOTSTRAP a new
Primary component from this node, or WAIT, with a reason naming whom it waits
for. The rule (issue 3): bootstrap only from the most advanced member (highest
seqno, ties broken by the lowest node name), only when every member reported,
and only when all members with history share one cluster UUID. Anything else
could throw committed transactions away ("Reversing history"), so it waits.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence

from pacestack.agents.galera_state import Position

JOIN = "join"
BOOTSTRAP = "bootstrap"
WAIT = "wait"


class Decision(namedtuple("Decision", "kind reason peer waiting_for bootstrap_node",
                          defaults=(None, (), None))):
    """kind: JOIN, BOOTSTRAP or WAIT; reason: one line (logged, the exit reason);
    peer: JOIN's Primary peer or the node WAIT waits on; waiting_for: every node
    WAIT waits on; bootstrap_node: who may bootstrap, when known."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.kind.upper()}: {self.reason}"


def _names(names: Iterable[str]) -> str:
    return ", ".join(names)


def choose_bootstrap(members: Sequence[str],
                     positions: Mapping[str, Position | None]) -> Decision:
    """Which member may bootstrap, seen from nowhere in particular.

    BOOTSTRAP (bootstrap_node set) or WAIT (waiting_for set). Every node computes
    the same answer from the same reports, so any of them can publish the score.
    """
    missing = [m for m in members if positions.get(m) is None]
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
           primary: Sequence[str], me: str) -> Decision:
    """This node's next step on promote."""
    if me not in members:
        raise ValueError(f"{me} is not one of the configured members {_names(members)}")
    peers = sorted(p for p in primary if p != me and p in members)
    if peers:
        return Decision(JOIN, f"{peers[0]} is Primary: joining it", peer=peers[0])
    choice = choose_bootstrap(members, positions)
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
