"""THE place where Galera bootstrap is decided. Pure: no I/O, no clock.

Input: the configured data members (Pacemaker node names), the position each
member reported (or None when it has not reported), which members are already
Primary, every member's persistent last-committed record, and this node's name.
Output: JOIN a Primary peer, BOOTSTRAP a new Primary component from this node, or
WAIT, with a reason naming whom it waits for. The rule never guesses:

- bootstrap only from the most advanced member (highest seqno, ties broken by the
  lowest node name), only when every member reported a known seqno on one
  cluster UUID; a member with history but seqno -1 could be the most advanced,
  so everyone waits for it;
- a member whose data is gone although it recorded a history (a data volume not
  mounted, a wiped disk) holds everyone back: bootstrapping without it could
  lose what it had;
- databases written without Galera (a standalone MariaDB being turned into the
  first node) are data: the one member holding them bootstraps from them, and
  two such members, or such a member beside a Galera history, wait for an
  operator; such a member never joins by SST (which would replace them);
- a brand-new cluster forms on empty datadirs only when no member ever recorded
  a history (the first start of the resource).

Anything else could throw committed transactions away, so it waits. One
exception, made by an operator (``pacestack galera recover``): an Override names
the node to bootstrap from, the position it was shown and the held-back members
it gives up. It is honoured only while exactly those members are held back, that
node is still at that position and ahead of every other report, and every known
history shares its cluster UUID; a Primary anywhere still wins (JOIN). The agent
and ``galera recover`` both check it with override_refusals().
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Mapping, Sequence

from pacestack.agents.galera_state import ZERO_UUID, Position

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


def _history(p: Position | None) -> bool:
    return p is not None and p.uuid != ZERO_UUID


def held_back(members: Sequence[str], positions: Mapping[str, Position | None],
              last_known: Mapping[str, Position | None] | None = None) -> dict[str, str]:
    """The members whose state keeps the automatic rule from ranking everyone, with
    why: not reported, a history with no known seqno, or no data left although the
    member recorded a history (its volume may be missing). Only an operator can
    decide without them; an override must name exactly these."""
    last_known = last_known or {}
    out: dict[str, str] = {}
    for m in members:
        p = positions.get(m)
        rec = last_known.get(m)
        if p is None:
            out[m] = "has not reported a position"
        elif _history(p) and p.seqno < 0:
            out[m] = "reports no known seqno (-1)"
        elif p.empty and _history(rec) and rec.seqno >= 0:
            out[m] = f"holds no data but recorded {rec.uuid}:{rec.seqno}"
    return out


def most_advanced(positions: Mapping[str, Position | None]) -> str | None:
    """The member with the highest known seqno (ties: the lowest name), or None."""
    known = {m: p for m, p in positions.items() if _history(p) and p.seqno >= 0}
    return min(known, key=lambda m: (-known[m].seqno, m)) if known else None


def override_refusals(members: Sequence[str], positions: Mapping[str, Position | None],
                      node: str, last_known: Mapping[str, Position | None] | None = None
                      ) -> list:
    """Why an operator must not bootstrap ``node`` without the held-back members, as
    findings of registered codes (an empty list: they may). The agent checks an
    override with it before honouring it, and ``pacestack galera recover`` before
    writing one, so the two cannot differ."""
    from pacestack import codes  # only an override or the CLI gets here, never a monitor

    last_known = last_known or {}
    if node not in members:
        return [codes.GALERA_NOT_A_MEMBER(node, node=node, members=list(members))]
    held = held_back(members, positions, last_known)
    mine = positions.get(node)
    if mine is None:
        return [codes.GALERA_NOT_REPORTED(node, node=node)]
    if not _history(mine) or mine.seqno < 0:
        return [codes.GALERA_NO_SEQNO(node, node=node, position=str(mine),
                                      source=str(mine.source))]
    out = []
    if not held:
        out.append(codes.GALERA_NONE_HELD_BACK(node))
    histories = {m: p for m, p in positions.items() if _history(p)}
    for m in held:
        if _history(last_known.get(m)):
            histories.setdefault(m, last_known[m])
    foreign = sorted(f"{m} on {p.uuid}" for m, p in histories.items() if p.uuid != mine.uuid)
    if foreign:
        out.append(codes.GALERA_FOREIGN_HISTORY(node, node=node, uuid=mine.uuid,
                                                others=foreign))
    standalone = sorted(m for m, p in positions.items() if p is not None and p.standalone)
    if standalone:
        out.append(codes.GALERA_STANDALONE_DATA(node, nodes=standalone))
    best = most_advanced({m: p for m, p in positions.items() if m not in held})
    if best is not None and positions[best].seqno > mine.seqno:
        out.append(codes.GALERA_NOT_MOST_ADVANCED(node, node=node, seqno=mine.seqno, best=best,
                                                  best_seqno=positions[best].seqno))
    return out


def loss_gap(node_position: Position, held: Iterable[str],
             last_known: Mapping[str, Position | None]) -> int | None:
    """Transactions the held-back members may have committed beyond node_position
    (None: unknown, a held-back member never recorded a position)."""
    recs = [last_known.get(m) for m in held]
    if any(r is None or not _history(r) for r in recs):
        return None
    same = [r.seqno for r in recs if r.uuid == node_position.uuid]
    return max([0] + [s - node_position.seqno for s in same])


def check_override(members: Sequence[str], positions: Mapping[str, Position | None],
                   override: Override,
                   last_known: Mapping[str, Position | None] | None = None) -> str | None:
    """Why ``override`` must not be honoured with these reports (None: it may)."""
    me = override.node
    mine = positions.get(me)
    if mine is not None and (mine.uuid, mine.seqno) != (override.uuid, override.seqno):
        return (f"{me} is now at {mine}, not at {override.uuid}:{override.seqno} as when "
                "the operator decided")
    refusals = override_refusals(members, positions, me, last_known)
    if refusals:
        return refusals[0].message
    held = sorted(held_back(members, positions, last_known))
    if sorted(override.missing) != held:
        return (f"the operator decided without {_names(override.missing)}, but now "
                f"{_names(held) or 'nobody'} is held back")
    return None


def choose_bootstrap(members: Sequence[str],
                     positions: Mapping[str, Position | None],
                     override: Override | None = None,
                     last_known: Mapping[str, Position | None] | None = None) -> Decision:
    """Which member may bootstrap, seen from nowhere in particular.

    BOOTSTRAP (bootstrap_node set) or WAIT (waiting_for set). Every node computes
    the same answer from the same reports, so any of them can publish the score.
    ``last_known``: every member's persistent last-committed record. An operator's
    ``override`` counts only while members are held back and check_override()
    finds nothing against it.
    """
    last_known = last_known or {}
    held = held_back(members, positions, last_known)
    if held and override is not None and \
            check_override(members, positions, override, last_known) is None:
        gap = "an unknown number of" if override.gap is None else f"up to {override.gap}"
        return Decision(BOOTSTRAP, f"operator override by {override.by}: {override.node} "
                                   f"bootstraps at {positions[override.node]} without "
                                   f"{_names(sorted(held))} ({gap} transactions of theirs "
                                   "lost)", bootstrap_node=override.node, override=True)
    missing = [m for m in members if positions.get(m) is None]
    if missing:
        return Decision(WAIT, f"waiting for {_names(missing)} to report a position: "
                              "bootstrapping without them could lose their commits",
                        peer=missing[0], waiting_for=tuple(missing))
    reports = {m: positions[m] for m in members}
    history = {m: p for m, p in reports.items() if _history(p)}
    standalone = sorted(m for m, p in reports.items() if p.standalone)
    if standalone and (history or len(standalone) > 1):
        others = f"Galera history on {_names(sorted(history))}" if history else \
            "each other"
        return Decision(WAIT, f"{_names(standalone)} hold databases written without Galera "
                              f"beside {others}: whichever bootstraps, an SST would replace "
                              "the rest; an operator must choose which to keep",
                        waiting_for=tuple(standalone))
    if standalone:
        return Decision(BOOTSTRAP, f"{standalone[0]} holds the only data (databases written "
                                   "without Galera; the others hold nothing): it forms the "
                                   "cluster from them", bootstrap_node=standalone[0])
    if not history:
        records = sorted(f"{m} {p}" for m, p in last_known.items()
                         if m in members and _history(p))
        if records:
            return Decision(WAIT, "no member holds data, but the members recorded Galera "
                                  f"history ({_names(records)}): a data volume may be "
                                  "missing; forming a new cluster would start an empty "
                                  "database beside the data",
                            waiting_for=tuple(members))
        first = min(members)
        return Decision(BOOTSTRAP, f"no member holds data or ever recorded Galera history: "
                                   f"{first} forms a new cluster (lowest node name)",
                        bootstrap_node=first)
    uuids: dict[str, list[str]] = {}
    for m, p in sorted(history.items()):
        uuids.setdefault(p.uuid, []).append(m)
    if len(uuids) > 1:
        detail = "; ".join(f"{_names(ms)} on {u}" for u, ms in uuids.items())
        return Decision(WAIT, f"members disagree on the cluster UUID ({detail}): an "
                              "operator must choose which history to keep",
                        waiting_for=tuple(sorted(history)))
    if held:
        why = "; ".join(f"{m} {w}" for m, w in sorted(held.items()))
        return Decision(WAIT, f"the most advanced member cannot be told ({why}): "
                              "`pacestack galera recover` shows what an operator can do",
                        peer=min(held), waiting_for=tuple(sorted(held)))
    best = most_advanced(history)
    assert best is not None  # every history has a known seqno here
    pos = history[best]
    return Decision(BOOTSTRAP, f"{best} is the most advanced member ({pos}); all "
                               f"{len(members)} members reported", bootstrap_node=best)


def decide(members: Sequence[str], positions: Mapping[str, Position | None],
           primary: Sequence[str], me: str, override: Override | None = None,
           last_known: Mapping[str, Position | None] | None = None) -> Decision:
    """This node's next step on promote (a Primary peer always wins over an override)."""
    if me not in members:
        raise ValueError(f"{me} is not one of the configured members {_names(members)}")
    peers = sorted(p for p in primary if p != me and p in members)
    mine = positions.get(me)
    if peers and mine is not None and mine.standalone:
        return Decision(WAIT, f"{peers[0]} is Primary, but this node holds databases "
                              "written without Galera: joining would replace them by SST; "
                              "an operator must move them aside first",
                        peer=peers[0], waiting_for=(me,))
    if peers:
        return Decision(JOIN, f"{peers[0]} is Primary: joining it", peer=peers[0])
    choice = choose_bootstrap(members, positions, override, last_known)
    if choice.kind == WAIT:
        return choice
    if choice.bootstrap_node == me:
        return choice
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
