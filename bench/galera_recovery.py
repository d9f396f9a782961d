"""Full-crash recovery of 3 Galera nodes: ocf:pacestack:galera against the floor.

One real 3-node Galera on loopback (tests/fixtures/galera.py). Every round the
same crash: rows committed on node1, node3 killed -9, more rows, node1 and node2
killed -9 at once (node1/node2 ahead of node3, grastate.dat seqno -1 everywhere).
Then the cluster is brought back, timed from "all dead" to "all three Primary
and Synced", alternately by

- agent: the installed agent called exactly as Pacemaker calls it (AgentDriver:
  environment, clone/notify meta, node attributes in a CIB file): start on every
  node at once (Pacemaker starts the instances in parallel), then promote by
  promotion score, notify, promote the joiners in parallel;
- floor: the same recovery by hand with nothing in between: --wsrep-recover on
  every node at once, safe_to_bootstrap on the most advanced (ties: lowest name),
  mariadbd --wsrep-new-cluster there, the others started with their positions
  at once (IST), waiting for Synced by polling.

No fixed sleeps in either path. After each round every committed row is counted
on every node and the joiners' transfer (IST/SST) is read from their error logs.
Run as root from the repository:
``.venv/bin/python -m bench.galera_recovery [-n 5] [--rows 200] [--json]``.
Prints a table (median and every round) and the ratio agent/floor (goal <= 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacestack.agents import install  # noqa: E402

from pacestack import proc  # noqa: E402
from tests.fixtures.galera import (  # noqa: E402
    AgentDriver,
    GaleraCluster,
    GaleraNode,
    Position,
    _parallel,
)
from tests.fixtures.mariadb import MARIADBD  # noqa: E402
from tests.fixtures.ocf import PROVIDER_DIR  # noqa: E402

NAMES = ["node1", "node2", "node3"]
TABLE = "recovery"
GOAL = 1.5


class Bench:
    def __init__(self, rows: int):
        self.cluster = GaleraCluster(3, names=NAMES)
        self.driver = AgentDriver(self.cluster, self.cluster.base_dir / "cib.xml")
        self.rows = rows
        self.committed: list[int] = []
        self.next_id = 1

    def form(self) -> None:
        order = self.driver.recover()
        assert order[0] == "node1", order

    def write(self, node: str, count: int) -> None:
        self.committed += self.cluster.write_rows(node, TABLE, self.next_id, count)
        self.next_id += count

    def crash(self) -> dict[str, int]:
        """The round's crash; returns each node's wsrep_last_committed at its death."""
        c = self.cluster
        self.write("node1", self.rows)
        died = {"node3": c["node3"].last_committed().seqno}
        c.kill9(["node3"])
        self.write("node1", self.rows)
        died.update({n: c[n].last_committed().seqno for n in ("node1", "node2")})
        c.kill9(["node1", "node2"])
        assert not any(n.running() for n in c.nodes)
        return died

    # -- the two ways back ---------------------------------------------------------
    def by_agent(self) -> dict[str, float]:
        d = self.driver
        d.all_crashed()  # Pacemaker forgets the nodes' transient attributes; /run is gone
        t0 = time.monotonic()
        results = _parallel({n: (lambda n=n: d.run(n, "start")) for n in NAMES})
        for n, (rc, _, err) in results.items():
            assert rc == 0, f"start on {n}: rc {rc}: {err[-800:]}"
        t_started = time.monotonic()
        order = d.recover(start=False)
        t_end = time.monotonic()
        assert sorted(order) == NAMES and d.bootstrapped(order[0]), (order, d.calls[-6:])
        self.bootstrap_node = order[0]
        return {"total": t_end - t0, "positions": t_started - t0, "promote": t_end - t_started}

    def by_hand(self) -> dict[str, float]:
        c = self.cluster
        t0 = time.monotonic()
        pos: dict[str, Position] = _parallel({n: c[n].recover for n in NAMES})
        t_pos = time.monotonic()
        first = min(NAMES, key=lambda n: (-pos[n].seqno, n))
        _mark_safe(c[first])
        _spawn(c[first], ["--wsrep-new-cluster", _start_position(pos[first])])
        _wait(c[first].synced, f"{first} Synced after bootstrap")
        joiners = [n for n in NAMES if n != first]
        for n in joiners:
            _spawn(c[n], [_start_position(pos[n])])
        for n in joiners:
            _wait(c[n].synced, f"{n} Synced after joining")
        t_end = time.monotonic()
        self.bootstrap_node = first
        return {"total": t_end - t0, "positions": t_pos - t0, "promote": t_end - t_pos}

    def check(self, died: dict[str, int]) -> dict[str, object]:
        """Nothing lost, the right node bootstrapped, how the joiners caught up."""
        c = self.cluster
        expected = min(NAMES, key=lambda n: (-died[n], n))
        assert self.bootstrap_node == expected, (self.bootstrap_node, died)
        # untimed: on a loaded machine the short EVS timeouts can make a node drop out
        # of the view for a moment right after recovery; count once it is back
        for n in NAMES:
            _wait(c[n].synced, f"{n} Synced before counting rows", 60)
        for n in NAMES:
            got = c.rows(n, TABLE)
            missing = sorted(set(self.committed) - set(got))
            assert not missing, f"{n} lost rows {missing[:10]}"
            st = c[n].status()
            assert st["wsrep_cluster_size"] == "3" and st["wsrep_cluster_status"] == "Primary"
        return {"bootstrap": self.bootstrap_node,
                "transfer": {n: c[n].ist_or_sst() or "none" for n in NAMES
                             if n != self.bootstrap_node}}


def _mark_safe(node: GaleraNode) -> None:
    path = node.datadir / "grastate.dat"
    text = path.read_text()
    path.write_text(text.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"))


def _start_position(pos: Position) -> str:
    return f"--wsrep_start_position={pos.uuid}:{pos.seqno}"


def _spawn(node: GaleraNode, args: list[str]) -> None:
    """mariadbd on the node's config, not waited for (a joiner's socket opens before
    its IST is applied: the floor polls for Synced like the agent does)."""
    log = open(node.base_dir / "stdout.log", "ab")
    node._popen = subprocess.Popen([MARIADBD, f"--defaults-file={node.defaults_file}", *args],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    node.pid = node._popen.pid


def _wait(pred: Callable[[], bool], what: str, timeout: float = 120) -> None:
    if not proc.wait_for(pred, timeout):
        raise RuntimeError(f"{what}: not within {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="rounds per path (alternating)")
    ap.add_argument("--rows", type=int, default=200,
                    help="rows committed before each of the two kills")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.galera_recovery: run as root (mariadbd runs as mysql)", file=sys.stderr)
        return 2

    os.makedirs("/run/resource-agents", exist_ok=True)
    written = [] if (PROVIDER_DIR / "galera").exists() else \
        install.install_agents(str(PROVIDER_DIR), python=sys.executable, names=["galera"])
    bench = Bench(args.rows)
    samples: dict[str, list[dict[str, float]]] = {"agent": [], "floor": []}
    checks: dict[str, list[dict[str, object]]] = {"agent": [], "floor": []}
    cpu0 = os.times()
    try:
        bench.form()
        for _ in range(args.n):
            for path, recover in (("agent", bench.by_agent), ("floor", bench.by_hand)):
                died = bench.crash()
                samples[path].append(recover())
                checks[path].append(bench.check(died))
    finally:
        bench.cluster.destroy()
        for path in written:  # remove only what this run wrote
            Path(path).unlink(missing_ok=True)
    cpu = os.times()
    med = {p: {k: statistics.median(s[k] for s in v) for k in v[0]} for p, v in samples.items()}
    ratio = med["agent"]["total"] / med["floor"]["total"]
    report = {
        "rounds": args.n, "rows_per_kill": args.rows, "median_s": med,
        "ratio_agent_floor": round(ratio, 3), "goal": GOAL, "within_goal": ratio <= GOAL,
        "samples_s": samples, "checks": checks,
        "agent_calls_last_round": len(bench.driver.calls),
        "cpu_s_children": round(cpu.children_user + cpu.children_system
                                - cpu0.children_user - cpu0.children_system, 1),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"full-crash recovery of 3 Galera nodes, {args.n} rounds each "
          f"({args.rows} rows before each kill); seconds")
    print(f"{'path':6s} {'median':>7s} {'positions':>9s} {'promote':>8s}   rounds")
    for p in ("agent", "floor"):
        rounds = " ".join(f"{s['total']:.2f}" for s in samples[p])
        print(f"{p:6s} {med[p]['total']:7.2f} {med[p]['positions']:9.2f} "
              f"{med[p]['promote']:8.2f}   {rounds}")
    print(f"ratio agent/floor: {ratio:.2f}x (goal <= {GOAL}x)")
    transfers = sorted({t for c in checks["agent"] + checks["floor"]
                        for t in c["transfer"].values()})
    boots = sorted({c["bootstrap"] for p in checks.values() for c in p})
    print(f"bootstrap node every round: {boots}; joiner transfers seen: {transfers}; "
          "no committed row lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
