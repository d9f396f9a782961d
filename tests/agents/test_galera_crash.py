"""The crash matrix: a real 3-node Galera on loopback, recovered by the installed
``ocf:pacestack:galera`` agent called exactly as Pacemaker calls it (environment,
clone/notify meta, node attributes in a CIB file via CIB_file).

Every scenario asserts: the node that bootstrapped is the most advanced one,
every row committed before the crash is on every node afterwards, joiners came
back by IST where their history allows, and where bootstrapping could lose data
the agent waits and says whom for. One cluster is reused across scenarios (each
leaves it Promoted and Synced everywhere; a broken one is rebuilt).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import uuid as uuidlib
from pathlib import Path

import pytest
from pacestack.agents.galera_state import ZERO_UUID

from pacestack import proc
from tests.fixtures.galera import AgentDriver, GaleraCluster
from tests.fixtures.ocf import exit_reason

pytestmark = pytest.mark.slow

NAMES = ["node1", "node2", "node3"]


class Scenario:
    def __init__(self, driver: AgentDriver, table: str):
        self.driver = driver
        self.cluster = driver.cluster
        self.table = table
        self.committed: list[int] = []
        self.next_id = 1

    def write(self, node: str, count: int = 3) -> None:
        self.committed += self.cluster.write_rows(node, self.table, self.next_id, count)
        self.next_id += count

    def seqno(self, node: str) -> int:
        return self.cluster[node].last_committed().seqno

    def assert_all_rows_everywhere(self) -> None:
        for n in NAMES:
            try:
                got = self.cluster.rows(n, self.table)
            except Exception as err:
                raise AssertionError(f"{n} ({self.cluster[n].ist_or_sst() or 'no transfer'}"
                                     f"): {err}; calls {self.driver.calls}") from err
            missing = sorted(set(self.committed) - set(got))
            assert not missing, f"{n} lost committed rows {missing[:10]}"

    def assert_healthy(self) -> None:
        for n in NAMES:
            rc, reason = self.driver.monitor(n)
            assert rc == 8, f"{n} monitor rc {rc}: {reason}"
            st = self.cluster[n].status()
            assert st["wsrep_cluster_size"] == "3"


def _form() -> tuple[GaleraCluster, AgentDriver]:
    cluster = GaleraCluster(3)
    try:
        driver = AgentDriver(cluster, cluster.base_dir / "cib.xml")
        order = driver.recover()
        assert order[0] == "node1" and driver.bootstrapped("node1"), driver.calls
    except BaseException:
        cluster.destroy()  # a pool that failed to form leaves no mariadbd behind
        raise
    return cluster, driver


@pytest.fixture(scope="module")
def galera_pool(agent_executables):
    state: dict[str, object] = {}
    cluster, driver = _form()
    state["cluster"], state["driver"] = cluster, driver
    yield state
    state["cluster"].destroy()


@pytest.fixture
def scenario(galera_pool, request) -> Scenario:
    """A Promoted/Synced 3-node cluster driven by the agent, fresh table per test."""
    cluster: GaleraCluster = galera_pool["cluster"]
    healthy = all(n.running() and n.synced() for n in cluster.nodes)
    if not healthy:
        cluster.destroy()
        galera_pool["cluster"], galera_pool["driver"] = _form()
    driver: AgentDriver = galera_pool["driver"]
    driver.calls.clear()
    table = request.node.name.removeprefix("test_")[:40].lower()
    sc = Scenario(driver, table)
    sc.write("node1", 2)
    return sc


def recover_and_check(sc: Scenario, expected_bootstrap: str, ist: list[str]) -> list[str]:
    """Pacemaker brings everything back; the checks every scenario shares."""
    d = sc.driver
    d.all_crashed()
    order = d.recover()
    assert order[0] == expected_bootstrap, f"bootstrapped {order[0]}, expected " \
                                           f"{expected_bootstrap}: {d.calls}"
    assert d.bootstrapped(expected_bootstrap)
    assert sorted(order) == NAMES
    sc.assert_healthy()
    sc.assert_all_rows_everywhere()
    for n in ist:
        assert sc.cluster[n].ist_or_sst() in ("IST", ""), f"{n} took a full SST"
    return order


def test_orderly_stop_in_sequence(scenario):
    sc = scenario
    d = sc.driver
    # Pacemaker demotes and stops one after another; writes go on in between
    assert d.run("node3", "demote")[0] == 0
    assert d.run("node3", "stop")[0] == 0
    sc.write("node1")
    assert d.run("node2", "demote")[0] == 0
    assert d.run("node2", "stop")[0] == 0
    sc.write("node1")
    assert d.run("node1", "demote")[0] == 0
    assert d.run("node1", "stop")[0] == 0
    grastate = {n: sc.cluster[n].grastate() for n in NAMES}
    assert all(int(g["seqno"]) >= 0 for g in grastate.values()), grastate
    # Galera itself marks the last node to leave cleanly as safe to bootstrap
    assert [n for n in NAMES if grastate[n]["safe_to_bootstrap"] == "1"] == ["node1"]
    recover_and_check(sc, "node1", ist=["node2", "node3"])


def test_kill9_all_at_different_seqnos(scenario):
    sc = scenario
    sc.cluster.kill9(["node1"])
    sc.write("node3")
    top = sc.seqno("node3")
    # a lone survivor is non-Primary and commits nothing more: the two remaining
    # nodes end at the same seqno, ahead of node1; the tie goes to node2
    sc.cluster.kill9(["node3"])
    sc.cluster.kill9(["node2"])
    assert {n: sc.cluster[n].grastate()["seqno"] for n in NAMES} == dict.fromkeys(NAMES, "-1")
    positions = sc.cluster.positions()
    assert positions["node2"].seqno == positions["node3"].seqno >= top > positions["node1"].seqno
    recover_and_check(sc, "node2", ist=["node1", "node3"])


def test_simultaneous_kill9_with_writes_in_flight(scenario):
    sc = scenario
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        i = 10_000
        try:
            conn = sc.cluster["node2"].connect()
            with conn, conn.cursor() as cur:
                while not stop.is_set():
                    cur.execute(f"INSERT INTO crashtest.`{sc.table}` VALUES (%s, 'w')",  # noqa: S608
                                (i,))
                    acked.append(i)  # autocommit: acknowledged = committed
                    i += 1
        except Exception:  # noqa: S110 - the crash ends the writer, by design
            pass

    t = threading.Thread(target=writer)
    t.start()
    proc.wait_for(lambda: len(acked) >= 20, 30)
    sc.cluster.kill9()  # all three at once, mid-stream
    stop.set()
    t.join(30)
    assert len(acked) >= 20
    sc.committed += acked
    # "at once" is a loop of kills: whoever died last may hold one more writeset.
    # The expectation comes from Galera's own --wsrep-recover, not from the agent.
    pos = sc.cluster.positions()
    expected = min(NAMES, key=lambda n: (-pos[n].seqno, n))
    recover_and_check(sc, expected, ist=[n for n in NAMES if n != expected])


def test_mixed_clean_stop_and_kill9(scenario):
    sc = scenario
    d = sc.driver
    assert d.run("node1", "demote")[0] == 0 and d.run("node1", "stop")[0] == 0
    clean = int(sc.cluster["node1"].grastate()["seqno"])
    sc.write("node3")
    sc.cluster.kill9(["node2", "node3"])
    assert int(sc.cluster["node1"].grastate()["seqno"]) == clean >= 0
    assert sc.cluster["node2"].grastate()["seqno"] == "-1"
    # node1 has a clean, readable seqno but is behind: a killed node wins, node2 on a
    # tie; node3, which took the last write, may be ahead if node2 had not applied it
    at = {n: sc.cluster[n].recover().seqno for n in ("node2", "node3")}
    winner = "node3" if at["node3"] > at["node2"] else "node2"
    recover_and_check(sc, winner, ist=sorted({"node1", "node2", "node3"} - {winner}))


def test_grastate_missing_on_the_most_advanced(scenario):
    sc = scenario
    sc.cluster.kill9(["node2"])
    sc.write("node1")
    sc.cluster.kill9(["node1", "node3"])
    (sc.cluster["node1"].datadir / "grastate.dat").unlink()
    sc.driver.all_crashed()
    sc.driver.start()
    report = sc.driver.attr("galera-position", "node1")
    assert report.endswith(":recovered"), report  # found again by --wsrep-recover
    # node3 is level with node1; node2 is behind, and with grastate.dat gone node1's
    # gcache cannot be matched to a history, so node2 may need a full SST
    recover_and_check(sc, "node1", ist=["node3"])


def test_all_at_seqno_minus_one_recovered_everywhere(scenario):
    sc = scenario
    sc.write("node3")
    sc.cluster.wait_applied()  # the scenario is "all level", not "one a write behind"
    sc.cluster.kill9()
    assert {sc.cluster[n].grastate()["seqno"] for n in NAMES} == {"-1"}
    sc.driver.all_crashed()
    sc.driver.start()
    reports = {n: sc.driver.attr("galera-position", n) for n in NAMES}
    assert all(r.endswith(":recovered") for r in reports.values()), reports
    assert len({r.rsplit(":", 1)[0] for r in reports.values()}) == 1  # one position
    recover_and_check(sc, "node1", ist=["node2", "node3"])


def _as_left_by_an_sst_join(sc: Scenario, node: str) -> None:
    """grastate.dat as Galera leaves it on a node that joined by SST, for the moment
    before it writes the cluster UUID back: a crash then leaves InnoDB's position
    as the only record of the node's history."""
    path = sc.cluster[node].datadir / "grastate.dat"
    path.write_text("# GALERA saved state\nversion: 2.1\n"
                    f"uuid:    {ZERO_UUID}\nseqno:   -1\nsafe_to_bootstrap: 0\n")


def test_zero_uuid_grastate_resumes_by_ist(scenario):
    sc = scenario
    sc.cluster.kill9(["node3"])
    _as_left_by_an_sst_join(sc, "node3")
    sc.write("node1")
    sc.cluster.wait_applied()
    sc.cluster.kill9(["node1", "node2"])
    _as_left_by_an_sst_join(sc, "node1")
    uuid = sc.cluster["node2"].grastate()["uuid"]
    sc.driver.all_crashed()
    sc.driver.start()
    assert sc.driver.attr("galera-position", "node1").startswith(f"{uuid}:")
    # the bootstrap node keeps the cluster's history (its gcache serves IST), and
    # the joiner behind it resumes from its recovered position
    recover_and_check(sc, "node1", ist=["node2", "node3"])
    assert {sc.cluster[n].grastate()["uuid"] for n in NAMES} == {uuid}


def test_most_advanced_not_reporting_waits(scenario):
    sc = scenario
    d = sc.driver
    sc.cluster.kill9(["node1"])
    sc.write("node2")
    sc.cluster.kill9(["node2", "node3"])
    d.all_crashed()
    d.start(["node1", "node3"])
    # nobody may be promoted: node2 (tied most advanced, lower name) has not reported
    assert d.score("node1") == 0 and d.score("node3") == 0
    rc, _, err = d.run("node3", "promote", timeout_ms=3000)
    assert rc == 1
    assert "waiting for node2 to report a position" in exit_reason(err)
    assert not sc.cluster["node3"].running()
    # node2 comes back: it is the one to bootstrap
    recover_and_check(sc, "node2", ist=["node1", "node3"])


def test_node_with_another_cluster_uuid_waits_for_an_operator(scenario):
    sc = scenario
    d = sc.driver
    for n in ("node3", "node2", "node1"):
        assert d.run(n, "demote")[0] == 0 and d.run(n, "stop")[0] == 0
    path = sc.cluster["node3"].datadir / "grastate.dat"
    foreign = str(uuidlib.uuid1())
    text = path.read_text()
    old = sc.cluster["node3"].grastate()["uuid"]
    path.write_text(text.replace(old, foreign))
    d.all_crashed()
    d.start()
    assert all(d.score(n) == 0 for n in NAMES)
    rc, _, err = d.run("node1", "promote", timeout_ms=3000)
    assert rc == 1
    reason = exit_reason(err)
    assert "disagree on the cluster UUID" in reason and foreign in reason and old in reason
    # the operator decides node3's history is the wrong one: wipes it, forgets its record
    assert d.run("node3", "stop")[0] == 0
    sc.cluster["node3"].wipe()
    forget_record(d, "node3")
    order = recover_and_check(sc, "node1", ist=["node2"])
    assert order[0] == "node1"
    assert sc.cluster["node3"].ist_or_sst() == "SST"


def test_node_with_wiped_datadir_rejoins_by_sst(scenario):
    sc = scenario
    sc.cluster.kill9(["node3"])
    sc.write("node1")
    # node2 applies node1's writesets after node1 acknowledged them: killed before it
    # has, the rows were only on the disk this test wipes, which no rule can bring back
    proc.wait_for(lambda: sc.seqno("node2") >= sc.seqno("node1"), 10)
    sc.cluster.kill9(["node1", "node2"])
    sc.cluster["node1"].wipe()  # the most advanced by name tie lost its disk
    d = sc.driver
    d.all_crashed()
    # node1 recorded a history it no longer holds: an unmounted volume looks the
    # same, so it refuses to start and the others wait for it
    rc, _, err = d.run("node1", "start")
    assert rc == 5 and "is its data volume mounted" in exit_reason(err)
    d.start(["node2", "node3"])
    rc, _, err = d.run("node2", "promote", timeout_ms=3000)
    assert rc == 1 and "waiting for node1 to report" in exit_reason(err)
    assert not any(sc.cluster[n].running() for n in NAMES)
    # the operator confirms the disk is gone: node1's record goes, it rejoins by SST
    forget_record(d, "node1")
    d.start(["node1"])
    assert d.attr("galera-position", "node1").endswith(":empty")
    recover_and_check(sc, "node2", ist=["node3"])
    assert sc.cluster["node1"].ist_or_sst() == "SST"


def forget_record(d: AgentDriver, node: str) -> None:
    """What an operator runs to say a node's recorded history is gone for good."""
    subprocess.run(["crm_attribute", "--node", node, "--name", "galera-last-committed",
                    "--lifetime", "forever", "--delete"], check=True, capture_output=True,
                   env={**os.environ, "CIB_file": str(d.cib)})


def unmount(node) -> Path:
    """The data volume is not mounted: the datadir is an empty directory again."""
    aside = node.datadir.with_name("data.volume")
    node.datadir.rename(aside)
    node.datadir.mkdir()
    shutil.chown(node.datadir, "mysql", "mysql")
    return aside


def mount(node, aside: Path) -> None:
    node.datadir.rmdir()
    aside.rename(node.datadir)


def test_unmounted_data_volumes_never_form_a_new_cluster(scenario):
    sc = scenario
    d = sc.driver
    sc.write("node2", 5)
    sc.cluster.kill9()
    volumes = {n: unmount(sc.cluster[n]) for n in NAMES}
    d.all_crashed()
    for n in NAMES:
        rc, _, err = d.run(n, "start")
        assert rc == 5, f"{n} started on an empty datadir: {err[-400:]}"
        assert "recorded Galera history" in exit_reason(err)
    assert not any(sc.cluster[n].running() for n in NAMES)
    assert all(not any(sc.cluster[n].datadir.iterdir()) for n in NAMES)
    for n in NAMES:
        mount(sc.cluster[n], volumes[n])
    pos = sc.cluster.positions()
    expected = min(NAMES, key=lambda n: (-pos[n].seqno, n))
    recover_and_check(sc, expected, ist=[n for n in NAMES if n != expected])


def test_member_with_unknown_seqno_holds_the_bootstrap_back(scenario):
    sc = scenario
    d = sc.driver
    sc.cluster.kill9(["node3"])
    sc.write("node1")
    sc.cluster.kill9(["node1", "node2"])
    d.all_crashed()
    d.start()
    uuid = sc.cluster["node1"].recover().uuid
    # node3's recovery gave its cluster but no seqno (what the agent publishes then)
    d.set_attr("galera-position", "node3", f"{uuid}:-1:recovered")
    d.refresh_scores()
    assert all(d.score(n) == 0 for n in NAMES)
    rc, _, err = d.run("node1", "promote", timeout_ms=3000)
    assert rc == 1
    reason = exit_reason(err)
    assert "node3 reports no known seqno" in reason and "galera recover" in reason
    assert not any(sc.cluster[n].running() for n in NAMES)
    # node3 reports its real position again: the rule can rank everyone
    assert d.run("node3", "stop")[0] == 0
    recover_and_check(sc, "node1", ist=["node2", "node3"])


def test_grastate_history_without_innodb_history_fails_the_node(scenario):
    sc = scenario
    d = sc.driver
    sc.write("node1")
    sc.cluster.kill9()
    node3 = sc.cluster["node3"]
    grastate = (node3.datadir / "grastate.dat").read_text()
    assert "seqno:   -1" in grastate
    # an operator restored a non-Galera copy of the data under node3's Galera state
    aside = unmount(node3)
    standalone_rows(node3, 4)
    (node3.datadir / "grastate.dat").write_text(grastate)
    shutil.chown(node3.datadir / "grastate.dat", "mysql", "mysql")
    d.all_crashed()
    rc, _, err = d.run("node3", "start")
    assert rc == 1
    assert "says cluster" in exit_reason(err) and f"InnoDB recovered {ZERO_UUID}" in \
        exit_reason(err)
    # nothing of node3's was touched, and nobody bootstraps without it
    assert (node3.datadir / "grastate.dat").read_text() == grastate
    assert (node3.datadir / "cloud" / "instances.ibd").exists()
    d.start(["node1", "node2"])
    rc, _, err = d.run("node1", "promote", timeout_ms=3000)
    assert rc == 1 and "waiting for node3 to report" in exit_reason(err)
    shutil.rmtree(node3.datadir)
    node3.datadir.mkdir()
    mount(node3, aside)
    pos = sc.cluster.positions()
    expected = min(NAMES, key=lambda n: (-pos[n].seqno, n))
    recover_and_check(sc, expected, ist=[n for n in NAMES if n != expected])


def fresh_install(node) -> None:
    """What mariadb-install-db leaves in an empty datadir (the template harness copy)."""
    if node.datadir.exists() and not any(node.datadir.iterdir()):
        node.datadir.rmdir()
    node.prepare_datadir()


def standalone_rows(node, count: int) -> None:
    """MariaDB without Galera (wsrep off) on node's datadir: a one-controller cloud's
    database before it became a Galera member."""
    fresh_install(node)
    node.start(extra_args=["--wsrep-provider=none", "--wsrep-on=OFF"])
    try:
        node.execute("CREATE DATABASE IF NOT EXISTS cloud")
        node.execute("CREATE TABLE IF NOT EXISTS cloud.instances (id INT PRIMARY KEY)")
        node.execute("INSERT INTO instances SELECT seq FROM seq_1_to_%s", (count,), "cloud")
    finally:
        node.stop()


def test_the_standalone_database_is_what_the_cluster_forms_from(galera_pool):
    """controller02 held the cloud without Galera, controller01 and 03 are fresh
    installs: the cluster must form from controller02 and keep every row."""
    cluster: GaleraCluster = galera_pool["cluster"]
    d: AgentDriver = galera_pool["driver"]
    for n in reversed(NAMES):
        d.run(n, "demote")
        assert d.run(n, "stop")[0] == 0
    for n in NAMES:
        cluster[n].wipe()
        fresh_install(cluster[n])
    standalone_rows(cluster["node2"], 200)
    # a resource that never ran: a CIB of its own, no records
    fresh = AgentDriver(cluster, cluster.base_dir / "cib-standalone.xml")
    galera_pool["driver"] = fresh
    fresh.start()
    assert fresh.attr("galera-position", "node2").endswith(":standalone")
    assert fresh.attr("galera-position", "node1").endswith(":empty")
    order = fresh.recover(start=False)
    assert order[0] == "node2" and fresh.bootstrapped("node2"), fresh.calls
    for n in NAMES:
        got = cluster[n].execute("SELECT COUNT(*) FROM cloud.instances")[0][0]
        assert got == 200, f"{n} has {got} of 200 rows"
    cluster["node1"].execute("CREATE DATABASE IF NOT EXISTS crashtest")


def _kill_rsync_daemon(pid_file: Path, timeout: float = 60) -> None:
    """SIGKILL the joiner's rsync daemon once it wrote its pid file (ours: started by
    the SST script of the mariadbd this test started)."""
    pid: int | None = None

    def written() -> bool:
        nonlocal pid
        pid = proc.read_pidfile(str(pid_file))
        return pid is not None
    assert proc.wait_for(written, timeout), f"no {pid_file}"
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    assert comm == "rsync", f"{pid_file} names {comm}, not the rsync daemon"
    os.kill(pid, signal.SIGKILL)


def test_a_failed_sst_join_is_placed_as_empty_and_taken_again(scenario):
    """The copy fails (the joiner's rsync daemon dies): wsrep_sst_rsync removes both
    of its markers as it exits, Galera has emptied grastate.dat and mariadbd aborts.
    Pacemaker's recovery must find a node with nothing of its own (it was joining),
    not a malformed grastate.dat, and the next promote joins by SST."""
    sc = scenario
    d = sc.driver
    node = sc.cluster["node3"]
    assert d.run("node3", "demote")[0] == 0 and d.run("node3", "stop")[0] == 0
    node.wipe()
    fresh_install(node)  # a replaced node: system tables, no history, a full SST ahead
    sc.write("node1")
    assert d.run("node3", "start")[0] == 0
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(rc=d.run("node3", "promote")[0]))
    t.start()
    _kill_rsync_daemon(node.datadir / "rsync_sst.pid")
    t.join(120)
    assert result.get("rc") == 1, "the SST did not fail"
    assert not node.running()
    assert (node.datadir / "grastate.dat").stat().st_size == 0
    # the script outlives mariadbd by its cleanup; it ends by removing its pid file
    assert proc.wait_for(lambda: not (node.datadir / "wsrep_sst.pid").exists(), 30)
    assert not (node.datadir / "sst_in_progress").exists(), "the script left its marker"
    # Pacemaker recovers the failed promote: demote, stop, start, promote
    for action in ("demote", "stop", "start"):
        rc, _, err = d.run("node3", action)
        assert rc == 0, f"{action}: {exit_reason(err)}"
    assert d.attr("galera-position", "node3").endswith(":empty")
    rc, _, err = d.run("node3", "promote")
    assert rc == 0, exit_reason(err)
    assert node.ist_or_sst() == "SST"
    assert not (node.datadir / "pacestack-joining").exists()
    sc.assert_healthy()
    sc.assert_all_rows_everywhere()


def test_crash_during_sst(scenario):
    sc = scenario
    d = sc.driver
    assert d.run("node3", "demote")[0] == 0 and d.run("node3", "stop")[0] == 0
    sc.cluster["node3"].wipe()
    sc.write("node1")
    assert d.run("node3", "start")[0] == 0
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(rc=d.run("node3", "promote")[0]))
    t.start()
    log = sc.cluster["node3"].log_error

    def sst_running() -> bool:
        try:
            return "rsync SST started on joiner" in open(log).read()
        except FileNotFoundError:
            return False
    assert proc.wait_for(sst_running, 60)
    sc.cluster.kill9()  # power cut while node3 receives its copy
    t.join(120)
    assert result.get("rc") == 1
    d.all_crashed()
    d.start()
    # node3's half-copied datadir is no history at all: never a bootstrap candidate
    finished = "SST completed on joiner" in open(log).read()
    if not finished:
        assert d.attr("galera-position", "node3").endswith(":empty")
    recover_and_check(sc, "node1", ist=["node2"])
