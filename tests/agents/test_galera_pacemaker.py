"""ocf:pacestack:galera under a real Pacemaker: a promotable clone in the 2-node
cluster in namespaces (galera_lab: Corosync/Pacemaker, Galera on the lab
addresses, garbd in the arbitrator namespace, configured by `pacestack cluster
apply`). Fencing is off in this lab: a crashed node is simply gone to its peer.

- both controllers Promoted;
- mariadbd alone killed -9 on controller01 (the node keeps running): Pacemaker
  restarts it, and the join waits, in the same boot, until controller02 published
  that the killed incarnation left its view;
- controller01 power-cut: controller02 stays Primary (with garbd) without a
  restart, and takes writes; controller01 boots again (a new boot_id) and rejoins
  by IST: its crashed incarnation died before this boot, at least the boot's
  uptime ago, which counts against Galera's inactive timeout;
- both power-cut, controller02 the more advanced: Pacemaker brings Galera back
  from controller02 (the agent says so and its mariadbd was the one started
  with --wsrep-new-cluster), every row committed before the crash is on both.

Time budget: ~2.5 min (lab ~25 s, single crash + rejoin ~40 s, full crash ~60 s).
"""

from __future__ import annotations

import signal
import time

import pytest

from pacestack import proc
from tests.fixtures.galera_lab import (
    agent_lines,
    log_size,
    mariadbd_cmdline,
    mysql_error_log,
    pacemaker_log,
    primary_of_size,
    promoted,
    read_from,
    rows,
    transfer,
    wait_promoted,
    write_rows,
    wsrep,
)

pytestmark = pytest.mark.slow

BOTH = {"controller01", "controller02"}
TABLE = "pacemaker_rows"


def healthy_with_garbd(lab) -> None:
    """Both Promoted, and one Primary component of the two nodes and garbd (lab up
    starts garbd after the promotes; it joins within a second or two). A node an
    earlier test left crashed is booted first, so one failure does not cascade."""
    for node in sorted(BOTH):
        if not lab.cluster.node(node).booted:
            lab.cluster.restart(node, timeout=60)
    wait_promoted(lab, BOTH)
    for node in sorted(BOTH):
        assert proc.wait_for(lambda n=node: primary_of_size(lab, n, 3), 30, interval=0.2), \
            wsrep(lab, node)


def test_both_promoted_with_garbd(galera_lab):
    lab = galera_lab
    assert promoted(lab) == BOTH
    healthy_with_garbd(lab)
    for node in BOTH:
        st = wsrep(lab, node)
        # two data nodes + garbd in one Primary component
        assert st.get("wsrep_cluster_status") == "Primary", st
        assert st.get("wsrep_cluster_size") == "3", st
        assert st.get("wsrep_local_state_comment") == "Synced", st
        addr = lab.cluster.node(node).address
        assert st.get("wsrep_incoming_addresses", "").count(":3306") == 2
        assert addr in st.get("wsrep_incoming_addresses", ""), st


def test_mariadbd_killed_alone_rejoins_once_the_peer_saw_it_leave(galera_lab):
    lab = galera_lab
    healthy_with_garbd(lab)
    old = mariadbd_cmdline_pid(lab, "controller01")
    survivor_pid = mariadbd_cmdline_pid(lab, "controller02")
    c1_log = pacemaker_log(lab, "controller01")
    said_from = log_size(c1_log)
    t0 = time.monotonic()
    proc.signal_pid(old, signal.SIGKILL)
    assert proc.wait_for(lambda: mariadbd_cmdline_pid(lab, "controller01") not in (None, old)
                         and primary_of_size(lab, "controller01", 3)
                         and promoted(lab) == BOTH, 60, interval=0.1), wsrep(lab, "controller01")
    print(f"mariadbd killed -9: Synced and Promoted again {time.monotonic() - t0:.1f}s later")
    said = agent_lines(read_from(c1_log, said_from))
    print("\n".join(said))
    # the same boot: only the peers' word (or inactive_timeout) ends the eviction wait
    assert not [ln for ln in said if "died before this boot" in ln], said
    assert any("controller02 saw the previous incarnation" in ln
               or ("not waiting" in ln and "seen dead" in ln) for ln in said), said
    assert mariadbd_cmdline_pid(lab, "controller02") == survivor_pid


def test_survivor_stays_primary_and_crashed_node_rejoins_by_ist(galera_lab):
    lab = galera_lab
    healthy_with_garbd(lab)
    committed = write_rows(lab, "controller01", TABLE, 1, 20)
    survivor_pid = mariadbd_cmdline_pid(lab, "controller02")

    t0 = time.monotonic()
    lab.crash("controller01")
    # controller02 + garbd keep the Primary component: no restart, no demote
    assert proc.wait_for(lambda: primary_of_size(lab, "controller02", 2), 30, interval=0.2), \
        wsrep(lab, "controller02")
    seen_primary = time.monotonic() - t0
    committed += write_rows(lab, "controller02", TABLE, 21, 20)
    assert mariadbd_cmdline_pid(lab, "controller02") == survivor_pid
    # Pacemaker learns of the crash from corosync, maybe after Galera did
    assert proc.wait_for(lambda: promoted(lab) == {"controller02"}, 30, interval=0.5), \
        promoted(lab)
    print(f"survivor Primary (size 2) {seen_primary:.1f}s after the crash; writes served")

    c1_error_log = mysql_error_log(lab, "controller01")
    offset = log_size(c1_error_log)
    c1_log = pacemaker_log(lab, "controller01")
    said_from = log_size(c1_log)
    t0 = time.monotonic()
    lab.cluster.restart("controller01", timeout=60)
    took = wait_promoted(lab, BOTH)
    print(f"controller01 booted and Promoted again {time.monotonic() - t0:.1f}s after "
          f"restart ({took:.1f}s of it waiting for the promote)")
    said = agent_lines(read_from(c1_log, said_from))
    print("\n".join(said))  # the agent's account (-s)
    # the crashed incarnation ran in the previous boot: it died at least this boot's
    # uptime ago, and only what remains of evs.inactive_timeout (none, once the node
    # has been up that long) may be waited for
    assert any("died before this boot" in ln for ln in said), said
    joined = read_from(c1_error_log, offset)
    assert transfer(joined) == "IST", joined[-3000:]
    assert "Receiving IST" in joined or "IST received" in joined, joined[-3000:]
    assert "rsync SST completed" not in joined
    assert rows(lab, "controller01", TABLE) == committed
    assert mariadbd_cmdline_pid(lab, "controller02") == survivor_pid
    assert primary_of_size(lab, "controller01", 3)


def test_full_crash_recovers_from_the_most_advanced_node(galera_lab):
    lab = galera_lab
    table = "full_crash_rows"
    healthy_with_garbd(lab)
    committed = write_rows(lab, "controller01", table, 1, 20)
    # controller01 goes first; controller02 (+ garbd) commits more: it is ahead, and
    # it is not the one the name tie-break would pick
    lab.crash("controller01")
    assert proc.wait_for(lambda: primary_of_size(lab, "controller02", 2), 30, interval=0.2)
    committed += write_rows(lab, "controller02", table, 21, 20)
    ahead = int(wsrep(lab, "controller02")["wsrep_last_committed"])
    lab.crash("controller02")

    logs = {n: pacemaker_log(lab, n) for n in BOTH}
    offsets = {n: log_size(p) for n, p in logs.items()}
    t0 = time.monotonic()
    for node in sorted(BOTH):
        lab.cluster.restart(node, wait=False)
    lab.cluster.wait_online(sorted(BOTH), timeout=90)
    took = wait_promoted(lab, BOTH, timeout=180)
    print(f"full crash: both Promoted {time.monotonic() - t0:.1f}s after the boot "
          f"({took:.1f}s after both were online)")

    said = {n: agent_lines(read_from(p, offsets[n])) for n, p in logs.items()}
    for node in sorted(BOTH):  # the agent's own account of the recovery (-s shows it)
        print(f"== {node}\n" + "\n".join(said[node]))
    boot2 = [ln for ln in said["controller02"] if "bootstrapping a new Primary component" in ln]
    assert boot2, "\n".join(said["controller02"])
    assert f":{ahead} " in boot2[-1] or boot2[-1].endswith(f":{ahead}"), boot2
    # the agent's actual bootstrap lines; its WAIT reason also says "bootstrapping" in prose
    assert not [ln for ln in said["controller01"]
                if "bootstrapping a new Primary component" in ln or "BOOTSTRAP:" in ln], \
        "\n".join(said["controller01"])
    assert any("promote: JOIN" in ln for ln in said["controller01"]), \
        "\n".join(said["controller01"])
    assert any("died before this boot" in ln for ln in said["controller01"]), \
        "\n".join(said["controller01"])
    assert "--wsrep-new-cluster" in (mariadbd_cmdline(lab, "controller02") or [])
    assert "--wsrep-new-cluster" not in (mariadbd_cmdline(lab, "controller01") or [])
    for node in sorted(BOTH):
        assert rows(lab, node, table) == committed, node
    # garbd (still running on the arbitrator) joins the new component again
    for node in sorted(BOTH):
        assert proc.wait_for(lambda n=node: primary_of_size(lab, n, 3), 30, interval=0.5), \
            wsrep(lab, node)


def mariadbd_cmdline_pid(lab, node: str) -> int | None:
    """Host PID of the node's mariadbd (a restart by Pacemaker would change it)."""
    for pid in lab.cluster.node(node).pids():
        argv = proc.cmdline(pid)
        if argv and argv[0].endswith("mariadbd"):
            return pid
    return None
