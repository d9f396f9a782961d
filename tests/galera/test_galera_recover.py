"""`pacestack galera status|recover` on the lab: real Pacemaker in namespaces, real
Galera under ocf:pacestack:galera, garbd on the arbitrator, fence_dummy fencing.

One lab for the module (~40 s to build), one story, in order:
rows committed on both controllers; controller01's database is stopped for
maintenance (a ban; its cluster stack stays up, so its CIB keeps receiving what
controller02 records); controller02 (with garbd, still Primary) commits 7 more
and records its seqno; then a power cut takes both controllers and controller02's
datadir is lost, its stack not started. controller01 boots alone (the operator
unblocks quorum: two_node waits for all nodes; and ends the maintenance), and
the agent waits for controller02 forever. Then: status shows the waiting and the
gap; refusals (a node that did not report, no such node, a loss not accepted,
different UUIDs, also in the agent itself) and a recover without confirmation
change nothing; recover with it brings controller01 to Promoted and Synced; a
second recover is refused (a Primary runs); controller02 comes back with an
empty datadir and rejoins by SST; every row committed on controller01 is there
on both nodes, the rows of the gap are gone.

Budget: ~2 min (lab 40 s, crash/boot 15 s, recover 5 s, rejoin 15 s); 114 s here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pacestack.cluster.lab import crm, stack

from pacestack import proc
from pacestack.errors import RuntimeFailure

pytestmark = pytest.mark.slow

PACESTACK = str(Path(sys.executable).with_name("pacestack"))
C1, C2 = "controller01", "controller02"
BEFORE = list(range(1, 21))        # committed with both controllers up
GAP_ROWS = list(range(101, 108))   # committed on controller02 alone: the gap


@pytest.fixture(scope="module")
def lab(ocf_provider):
    registry = stack.private_registry("galera")
    built = stack.up(stack.UpOptions(services=False, registry=registry))
    try:
        yield built
    finally:
        stack.remove_registry(registry)


def cli(lab, *args: str, node: str = C1, input: str | None = None):
    return lab.cluster.node(node).run([PACESTACK, "galera", *args], check=False,
                                      input=input, timeout=400)


def attr(lab, name: str, node: str, lifetime: str = "reboot", on: str = C1) -> str | None:
    res = lab.cluster.node(on).run(["crm_attribute", "--name", name, "--node", node,
                                    "--lifetime", lifetime, "--query", "--quiet"],
                                   check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def status(lab, node: str = C1) -> dict:
    res = cli(lab, "status", "--format", "json", node=node)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def insert(lab, node: str, ids: list[int], timeout: float = 30) -> None:
    """One autocommit INSERT per row: one Galera transaction (seqno) each. Right after a
    view change (garbd resyncing) a write may be refused: a refused INSERT commits
    nothing, so the rows still missing are tried again."""
    deadline = time.monotonic() + timeout
    while True:
        missing = sorted(set(ids) - set(rows(lab, node)))
        if not missing:
            return
        try:
            lab.sql("".join(f"INSERT INTO recovertest.t VALUES ({int(i)});\n"  # noqa: S608
                            for i in missing), node=node)
        except RuntimeFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def rows(lab, node: str) -> list[int]:
    return [int(x) for x in lab.sql("SELECT id FROM recovertest.t ORDER BY id;",
                                    node=node).split()]


def wsrep(lab, node: str) -> dict[str, str]:
    out = lab.sql("SHOW GLOBAL STATUS LIKE 'wsrep_%';", node=node)
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def settings_snapshot(lab) -> dict:
    """Every node attribute (both lifetimes) and where galera runs."""
    st = status(lab)
    return {"members": [{k: m[k] for k in ("node", "role", "reported", "recorded",
                                           "primary_flag", "score", "override")}
                        for m in st["members"]],
            "mariadbd": lab.cluster.node(C1).running("mariadbd")}


@pytest.fixture(scope="module")
def waiting(lab, lab_timings):
    """The story up to the agent waiting for controller02 (see the module doc)."""
    c1, c2 = lab.cluster.node(C1), lab.cluster.node(C2)
    lab.sql("CREATE DATABASE recovertest;\nCREATE TABLE recovertest.t (id INT PRIMARY KEY);\n")
    insert(lab, C1, BEFORE)
    # garbd must have finished joining (its state transfer) before controller01 leaves,
    # or controller02 alone is a minority and stops taking writes
    garbd_log = lab.cluster.arbitrator.root.host_path("/var/log/garbd.log")

    def garbd_synced() -> bool:
        text = garbd_log.read_text(errors="replace") if garbd_log.exists() else ""
        return "Shifting JOINED -> SYNCED" in text and \
            wsrep(lab, C1).get("wsrep_cluster_size") == "3"
    assert proc.wait_for(garbd_synced, 60)
    # controller01's database is stopped (maintenance: a ban), its cluster stack stays
    # up, so its CIB keeps receiving what controller02 records
    c1.run(["pcs", "resource", "ban", "galera-clone", C1])
    assert proc.wait_for(lambda: C1 not in {n for n, _ in (crm.placement(c1) or {})
                                            .get("galera", [(C1, "")])}, 120)

    def primary_without_c1() -> bool:
        w = wsrep(lab, C2)
        return (w.get("wsrep_cluster_size"), w.get("wsrep_cluster_status"),
                w.get("wsrep_ready")) == ("2", "Primary", "ON")
    assert proc.wait_for(primary_without_c1, 30)
    insert(lab, C2, GAP_ROWS)
    top = int(wsrep(lab, C2)["wsrep_last_committed"])

    def recorded() -> bool:
        value = attr(lab, "galera-last-committed", C2, "forever", on=C1)
        return bool(value) and int(value.split(":")[1]) == top
    # the only data member left holds the newest commits: its Promoted monitor records
    # them (ALONE_RECORD_INTERVAL after its last record), and controller01's CIB has it
    assert proc.wait_for(recorded, 40), attr(lab, "galera-last-committed", C2, "forever")
    # the power cut: both controllers at once; controller02's disk is lost
    lab.crash(C2)
    lab.crash(C1)
    datadir = c2.root.var_lib_mysql
    shutil.rmtree(datadir)
    datadir.mkdir()
    shutil.chown(datadir, "mysql", "mysql")

    t0 = time.monotonic()
    lab.restart(C1)
    # two_node implies wait_for_all: a lone node after a full crash is not quorate
    # until the operator says the other one is gone (it confirms it fenced)
    c1.run(["pcs", "quorum", "unblock", "--force"], timeout=60)
    c1.run(["pcs", "resource", "clear", "galera-clone"])  # maintenance over
    assert proc.wait_for(lambda: (crm.placement(c1) or {}).get("galera") == [(C1, "Unpromoted")]
                         and attr(lab, "galera-position", C1), 60), crm.placement(c1)
    lab_timings("galera recover: boot alone -> agent waiting", time.monotonic() - t0)
    return {"top": top}


@pytest.fixture(scope="module")
def survivor_seqno(lab, waiting) -> int:
    return int(attr(lab, "galera-position", C1).split(":")[1])


def test_status_shows_the_waiting_and_the_gap(lab, waiting, survivor_seqno, lab_timings):
    took = []
    for _ in range(3):
        t0 = time.monotonic()
        st = status(lab)
        took.append(time.monotonic() - t0)
    lab_timings("galera status (CLI, in controller01)", min(took))
    members = {m["node"]: m for m in st["members"]}
    assert st["decision"]["kind"] == "wait" and st["decision"]["waiting_for"] == [C2]
    assert "waiting for controller02 to report a position" in members[C1]["waiting"]
    assert members[C1]["role"] == "Unpromoted" and members[C1]["running"] is False
    assert members[C1]["local"]["mariadbd_pid"] is None
    assert members[C1]["position"]["seqno"] == survivor_seqno
    assert members[C1]["position"]["source"] == "grastate"  # it was stopped cleanly
    assert members[C2]["pacemaker"] == "offline" and members[C2]["reported"] is None
    # the gap counts seqnos: the 7 transactions and the view change when controller01 left
    assert members[C2]["recorded"]["seqno"] == waiting["top"]
    assert waiting["top"] - survivor_seqno >= len(GAP_ROWS)
    assert members[C2]["recorded"]["uuid"] == members[C1]["position"]["uuid"]
    text = cli(lab, "status").stdout
    assert "waiting for controller02 to report" in text and "galera recover" in text

    shown = cli(lab, "recover", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    plan = json.loads(shown.stdout)
    assert plan["ok"] and plan["candidate"] == C1
    assert plan["gap"] == waiting["top"] - survivor_seqno
    assert plan["highest_missing_seqno"] == waiting["top"]
    text = cli(lab, "recover").stdout
    assert f"gap:                 {plan['gap']} committed transactions" in text
    assert f"--bootstrap-from controller01 --accept-loss {plan['gap']}" in text


def test_refusals_and_no_confirmation_change_nothing(lab, waiting, survivor_seqno):
    before = settings_snapshot(lab)
    gap = str(waiting["top"] - survivor_seqno)
    cases = [
        (("--bootstrap-from", C2, "--accept-loss", "100"), 2, "controller02 has not reported"),
        (("--bootstrap-from", "controller09"), 2, "'controller09' is not a member"),
        (("--bootstrap-from", C1, "--accept-loss", "3"), 2,
         f"--accept-loss 3 does not cover the gap of {gap}"),
        (("--bootstrap-from", C1), 2, "needs confirmation"),   # no terminal, no flag
    ]
    for args, rc, words in cases:
        res = cli(lab, "recover", *args)
        assert res.returncode == rc, (args, res.stdout, res.stderr)
        assert words in res.stderr, (args, res.stderr)
        assert res.stderr.strip().splitlines()[-1].startswith("pacestack: error: ")
    # on a terminal: the operator types something else than the gap
    res = lab.cluster.node(C1).run(
        ["script", "-qec", f"{PACESTACK} galera recover --bootstrap-from {C1}", "/dev/null"],
        input="yes\n", check=False, timeout=120)
    assert res.returncode == 1, res.stdout
    assert f"Type {gap} to confirm" in res.stdout and "not confirmed: nothing changed" in res.stdout

    # different histories: controller02's record says another cluster UUID
    c1 = lab.cluster.node(C1)
    real = attr(lab, "galera-last-committed", C2, "forever")
    foreign = "11111111-2222-3333-4444-555555555555" + real[36:]
    c1.run(["crm_attribute", "--name", "galera-last-committed", "--node", C2,
            "--lifetime", "forever", "--update", foreign])
    try:
        res = cli(lab, "recover", "--bootstrap-from", C1, "--accept-loss", "100")
        assert res.returncode == 2 and "not the same history" in res.stderr, res.stderr
        # the agent refuses such an override too (written past the CLI): it clears it
        # and stays Unpromoted
        pos = attr(lab, "galera-position", C1).rsplit(":", 1)[0]
        uuid, seqno = pos.rsplit(":", 1)
        value = (f"node={C1};uuid={uuid};seqno={seqno};missing={C2};gap=7;by=test@lab;"
                 f"at={int(time.time())}")
        c1.run(["crm_attribute", "--name", "galera-bootstrap-override", "--node", C1,
                "--lifetime", "reboot", "--update", value])
        c1.run(["crm_resource", "--refresh", "--resource", "galera-clone", "--node", C1])
        assert proc.wait_for(lambda: attr(lab, "galera-bootstrap-override", C1) is None, 40)
        log = (c1.root.var_log_pacemaker / "pacemaker.log").read_text(errors="replace")
        assert "override ignored and cleared" in log and "not the same history" in log
        assert crm.placement(c1).get("galera") == [(C1, "Unpromoted")]
        assert not c1.running("mariadbd")
    finally:
        c1.run(["crm_attribute", "--name", "galera-last-committed", "--node", C2,
                "--lifetime", "forever", "--update", real])
    assert settings_snapshot(lab) == before


def test_recover_brings_the_survivor_to_promoted_and_synced(lab, waiting, survivor_seqno,
                                                           lab_timings):
    gap = waiting["top"] - survivor_seqno
    t0 = time.monotonic()
    res = cli(lab, "recover", "--bootstrap-from", C1, "--accept-loss", str(gap),
              "--format", "json")
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    lab_timings("galera recover -> Promoted (CLI's own measure)", out["promoted_after_s"])
    lab_timings("galera recover CLI wall (decision + handover + wait)", wall)
    assert out["override"]["node"] == C1 and out["override"]["gap"] == gap
    assert out["override"]["by"] == "root@controller01"
    c1 = lab.cluster.node(C1)
    assert crm.placement(c1)["galera"] == [(C1, "Promoted")]
    w = wsrep(lab, C1)
    assert (w["wsrep_cluster_status"], w["wsrep_local_state_comment"]) == ("Primary", "Synced")
    # honoured once: the attribute is gone; the decision, who and the gap are logged
    assert attr(lab, "galera-bootstrap-override", C1) is None
    log = (c1.root.var_log_pacemaker / "pacemaker.log").read_text(errors="replace")
    assert "operator override honoured: root@controller01" in log
    assert f"seqno gap {gap}" in log
    # the bootstrap kept the history (same UUID, the recovered seqno onwards)
    assert w["wsrep_cluster_state_uuid"] == waiting_uuid(lab)
    assert rows(lab, C1) == BEFORE  # every row committed on controller01; the gap is gone


def waiting_uuid(lab) -> str:
    return status(lab)["members"][0]["position"]["uuid"]


def test_recover_refused_while_a_primary_runs(lab, waiting):
    res = cli(lab, "recover", "--bootstrap-from", C1, "--accept-loss", "100")
    assert res.returncode == 2
    assert "a Primary component is running on controller01" in res.stderr


def test_the_destroyed_node_rejoins_by_sst_and_nothing_committed_is_lost(lab, waiting,
                                                                        lab_timings):
    t0 = time.monotonic()
    lab.restart(C2)
    stack.wait_resources(lab, stack.galera_promoted_everywhere(lab), "Galera Promoted on both",
                         120)
    lab_timings("galera recover: empty controller02 back -> Promoted (SST)",
                time.monotonic() - t0)
    log = (lab.cluster.node(C2).root.var_log_mysql / "error.log").read_text(errors="replace")
    assert "rsync SST completed on joiner" in log
    assert rows(lab, C2) == BEFORE and rows(lab, C1) == BEFORE
    st = status(lab, node=C2)
    members = {m["node"]: m for m in st["members"]}
    assert st["decision"]["kind"] == "running"
    assert all(m["role"] == "Promoted" for m in members.values())
    assert members[C2]["state"] == "Synced" and members[C2]["cluster_status"] == "Primary"
    # the arbitrator as the members see it: in the component exactly when it counts
    # (garbd, left alone by the crash, rejoins the new Primary on its own, or not yet)
    size = int(members[C2]["local"]["wsrep"]["wsrep_cluster_size"])
    assert st["arbitrators"][0]["in_component"] is (size == 3), size
    # from the host: --lab runs the same command inside a lab node
    env = {**os.environ, "PACESTACK_LAB_REGISTRY": str(lab.cluster.registry)}
    res = subprocess.run([PACESTACK, "galera", "status", "--lab", C2, "--format", "json"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    hosted = json.loads(res.stdout)
    assert hosted["local_node"] == C2 and hosted["decision"]["kind"] == "running"
    bad = subprocess.run([PACESTACK, "galera", "status", "--lab", "controller09"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert bad.returncode == 2 and "--lab controller09: no lab node" in bad.stderr
