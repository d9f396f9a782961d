"""The operator's bootstrap override (pacestack galera recover) as pure functions:
the agent's side (check_override, choose_bootstrap/decide) and the CLI's plan.
Fast, no services."""

import pytest
from pacestack.agents.galera_bootstrap import (
    BOOTSTRAP,
    JOIN,
    WAIT,
    Override,
    check_override,
    choose_bootstrap,
    decide,
    format_override,
    parse_override,
    promotion_score,
)
from pacestack.agents.galera_state import Position, StateError, format_recorded, parse_recorded
from pacestack.galera import recover as galera_recover
from pacestack.galera.status import GaleraStatus, MemberState, Pos

from pacestack.errors import ConfigError

U1 = "2ec83218-e91a-11f1-9c34-4743e91b2bee"
U2 = "3d4623c7-e91a-11f1-8b2f-cb2276622c38"
Z = "00000000-0000-0000-0000-000000000000"
M2 = ["controller01", "controller02"]
M3 = ["node1", "node2", "node3"]


def pos(seqno, uuid=U1, source="recovered"):
    return Position(uuid, seqno, source)


def ovr(node="controller01", seqno=100, uuid=U1, missing=("controller02",), gap=7):
    return Override(node, uuid, seqno, tuple(missing), gap, "root@controller01", 1795658843)


# -- the attribute value ------------------------------------------------------------
def test_override_round_trip_and_strict_parsing():
    o = ovr()
    assert parse_override(format_override(o)) == o
    assert parse_override(format_override(o._replace(gap=None))).gap is None
    good = format_override(o)
    for bad in ("", "node=a", good + ";extra=1", good.replace("seqno=100", "seqno=1x"),
                good.replace("missing=controller02", "missing="),
                good + ";node=b", good.replace("at=", "when=")):
        with pytest.raises(ValueError):
            parse_override(bad)


def test_recorded_position_round_trip():
    p, at = parse_recorded(format_recorded(pos(42), 1795658843.7))
    assert (p, at) == (Position(U1, 42, "recorded"), 1795658843)
    for bad in ("", f"{U1}:42", f"{U1}:42:soon", "x:1:2"):
        with pytest.raises(StateError):
            parse_recorded(bad)


# -- the agent honours it only when safe ----------------------------------------------
def test_override_bootstraps_the_named_survivor_once_nobody_else_reported():
    reports = {"controller01": pos(100), "controller02": None}
    assert decide(M2, reports, [], "controller01").kind == WAIT  # without: waits forever
    last = {"controller02": pos(107, source="recorded")}
    d = decide(M2, reports, [], "controller01", ovr(), last)
    assert d.kind == BOOTSTRAP and d.override and d.bootstrap_node == "controller01"
    assert "operator override by root@controller01" in d.reason and "up to 7" in d.reason
    assert promotion_score(d) > 0


def test_a_primary_wins_over_the_override():
    reports = {"controller01": pos(100), "controller02": None}
    d = decide(M2, reports, ["controller02"], "controller01", ovr())
    assert (d.kind, d.peer) == (JOIN, "controller02") and not d.override


@pytest.mark.parametrize("reports,override,last,words", [
    # the survivor moved since the operator looked
    ({"controller01": pos(101), "controller02": None}, ovr(), {}, "is now at"),
    # everybody reported: the normal rule decides
    ({"controller01": pos(100), "controller02": pos(90)}, ovr(), {}, "no member is held back"),
    # the missing member's record is another history
    ({"controller01": pos(100), "controller02": None}, ovr(),
     {"controller02": pos(107, U2, "recorded")}, "not the same history"),
    # the named node holds no history at all
    ({"controller01": pos(-1, Z, "empty"), "controller02": None}, ovr(seqno=-1, uuid=Z), {},
     "no known last committed seqno"),
    # the named node has not reported
    ({"controller01": None, "controller02": None}, ovr(missing=M2), {}, "has not reported"),
])
def test_override_refused_by_the_agent(reports, override, last, words):
    assert words in check_override(M2, reports, override, last)
    d = choose_bootstrap(M2, reports, override, last)
    assert not d.override and d.kind != BOOTSTRAP or "no member is held back" in words


def test_override_for_a_less_advanced_node_is_refused():
    reports = {"node1": pos(90), "node2": pos(100), "node3": None}
    o = ovr(node="node1", seqno=90, missing=("node3",))
    assert "node2 is at seqno 100" in check_override(M3, reports, o)
    d = decide(M3, reports, [], "node1", o)
    assert d.kind == WAIT and not d.override
    # another reporter of unknown seqno is held back too: the operator did not name it
    reports["node2"] = pos(-1)
    assert "now node2, node3 is held back" in check_override(M3, reports, o)


def test_override_is_the_way_out_for_a_member_of_unknown_seqno():
    # every member reported, one with history but no position: the rule waits for ever;
    # an operator who gives that member up may bootstrap the most advanced of the rest
    reports = {"node1": pos(90), "node2": pos(-1), "node3": pos(80)}
    assert choose_bootstrap(M3, reports).kind == WAIT
    o = ovr(node="node1", seqno=90, missing=("node2",))
    assert check_override(M3, reports, o) is None
    d = decide(M3, reports, [], "node1", o)
    assert d.kind == BOOTSTRAP and d.override
    assert "node1 is at seqno 90" in check_override(
        M3, reports, ovr(node="node3", seqno=80, missing=("node2",)))


def test_other_members_wait_for_the_override_node():
    reports = {"node1": pos(100), "node2": pos(-1, Z, "empty"), "node3": None}
    o = ovr(node="node1", missing=("node3",))
    d = decide(M3, reports, [], "node2", o)
    assert d.kind == WAIT and d.bootstrap_node == "node1"


# -- the CLI's plan -----------------------------------------------------------------
def status(members: list[MemberState]) -> GaleraStatus:
    from pacestack.agents.galera_bootstrap import choose_bootstrap as cb

    reports = {m.node: m.reported.position() if m.reported else None for m in members}
    records = {m.node: m.recorded.position() if m.recorded else None for m in members}
    d = cb([m.node for m in members], reports, last_known=records)
    return GaleraStatus("galera", "galera-clone", members, [], None, True,
                        {"kind": d.kind, "reason": d.reason})


def rep(seqno, uuid=U1, source="recovered"):
    return Pos(uuid, seqno, source)


def rec(seqno, uuid=U1):
    return Pos(uuid, seqno, "recorded", 1795658843)


def test_plan_names_the_survivor_and_the_gap():
    st = status([MemberState("controller01", "online", "Unpromoted", rep(100), rec(100)),
                 MemberState("controller02", "offline", "Stopped", None, rec(107))])
    p = galera_recover.plan(st)
    assert p.ok and p.candidate == "controller01" and p.gap == 7
    assert p.highest_missing == 107
    # the survivor ahead of the record: nothing of theirs is lost
    st.members[1].recorded = rec(60)
    assert galera_recover.plan(st, "controller01").gap == 0
    st.members[1].recorded = None
    assert galera_recover.plan(st).gap is None  # never recorded: unknown


@pytest.mark.parametrize("change,named,words,bad_input", [
    (lambda ms: setattr(ms[1], "recorded", rec(107, U2)), "controller01",
     "not the same history", False),
    (lambda ms: setattr(ms[0], "role", "Promoted"), "controller01",
     "a Primary component is running on controller01", False),
    (lambda ms: ms[1].__setattr__("reported", rep(90)), "controller01",
     "no member is held back", False),
    (lambda ms: None, "controller02", "controller02 has not reported", True),
    (lambda ms: setattr(ms[0], "override", "node=controller01;..."), "controller01",
     "already pending", False),
])
def test_plan_refusals(change, named, words, bad_input):
    ms = [MemberState("controller01", "online", "Unpromoted", rep(100), rec(100)),
          MemberState("controller02", "offline", "Stopped", None, rec(107))]
    change(ms)
    p = galera_recover.plan(status(ms), named)
    assert not p.ok and any(words in r.message for r in p.refusals), p.refusals
    assert p.bad_input == bad_input


def test_plan_refuses_a_less_advanced_node_named():
    ms = [MemberState("node1", "online", "Unpromoted", rep(90)),
          MemberState("node2", "online", "Unpromoted", rep(100)),
          MemberState("node3", "offline", "Stopped", None, rec(120))]
    p = galera_recover.plan(status(ms), "node1")
    assert not p.ok and p.bad_input
    refused = {r.code: r for r in p.refusals}
    assert refused["GALERA_NOT_MOST_ADVANCED"].message == (
        "node1 (seqno 90) is not the most advanced member that reported: node2 is at "
        "seqno 100")
    assert refused["GALERA_NOT_MOST_ADVANCED"].payload == {
        "node": "node1", "seqno": 90, "best": "node2", "best_seqno": 100}
    good = galera_recover.plan(status(ms))
    assert good.ok and good.candidate == "node2" and good.gap == 20
    with pytest.raises(ConfigError, match="'node9' is not a member"):
        galera_recover.plan(status(ms), "node9")


# -- the operator's view and the agent's decision agree ------------------------------
SCENARIOS = {
    "one member gone": [rep(100), rep(90), None],
    "gone, the record ahead": [rep(100), None, rep(95)],
    "no seqno on one": [rep(100), rep(-1), rep(80)],
    "no seqno on the best named": [rep(-1), rep(90), rep(80)],
    "data gone but recorded": [rep(100), rep(-1, Z, "empty"), rep(99)],
    "standalone beside history": [rep(100), rep(-1, Z, "standalone"), None],
    "foreign record": [rep(100), None, rep(100)],
    "everyone reported": [rep(100), rep(90), rep(80)],
    "nobody with history": [rep(-1, Z, "empty"), None, rep(-1, Z, "empty")],
}
OFFERED = {"one member gone": {"node1"}, "gone, the record ahead": {"node1"},
           "no seqno on one": {"node1"}, "no seqno on the best named": {"node2"},
           "data gone but recorded": {"node1"}}
RECORDS = {"gone, the record ahead": [rec(100), rec(130), rec(95)],
           "data gone but recorded": [rec(100), rec(101), rec(99)],
           "foreign record": [rec(100), rec(120, U2), rec(100)]}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_recover_offers_exactly_what_the_agent_honours(name):
    """galera status/recover and the agent read the same reports with the same rule:
    the override recover would write is honoured by the agent iff recover's plan is
    ok, and status shows the agent's own decision."""
    records = RECORDS.get(name, [rec(100), rec(90), rec(80)])
    rows = zip(M3, SCENARIOS[name], records, strict=True)
    ms = [MemberState(n, "online" if r else "offline", "Unpromoted" if r else "Stopped", r, rc)
          for n, r, rc in rows]
    st = status(ms)
    reports, recorded = st.reports(), st.records()
    agent_view = choose_bootstrap(M3, reports, last_known=recorded)
    assert galera_recover.plan(st).reason == st.decision["reason"]
    offered = set()
    for named in [None, *M3]:
        p = galera_recover.plan(st, named)
        if p.ok:
            offered.add(p.candidate)
        if p.candidate is None or p.candidate_position is None:
            assert not p.ok
            continue
        c = p.candidate_position
        o = Override(p.candidate, c.uuid, c.seqno, tuple(m.node for m in p.missing), p.gap,
                     "root@test", 1795658843)
        honoured = check_override(M3, reports, o, recorded) is None
        assert honoured == p.ok, (named, p.refusals)
        if honoured:
            d = decide(M3, reports, [], p.candidate, o, recorded)
            assert d.kind == BOOTSTRAP and d.override and agent_view.kind == WAIT
    # only the rule's own candidate is ever offered, and only while someone is held back
    assert offered == OFFERED.get(name, set())
