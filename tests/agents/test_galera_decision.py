"""The bootstrap rule and the state parsers, as pure functions (fast, no services)."""

import os

import pytest
from pacestack.agents import galera_state as gs
from pacestack.agents.galera_bootstrap import (
    BOOTSTRAP,
    JOIN,
    WAIT,
    choose_bootstrap,
    decide,
    promotion_score,
)
from pacestack.agents.galera_state import Position, StateError

U1 = "2ec83218-e91a-11f1-9c34-4743e91b2bee"
U2 = "3d4623c7-e91a-11f1-8b2f-cb2276622c38"
Z = gs.ZERO_UUID
M = ["node1", "node2", "node3"]


def pos(seqno, uuid=U1, source="recovered"):
    return Position(uuid, seqno, source)


# -- the decision ---------------------------------------------------------------
def test_most_advanced_bootstraps_and_others_wait_for_it():
    reports = {"node1": pos(10), "node2": pos(12), "node3": pos(11)}
    assert decide(M, reports, [], "node2").kind == BOOTSTRAP
    for me in ("node1", "node3"):
        d = decide(M, reports, [], me)
        assert d.kind == WAIT and d.peer == "node2"
        assert "waiting for node2 to bootstrap" in d.reason and f"{U1}:12" in d.reason


def test_tie_is_broken_by_lowest_node_name_everywhere():
    reports = {"node1": pos(5), "node2": pos(7), "node3": pos(7)}
    assert decide(M, reports, [], "node2").kind == BOOTSTRAP
    assert decide(M, reports, [], "node3").peer == "node2"
    assert decide(M, reports, [], "node1").peer == "node2"


def test_existing_primary_is_joined_whatever_the_positions():
    reports = {"node1": pos(50), "node2": None, "node3": pos(1)}
    d = decide(M, reports, ["node3"], "node1")
    assert (d.kind, d.peer) == (JOIN, "node3")
    assert promotion_score(d) > 0
    # being listed as Primary oneself does not count as a peer
    assert decide(M, reports, ["node1"], "node1").kind == WAIT


def test_missing_report_waits_and_names_the_node():
    reports = {"node1": pos(3), "node2": pos(9), "node3": None}
    for me in M:
        d = decide(M, reports, [], me)
        assert d.kind == WAIT and d.waiting_for == ("node3",)
        assert "waiting for node3 to report" in d.reason
        assert promotion_score(d) is None


def test_foreign_cluster_uuid_waits_for_an_operator():
    reports = {"node1": pos(3), "node2": pos(9), "node3": pos(100, U2)}
    d = decide(M, reports, [], "node3")
    assert d.kind == WAIT and "disagree on the cluster UUID" in d.reason
    assert U1 in d.reason and U2 in d.reason and "node3" in d.reason


def test_empty_members_do_not_block_and_are_never_chosen():
    reports = {"node1": pos(3), "node2": pos(-1, Z, "empty"), "node3": pos(4)}
    assert decide(M, reports, [], "node3").kind == BOOTSTRAP
    assert decide(M, reports, [], "node2").peer == "node3"


def test_fresh_cluster_lowest_name_forms_it():
    reports = {m: pos(-1, Z, "empty") for m in M}
    assert decide(M, reports, [], "node1").kind == BOOTSTRAP
    assert decide(M, reports, [], "node2").peer == "node1"


def test_unknown_seqno_everywhere_waits():
    reports = {m: pos(-1) for m in M}
    d = decide(M, reports, [], "node1")
    assert d.kind == WAIT and "no known seqno (-1)" in d.reason
    assert d.waiting_for == tuple(M) and "pacestack galera recover" in d.reason


def test_unknown_seqno_holds_everyone_back():
    # node1 and node3 have history but no position: either may be ahead of node2's 0
    reports = {"node1": pos(-1), "node2": pos(0), "node3": pos(-1)}
    choice = choose_bootstrap(M, reports)
    assert choice.kind == WAIT and choice.waiting_for == ("node1", "node3")
    assert "node1 reports no known seqno" in choice.reason
    for me in M:
        assert decide(M, reports, [], me).kind == WAIT
    # a Primary elsewhere is still joined
    assert decide(M, reports, ["node2"], "node1").kind == JOIN


# -- data without Galera history, and data that should be there -------------------
FRESH = pos(-1, Z, "empty")
STANDALONE = pos(-1, Z, "standalone")


def test_the_one_member_with_standalone_data_bootstraps_from_it():
    two = ["controller01", "controller02"]
    reports = {"controller01": FRESH, "controller02": STANDALONE}
    d = decide(two, reports, [], "controller02")
    assert d.kind == BOOTSTRAP and "written without Galera" in d.reason
    d = decide(two, reports, [], "controller01")
    assert (d.kind, d.peer) == (WAIT, "controller02")


def test_standalone_data_twice_or_beside_history_waits_for_an_operator():
    reports = {"node1": STANDALONE, "node2": STANDALONE, "node3": FRESH}
    d = choose_bootstrap(M, reports)
    assert d.kind == WAIT and d.waiting_for == ("node1", "node2")
    assert "an operator must choose" in d.reason
    reports = {"node1": pos(40), "node2": STANDALONE, "node3": pos(41)}
    d = choose_bootstrap(M, reports)
    assert d.kind == WAIT and d.waiting_for == ("node2",)


def test_standalone_data_never_joins_by_sst():
    reports = {"node1": pos(40), "node2": STANDALONE, "node3": pos(41)}
    d = decide(M, reports, ["node3"], "node2")
    assert d.kind == WAIT and "replace them by SST" in d.reason
    assert promotion_score(d) is None
    assert decide(M, reports, ["node3"], "node1").kind == JOIN


def test_empty_datadirs_with_recorded_history_wait():
    # the data volumes are not mounted: every datadir looks new, the records say not
    reports = {m: FRESH for m in M}
    records = {"node1": pos(50, source="recorded"), "node2": pos(49, source="recorded"),
               "node3": None}
    d = choose_bootstrap(M, reports, last_known=records)
    assert d.kind == WAIT and "a data volume may be missing" in d.reason
    for me in M:
        assert decide(M, reports, [], me, last_known=records).kind == WAIT
    # nobody ever recorded a history: the first start of the resource forms a cluster
    assert choose_bootstrap(M, reports, last_known={m: None for m in M}).kind == BOOTSTRAP


def test_a_member_without_its_recorded_data_holds_the_rest_back():
    reports = {"node1": pos(40), "node2": FRESH, "node3": pos(41)}
    records = {"node2": pos(45, source="recorded")}
    d = choose_bootstrap(M, reports, last_known=records)
    assert d.kind == WAIT and d.waiting_for == ("node2",)
    assert f"node2 holds no data but recorded {U1}:45" in d.reason
    # a wiped member whose record is no reason to wait (it never had history)
    assert choose_bootstrap(M, reports, last_known={}).bootstrap_node == "node3"


def test_me_must_be_a_member():
    with pytest.raises(ValueError, match="node9"):
        decide(M, {}, [], "node9")


# -- grastate.dat ---------------------------------------------------------------
GOOD = f"# GALERA saved state\nversion: 2.1\nuuid:    {U1}\nseqno:   42\nsafe_to_bootstrap: 0\n"


def test_parse_grastate():
    st = gs.parse_grastate(GOOD)
    assert (st.uuid, st.seqno, st.safe_to_bootstrap) == (U1, 42, False)
    assert gs.parse_grastate(GOOD.replace("42", "-1")).seqno == -1
    # older Galera wrote no safe_to_bootstrap
    assert not gs.parse_grastate(GOOD.replace("safe_to_bootstrap: 0\n", "")).safe_to_bootstrap


@pytest.mark.parametrize("text,match", [
    ("", "no uuid"),
    (GOOD.replace("seqno:   42\n", ""), "no seqno"),
    (GOOD.replace("42", "4x2"), "not an integer"),
    (GOOD.replace("42", "-2"), "not an integer"),
    (GOOD.replace("42", "042"), "not an integer"),
    (GOOD.replace("42", "99999999999999999999"), "not an integer|out of range"),
    (GOOD.replace(U1, U1.upper()), "not a UUID"),
    (GOOD.replace(U1, "'; rm -rf /; '"), "not a UUID"),
    (GOOD + "seqno: 43\n", "given twice"),
    (GOOD.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: yes"), "not 0 or 1"),
    (GOOD + "<<<<<<< garbage\n", "not 'key: value'"),
    (GOOD.replace("42", "42\0"), "NUL"),
])
def test_malformed_grastate_is_an_error_never_a_guess(text, match):
    with pytest.raises(StateError, match=match):
        gs.parse_grastate(text)


def test_read_grastate_hostile_files(tmp_path):
    assert gs.read_grastate(str(tmp_path / "missing")) is None
    big = tmp_path / "big"
    big.write_text(GOOD + "#" * 10000)
    with pytest.raises(StateError, match="larger than"):
        gs.read_grastate(str(big))
    binary = tmp_path / "bin"
    binary.write_bytes(GOOD.encode().replace(b"42", b"4\xff2"))
    with pytest.raises(StateError, match="not ASCII"):
        gs.read_grastate(str(binary))
    link = tmp_path / "link"
    os.symlink("/etc/passwd", link)
    with pytest.raises(StateError, match="is a symlink; refusing to follow it"):
        gs.read_grastate(str(link))
    fifo = tmp_path / "dir"
    fifo.mkdir()
    with pytest.raises(StateError):
        gs.read_grastate(str(fifo))


def test_set_safe_to_bootstrap_keeps_the_rest(tmp_path):
    path = tmp_path / "grastate.dat"
    path.write_text(GOOD)
    os.chmod(path, 0o660)
    gs.set_safe_to_bootstrap(str(path))
    st = gs.read_grastate(str(path))
    assert (st.uuid, st.seqno, st.safe_to_bootstrap) == (U1, 42, True)
    assert os.stat(path).st_mode & 0o777 == 0o660
    assert [p.name for p in tmp_path.iterdir()] == ["grastate.dat"]
    path.write_text("junk")
    with pytest.raises(StateError):
        gs.set_safe_to_bootstrap(str(path))
    assert path.read_text() == "junk"


def test_restore_uuid_only_over_the_zero_uuid(tmp_path):
    path = tmp_path / "grastate.dat"
    left = f"# GALERA saved state\nversion: 2.1\nuuid:    {Z}\nseqno:   -1\nsafe_to_bootstrap: 0\n"
    path.write_text(left)
    os.chmod(path, 0o640)
    gs.restore_uuid(str(path), U1)
    st = gs.read_grastate(str(path))
    assert (st.uuid, st.seqno, st.safe_to_bootstrap) == (U1, -1, False)
    assert path.read_text() == left.replace(Z, U1)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["grastate.dat"]
    # a real UUID is a history: never replaced, whatever is offered
    with pytest.raises(StateError, match=f"holds {U1}:-1, not the zero UUID"):
        gs.restore_uuid(str(path), "3fd83218-e91a-11f1-9c34-4743e91b2bee")
    path.write_text(left.replace("seqno:   -1", "seqno:   7"))
    with pytest.raises(StateError, match="not the zero UUID"):
        gs.restore_uuid(str(path), U1)
    path.write_text(left)
    with pytest.raises(StateError, match="recovered UUID"):
        gs.restore_uuid(str(path), "../../etc/passwd")
    assert path.read_text() == left


def test_write_grastate_never_over_a_file(tmp_path):
    path = tmp_path / "grastate.dat"
    gs.write_grastate(str(path), pos(9), os.getuid(), os.getgid(), safe_to_bootstrap=False)
    st = gs.read_grastate(str(path))
    assert (st.uuid, st.seqno, st.safe_to_bootstrap) == (U1, -1, False)
    with pytest.raises(FileExistsError):
        gs.write_grastate(str(path), pos(9, uuid=Z), os.getuid(), os.getgid(),
                          safe_to_bootstrap=True)
    assert gs.read_grastate(str(path)).uuid == U1
    assert [p.name for p in tmp_path.iterdir()] == ["grastate.dat"]


# -- --wsrep-recover output ---------------------------------------------------------
LOG = ("2026-11-25 21:50:21 0 [Note] InnoDB: log sequence number 63680\n"
       f"2026-11-25 21:50:21 0 [Note] WSREP: Recovered position: {U1}:19\n")


def test_parse_recover_log():
    assert gs.parse_recover_log(LOG) == Position(U1, 19, "recovered")
    assert gs.parse_recover_log(LOG.replace(f"{U1}:19", f"{Z}:-1")).empty


@pytest.mark.parametrize("text,match", [
    ("2026 [ERROR] InnoDB: corrupt page\n", "no 'Recovered position'.*corrupt page"),
    (LOG + LOG.replace(":19", ":20"), "different recovered positions"),
    (LOG.replace(":19", ":x9"), "not an integer"),
    (LOG.replace(f"{U1}:19", "nonsense"), "not UUID:SEQNO"),
])
def test_malformed_recover_log_is_an_error(text, match):
    with pytest.raises(StateError, match=match):
        gs.parse_recover_log(text)


def test_report_attribute_round_trip():
    p = Position(U1, 7, "grastate")
    assert gs.parse_report(gs.format_report(p)) == p
    for bad in ("", f"{U1}:7", f"{U1}:7:guessed", "x:7:grastate"):
        with pytest.raises(StateError):
            gs.parse_report(bad)


# -- where a stopped node stands, from its files (no server needed on these paths) ------
def _mysqld(datadir):
    from pacestack.agents.galera_mysqld import Mysqld

    return Mysqld(binary="/usr/sbin/mariadbd", config="/dev/null", datadir=str(datadir),
                  socket=str(datadir / "s.sock"), pid_file=str(datadir / "p.pid"),
                  log=str(datadir / "e.log"), user="mysql", group="mysql",
                  cluster_address="gcomm://a,b,c")


def test_position_from_files(tmp_path):
    m = _mysqld(tmp_path)
    assert m.position() == Position(Z, -1, "empty")  # nothing there: nothing to lose
    (tmp_path / "grastate.dat").write_text("garbage")
    assert m.position().empty  # no database files: grastate.dat cannot matter
    (tmp_path / "ibdata1").write_bytes(b"x")
    with pytest.raises(StateError):
        m.position()  # data present, state unreadable: fail, never guess
    (tmp_path / "grastate.dat").write_text(GOOD)
    assert m.position() == Position(U1, 42, "grastate")
    (tmp_path / "grastate.dat").write_text("")
    with pytest.raises(StateError, match="is empty but no state transfer"):
        m.position()  # emptied, and nothing says by a transfer: a lost file, unknown
    (tmp_path / "pacestack-joining").write_text("joining node1\n")
    assert m.position().empty  # the agent started it to join: the failed SST's leftover
    (tmp_path / "pacestack-joining").unlink()
    (tmp_path / "wsrep_sst.pid").write_text("123")
    assert m.position().empty  # emptied for a transfer that never finished
    (tmp_path / "grastate.dat").write_text(GOOD)
    assert m.position().seqno == 42  # a donor's pid file alone changes nothing
    (tmp_path / "sst_in_progress").touch()
    assert m.position().empty  # the joiner's own marker of a half-done copy


def test_topology_from_parameters():
    from pacestack.agents.galera import topology

    t = topology("gcomm://10.0.0.11,10.0.0.12,10.0.0.13",
                 "controller01:10.0.0.11;controller02:10.0.0.12", "controller01")
    assert t.members == ("controller01", "controller02")
    assert t.arbitrators == ("10.0.0.13",)
    t = topology("gcomm://node1,node2", "", "node2")
    assert t.members == ("node1", "node2") and t.arbitrators == ()
    for args, words in [
        (("10.0.0.1", "", "a"), "gcomm://"),
        (("gcomm://a,a", "", "a"), "twice"),
        (("gcomm://a,b", "", "c"), "not in cluster_host_map"),
        (("gcomm://a,b", "x:a;x:b", "x"), "twice"),
        (("gcomm://a,b", "x:a;y:z", "x"), "not in wsrep_cluster_address"),
    ]:
        with pytest.raises(ValueError, match=words):
            topology(*args)
