"""ocf:pacestack:galera beside resource-agents' ocf:heartbeat:galera (the anchor), under
the lab's real Pacemaker, in one run.

Each round builds the lab (``pacestack lab up`` without services or fencing: two
controllers with corosync/Pacemaker in namespaces, garbd on the arbitrator, the
same my.cnf and Galera options, cluster/lab/services.py) once per agent, the
anchor first, and measures on it, in this order:

1. new cluster: ``cluster apply`` done to both Promoted and Synced, from empty
   datadirs (the lab's timings; apply itself is the same for both);
5. the Promoted monitor's latency on controller01, run inside the node with
   pacemaker-execd's own environment plus the OCF variables Pacemaker passes for
   that operation, interleaved with ``ocf:heartbeat:Dummy`` (the floor);
4. ``kill -9`` of controller01's mariadbd alone, to Synced again (size 3, a new
   mariadbd) and Promoted;
2. controller01 power-cut while a writer on controller02 commits one row at a
   time: the survivor's longest gap between acknowledged commits (the write
   stall); then controller01 boots and is back Promoted and Synced;
3. full crash at different seqnos: controller01 dies, controller02 commits more,
   controller02 dies; both boot at once, to both Promoted and Synced (garbd kept
   running); every row committed before the crash must be on both (controller02
   was the only right node to bootstrap from).

The agents run from this tree (installed as tests/fixtures/ocf.py does, taking
turns with other checkouts). Run as root from the repository:
``.venv/bin/python -m bench.galera_side_by_side [-n 2] [--json]``. Prints every
sample, the ranges and the ratio pacestack/anchor of the medians (and the
monitors against Dummy); a benchmark, not a test: no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacestack.cluster import cib  # noqa: E402
from pacestack.cluster.lab import services, stack  # noqa: E402

from pacestack import proc  # noqa: E402
from tests.fixtures.galera_lab import primary_of_size, rows, write_rows  # noqa: E402
from tests.fixtures.ocf import _provider_installed, _tree_turn  # noqa: E402

AGENTS = {"heartbeat": services.ANCHOR_GALERA, "pacestack": "ocf:pacestack:galera"}
NODES = ("controller01", "controller02")
HEARTBEAT = "/usr/lib/ocf/resource.d/heartbeat"
MEASURES = [("new_cluster", "new cluster: empty datadirs to all Promoted+Synced"),
            ("stall", "node crash: survivor's longest write stall"),
            ("returning", "node crash: returning node to Promoted+Synced"),
            # the part after its Pacemaker has joined: what a resource agent can change
            ("returning_online", "  of which after the node is online in the cluster"),
            ("full_crash", "full crash, different seqnos: to all Promoted+Synced"),
            ("kill9", "kill -9 of mariadbd alone: to Synced+Promoted")]

# runs inside a node: one row per autocommit INSERT, the wall time of each OK
WRITER = """
import sys, time, pymysql
i = int(sys.argv[1]); conn = None
while True:
    try:
        if conn is None:
            conn = pymysql.connect(unix_socket="/run/mysqld/mysqld.sock", user="root",
                                   autocommit=True, connect_timeout=2, read_timeout=30)
        conn.cursor().execute("INSERT INTO labtest.stall VALUES (%s)", (i,))
        print(time.time(), flush=True); i += 1
    except Exception:
        conn = None; time.sleep(0.02)
    time.sleep(0.01)
"""

# runs inside a node: each argv with its environment, interleaved; ms per call
TIMER = """
import json, subprocess, sys, time
spec = json.load(sys.stdin); out = {k: [] for k in spec}; codes = {k: [] for k in spec}
for _ in range(spec.pop("__n__")[0]):
    for name, (argv, env) in spec.items():
        t = time.perf_counter()
        rc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/").returncode
        out[name].append((time.perf_counter() - t) * 1000); codes[name].append(rc)
out.pop("__n__", None); codes.pop("__n__", None)
print(json.dumps({"ms": out, "rc": codes}))
"""


def promoted(lab: stack.Lab) -> set[str]:
    return {n for n, r in lab.placement().get("galera", []) if r == "Promoted"}


def wait(pred: Callable[[], bool], what: str, timeout: float = 180,
         interval: float = 0.2) -> None:
    if not proc.wait_for(pred, timeout, interval=interval):
        raise RuntimeError(f"{what}: not within {timeout:.0f}s")


def healthy(lab: stack.Lab, nodes=NODES, size: int = 3) -> bool:
    return promoted(lab) == set(nodes) and all(primary_of_size(lab, n, size) for n in nodes)


def mariadbd_pid(lab: stack.Lab, node: str) -> int | None:
    for pid in lab.cluster.node(node).pids():
        argv = proc.cmdline(pid)
        if argv and os.path.basename(argv[0]) in ("mariadbd", "mysqld"):
            return pid
    return None


def settle(lab: stack.Lab) -> None:
    """Both Promoted and Synced with garbd and no action pending, so one measure does
    not start inside the tail of the last. (No cleanup of the failures: it makes
    Pacemaker probe again, and the anchor restarts its instances on that.)"""
    wait(lambda: healthy(lab), "both Promoted+Synced with garbd")
    lab.cluster.nodes[0].run(["crm_resource", "--wait", "--timeout=120"], check=False,
                             timeout=130)
    wait(lambda: healthy(lab), "both Promoted+Synced with garbd, nothing pending")


# -- the measures ---------------------------------------------------------------------
def monitor_latency(lab: stack.Lab, agent: str, calls: int) -> dict[str, float]:
    """Median ms of the Promoted monitor and of Dummy's, inside controller01."""
    node = lab.cluster.node(NODES[0])
    execd = next((p for p in node.pids()
                  if os.path.basename((proc.cmdline(p) or [""])[0]) == "pacemaker-execd"),
                 None)
    if execd is None:
        raise RuntimeError("no pacemaker-execd on controller01")
    raw = Path(f"/proc/{execd}/environ").read_bytes().split(b"\0")
    base = dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)
    params = instance_params(lab)
    provider, kind = agent.split(":")[1:]
    meta = {"CRM_meta_interval": "10000", "CRM_meta_name": "monitor",
            "CRM_meta_timeout": "30000", "CRM_meta_role": "Promoted",
            "CRM_meta_on_node": NODES[0], "CRM_meta_on_node_uuid": "1",
            "CRM_meta_clone": "0", "CRM_meta_clone_max": "2", "CRM_meta_clone_node_max": "1",
            "CRM_meta_promoted_max": "2", "CRM_meta_promoted_node_max": "1",
            "CRM_meta_master_max": "2", "CRM_meta_master_node_max": "1",
            "CRM_meta_notify": "true", "CRM_meta_interleave": "true",
            "CRM_meta_globally_unique": "false", "crm_feature_set": "3.16.2"}
    common = {**base, "OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1",
              "OCF_RA_VERSION_MINOR": "1", "OCF_EXIT_REASON_PREFIX": "ocf-exit-reason:"}
    galera_env = {**common, "OCF_RESOURCE_INSTANCE": "galera", "OCF_RESOURCE_TYPE": kind,
                  "OCF_RESOURCE_PROVIDER": provider,
                  **{f"OCF_RESKEY_{k}": v for k, v in {**params, **meta}.items()}}
    dummy_env = {**common, "OCF_RESOURCE_INSTANCE": "bench-dummy",
                 "OCF_RESOURCE_TYPE": "Dummy", "OCF_RESOURCE_PROVIDER": "heartbeat",
                 "OCF_RESKEY_state": "/run/bench-dummy.state",
                 **{f"OCF_RESKEY_{k}": v for k, v in meta.items()
                    if k in ("CRM_meta_interval", "CRM_meta_name", "CRM_meta_timeout",
                             "CRM_meta_on_node", "CRM_meta_on_node_uuid", "crm_feature_set")}}
    node.run([f"{HEARTBEAT}/Dummy", "start"], env=dummy_env, timeout=30)
    spec = {"__n__": [calls],
            "galera": [[f"/usr/lib/ocf/resource.d/{provider}/{kind}", "monitor"], galera_env],
            "dummy": [[f"{HEARTBEAT}/Dummy", "monitor"], dummy_env]}
    res = node.run([sys.executable, "-I", "-c", TIMER], input=json.dumps(spec), timeout=600)
    node.run([f"{HEARTBEAT}/Dummy", "stop"], env=dummy_env, check=False, timeout=30)
    got = json.loads(res.stdout)
    for name, codes in got["rc"].items():
        want = 8 if name == "galera" else 0
        if set(codes) != {want}:
            raise RuntimeError(f"{agent} monitor timing: {name} exit codes {sorted(set(codes))}")
    return {k: statistics.median(v) for k, v in got["ms"].items()}


def instance_params(lab: stack.Lab) -> dict[str, str]:
    import xml.etree.ElementTree as ET  # noqa: S405 - the lab's own CIB

    out = lab.cluster.nodes[0].run(["cibadmin", "--query", "--xpath",
                                    "//primitive[@id='galera']"], timeout=30).stdout
    return cib.nvpairs(ET.fromstring(out))  # noqa: S314


def kill9_alone(lab: stack.Lab) -> float:
    old = mariadbd_pid(lab, NODES[0])
    if old is None:
        raise RuntimeError("no mariadbd on controller01")
    t0 = time.monotonic()
    os.kill(old, signal.SIGKILL)
    wait(lambda: (mariadbd_pid(lab, NODES[0]) not in (None, old)
                  and primary_of_size(lab, NODES[0], 3) and promoted(lab) == set(NODES)),
         "controller01 Synced again after kill -9", interval=0.1)
    return time.monotonic() - t0


def node_crash(lab: stack.Lab) -> tuple[float, float, float]:
    """(survivor's longest write stall, seconds until the returning node is back, and
    how many of those came after it was online in the cluster)."""
    lab.sql("CREATE DATABASE IF NOT EXISTS labtest;\n"
            "CREATE TABLE IF NOT EXISTS labtest.stall (id INT PRIMARY KEY);\n"
            "DELETE FROM labtest.stall;\n", node=NODES[1])
    writer = lab.cluster.node(NODES[1]).popen(
        [sys.executable, "-I", "-c", WRITER, "1"], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    acks: list[float] = []
    try:
        first = writer.stdout.readline()
        if not first:
            raise RuntimeError("the writer on controller02 wrote nothing")
        time.sleep(1.0)
        crashed = time.time()
        lab.crash(NODES[0])
        # the stall is over once commits flow again for a while; cap at 60 s
        deadline = time.time() + 60
        for line in writer.stdout:
            acks.append(float(line))
            if acks[-1] > crashed and len([a for a in acks if a > acks[-1] - 2]) > 20 and \
                    acks[-1] - crashed > 3:
                break
            if time.time() > deadline:
                break
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()
    before = [a for a in acks if a <= crashed]
    after = [a for a in acks if a > crashed]
    if not after:
        raise RuntimeError("no commit on controller02 after the crash")
    points = ([before[-1]] if before else [crashed]) + after
    stall = max(b - a for a, b in zip(points, points[1:], strict=False))
    wait(lambda: promoted(lab) == {NODES[1]}, "controller02 alone Promoted")
    t0 = time.monotonic()
    online = lab.restart(NODES[0], timeout=90)
    wait(lambda: healthy(lab), "controller01 back Promoted+Synced", interval=0.1)
    back = time.monotonic() - t0
    return stall, back, back - online


def full_crash(lab: stack.Lab, round_no: int) -> float:
    table = f"full_crash_{round_no}"
    committed = write_rows(lab, NODES[0], table, 1, 20)
    lab.crash(NODES[0])
    wait(lambda: primary_of_size(lab, NODES[1], 2), "controller02 Primary alone with garbd")
    committed += write_rows(lab, NODES[1], table, 21, 20)
    lab.crash(NODES[1])
    t0 = time.monotonic()
    for node in NODES:
        lab.cluster.restart(node, wait=False)
    wait(lambda: healthy(lab), "both Promoted+Synced after the full crash", timeout=300,
         interval=0.1)
    took = time.monotonic() - t0
    for node in NODES:
        got = rows(lab, node, table)
        if got != committed:
            raise RuntimeError(f"full crash: {node} has {len(got)} of {len(committed)} rows "
                               "(the wrong node bootstrapped)")
    return took


def one_lab(name: str, round_no: int, calls: int) -> dict[str, float]:
    registry = stack.private_registry("bench-sbs")
    out: dict[str, float] = {}
    try:
        lab = stack.up(stack.UpOptions(services=False, cinder_volume=False, fencing=False,
                                       registry=registry, timeout=300,
                                       galera_agent=AGENTS[name]),
                       progress=lambda m: print(f"  lab: {m}", file=sys.stderr))
        t = lab.info.timings
        wait(lambda: all(primary_of_size(lab, n, 3) for n in NODES), "Synced with garbd")
        # Promoted everywhere is what lab up waited for; Synced comes with it for ours,
        # the anchor may report Promoted earlier (its promote polls for sync)
        out["new_cluster"] = t["galera promoted"] - t["galera applied"]
        settle(lab)
        mon = monitor_latency(lab, AGENTS[name], calls)
        out["monitor_ms"], out["dummy_ms"] = mon["galera"], mon["dummy"]
        settle(lab)
        out["kill9"] = kill9_alone(lab)
        settle(lab)
        out["stall"], out["returning"], out["returning_online"] = node_crash(lab)
        settle(lab)
        out["full_crash"] = full_crash(lab, round_no)
    finally:
        stack.remove_registry(registry)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2, help="rounds (one lab per agent each)")
    ap.add_argument("--calls", type=int, default=30, help="monitor calls per agent per round")
    ap.add_argument("--only", choices=sorted(AGENTS), help="one agent only (no ratios)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench.galera_side_by_side: run as root (namespaces, Pacemaker)", file=sys.stderr)
        return 2
    names = [args.only] if args.only else list(AGENTS)
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    load = []
    with _tree_turn(), _provider_installed():
        for i in range(args.n):
            for name in names:
                load.append(Path("/proc/loadavg").read_text().split()[:3])
                print(f"round {i + 1}: {name}", file=sys.stderr)
                samples[name].append(one_lab(name, i, args.calls))
                print(f"  {json.dumps(samples[name][-1])}", file=sys.stderr)
    report = {"samples": samples, "loadavg_at_starts": load}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    med = {n: {k: statistics.median(s[k] for s in v) for k in v[0]} for n, v in samples.items()}

    def rng(name: str, key: str, fmt: str = "{:.1f}") -> str:
        vals = [s[key] for s in samples[name]]
        lo, hi = min(vals), max(vals)
        return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"

    print(f"Galera agents side by side under the lab's Pacemaker, {args.n} round(s); "
          f"load at each lab start {load}")
    head = "  ".join(f"{n:>12s}" for n in names)
    print(f"{'seconds (range over rounds)':56s} {head}  {'ratio' if len(names) == 2 else ''}")
    for key, label in MEASURES:
        cells = "  ".join(f"{rng(n, key):>12s}" for n in names)
        ratio = f"{med['pacestack'][key] / med['heartbeat'][key]:.2f}x" \
            if len(names) == 2 else ""
        print(f"{label:56s} {cells}  {ratio}")
    cells = "  ".join(f"{rng(n, 'monitor_ms', '{:.0f}'):>12s}" for n in names)
    ratio = f"{med['pacestack']['monitor_ms'] / med['heartbeat']['monitor_ms']:.2f}x" \
        if len(names) == 2 else ""
    print(f"{'Promoted monitor, execd environment (median ms)':56s} {cells}  {ratio}")
    cells = "  ".join(f"{rng(n, 'dummy_ms', '{:.1f}'):>12s}" for n in names)
    print(f"{'  ocf:heartbeat:Dummy monitor, same run (median ms)':56s} {cells}")
    cells = "  ".join(f"{med[n]['monitor_ms'] / med[n]['dummy_ms']:>11.1f}x" for n in names)
    print(f"{'  Promoted monitor / Dummy':56s} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
