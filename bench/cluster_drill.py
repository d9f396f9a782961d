"""Benchmark: node-crash recovery of the VIP, Galera and Keystone against its floor.

Builds a lab in a private registry (`pacestack lab up`, ~55 s), crashes the node
holding the VIP N times with `pacestack cluster drill`'s node-crash scenario (a
writer, the VIP's own address and Keystone probed through the VIP, on the
arbitrator), and compares each time with the floor measured in the same run.
VIP is the address answering a TCP handshake from the survivor (no service
involved); Keystone is an HTTP request through it, each under its own name:

  detection floor  = corosync token + consensus (1.2 x token): before that no
                     member may declare the node gone;
  VIP floor        = detection floor + the monitor interval of what has to be
                     noticed by a monitor (none for a node crash: membership
                     tells) + fencing (the victim's device's configured
                     pcmk_delay_base - 2 s for controller01, the partition
                     tie-breaker - plus fence_dummy's own run time) + IPaddr2's
                     start on the survivor (from its operation history);
  Galera floor     = Galera's own failure detection (evs.suspect_timeout: the
                     survivor and garbd keep the Primary component), but a write
                     through the VIP also waits for the VIP: the larger of the two;
  Keystone floor   = the VIP floor (Keystone's clone already runs on the survivor).

Goal: each within 3 s of its floor. Times are from the fault, sampled
every 0.1 s (probes) and 0.25 s (crm_mon).

    .venv/bin/python bench/cluster_drill.py [--rounds 2] [--json]

``--whole-profile`` builds the whole controller (``lab up --whole-profile``, 2-4 min)
and runs ``--scenarios`` (default: node-crash, standby, partition, kill-service,
kill-mariadbd) once each with the cloud-level probe; per scenario it prints each
API's recovery through the VIP, the user sequence's, and beside them the floor:

  floor = detection (node gone: token + consensus; a killed process: its
          monitor interval; standby: none) + fencing (where a node is fenced:
          the delay and fence_dummy's run time) + the slowest start (or promote)
          the cluster ran for the scenario (from crm_mon's operation history:
          the operations that were not there before it, on the nodes that carried
          the service meanwhile).

Goals: every API within floor + 3 s, the cloud sequence within floor + 10 s, 0
acknowledged writes lost, 0 messages lost on a quorum queue.

    .venv/bin/python bench/cluster_drill.py --whole-profile [--scenarios LIST] [--json]
        [--service-debug --keep-logs DIR]   # the services at debug level, logs kept
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pacestack.cluster import crm_mon, drill  # noqa: E402
from pacestack.cluster.drill.cli import steps_text  # noqa: E402
from pacestack.cluster.drill.lab_target import LabTarget  # noqa: E402
from pacestack.cluster.lab import services, stack  # noqa: E402

from tests.fixtures.ocf import _provider_installed, _tree_turn  # noqa: E402

GALERA_SUSPECT_S = 1.5  # evs.suspect_timeout in the lab's Galera configuration
assert "evs.suspect_timeout=PT1.5S" in services.EVS


def op_exec_seconds(lab: stack.Lab, node_name: str, rsc: str, task: str) -> float | None:
    """The last ``task`` of ``rsc`` on ``node_name`` from crm_mon's operation history."""
    res = lab.observer().run(list(crm_mon.WITH_OPERATIONS), check=False, timeout=30)
    ops = crm_mon.operations(res.stdout) if res.returncode == 0 else None
    best = None
    for op in ops or []:
        if (op.node, op.resource, op.task) == (node_name, rsc, task):
            best = op.exec_s
    return best


def fence_seconds(lab: stack.Lab, victim: str) -> float:
    """How long fence_dummy takes to switch a node off (run by hand on the survivor
    against a scratch status file, as stonith would)."""
    import time

    survivor = next(n for n in lab.cluster.nodes if n.name != victim and n.booted)
    scratch = lab.cluster.dir / "bench-fence-status"
    scratch.write_text("on", encoding="utf-8")
    t0 = time.monotonic()
    survivor.run(["fence_dummy", "--type=file", f"--status-file={scratch}", "--action=off"],
                 check=False, timeout=30)
    seconds = time.monotonic() - t0
    scratch.unlink()
    return seconds


def op_history(lab: stack.Lab) -> dict[tuple[str, str, str], tuple[str, float]]:
    """(node, resource, call id) -> (task, exec seconds) of every operation crm_mon
    still remembers."""
    res = lab.observer().run(list(crm_mon.WITH_OPERATIONS), check=False, timeout=30)
    ops = crm_mon.operations(res.stdout) if res.returncode == 0 else None
    return {(op.node, op.resource, op.call): (op.task, op.exec_s) for op in ops or []}


MOVES = ("node-crash", "peer-crash", "standby", "partition")  # the victim's share moves
FENCED = ("node-crash", "peer-crash", "partition")


def scenario_floor(lab: stack.Lab, r, before: dict, after: dict, monitor_s: int) -> dict:
    """The floor of one scenario from what the cluster had to do (see the docstring)."""
    token = lab.cluster.token_ms / 1000.0
    detect = token * 2.2 if r.name in FENCED else (0.0 if r.name == "standby" else monitor_s)
    fencing = 0.0
    if r.name in FENCED:
        delay = 2.0 if r.victim == lab.cluster.node_names[0] else 0.0  # services.py
        fencing = delay + fence_seconds(lab, r.victim)
    where = [n for n in lab.cluster.node_names if n != r.victim] if r.name in MOVES \
        else [r.victim]
    starts = {(rsc, task): secs for (node, rsc, call), (task, secs) in after.items()
              if (node, rsc, call) not in before and node in where
              and task in ("start", "promote")}
    slowest = max(starts.items(), key=lambda kv: kv[1], default=(("-", "-"), 0.0))
    return {"detection_s": round(detect, 2), "fencing_s": round(fencing, 2),
            "slowest_start": f"{slowest[0][0]} {slowest[0][1]}",
            "slowest_start_s": slowest[1],
            "floor_s": round(detect + fencing + slowest[1], 2)}


def keep_logs(lab: stack.Lab, dest: Path) -> None:
    """Each node's /var/log and the drill's work directories, copied before the
    teardown deletes them: the services' own logs explain a slow recovery."""
    dest.mkdir(parents=True, exist_ok=True)
    # the arbitrator's too: nova-compute runs there
    hosts = [*lab.cluster.nodes, *([lab.cluster.arbitrator] if lab.cluster.arbitrator else [])]
    for node in hosts:
        shutil.copytree(node.root.var_log, dest / node.name, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True)
        # what the lab starts outside Pacemaker (nova-compute) logs in its boot dir
        for out in node.root.boot_dir.glob("*.out"):
            shutil.copyfile(out, dest / node.name / out.name)
    for work in lab.cluster.dir.glob("b-*"):
        shutil.copytree(work, dest / work.name, dirs_exist_ok=True,
                        ignore_dangling_symlinks=True)


def whole_profile(args, cached) -> int:
    from tests.fixtures import openstack_build

    glance = openstack_build.ensure_glance_venv(
        log=lambda m: print(f"cache: {m}", file=sys.stderr))
    registry = stack.private_registry("bench")
    try:
        lab = stack.up(stack.UpOptions(venv=cached[0], schemas=cached[1], registry=registry,
                                       whole_profile=True, glance_venv=glance, timeout=300,
                                       service_debug=args.service_debug),
                       progress=lambda m: print(f"lab: {m}", file=sys.stderr))
    except BaseException:
        stack.remove_registry(registry)  # a failed lab up leaves its registry behind
        raise
    rows = []
    try:
        for i, name in enumerate(args.scenarios.split(",")):
            before = op_history(lab)
            # the machine is shared: the load beside each scenario's numbers
            load = [round(x, 2) for x in os.getloadavg()]
            # a scenario named twice (standby,standby) gets a directory per run
            report = drill.run(LabTarget(lab), [name],
                               work_dir=lab.cluster.dir / f"b-{i}-{name}",
                               timeout=240,
                               progress=lambda m: print(f"drill: {m}", file=sys.stderr))
            r = report.scenarios[0]
            floor = scenario_floor(lab, r, before, op_history(lab), report.monitor_interval_s)
            apis = [v for v in r.apis_s.values() if v is not None]
            slowest_api = max(apis) if apis and len(apis) == len(r.apis_s) else None
            rows.append({
                "scenario": name, "victim": r.victim, "ok": r.ok, "failures": r.failures(),
                "load": load,
                "lost_writes": len(r.lost_writes), "vip_s": r.vip_s, "apis_s": r.apis_s,
                "messages_put": r.messages_put, "messages_lost": r.messages_lost,
                "cloud_s": r.cloud_s, "cloud_began_s": r.cloud_began_s,
                "cloud_attempts": r.cloud_attempts, "cloud_hedged": r.cloud_hedged,
                "cloud_steps": r.cloud_steps,
                "cloud_steps_began": r.cloud_steps_began, **floor,
                "apis_within_floor_3s": slowest_api is not None
                and slowest_api <= floor["floor_s"] + 3,
                "cloud_within_floor_10s": r.cloud_s is not None
                and r.cloud_s <= floor["floor_s"] + 10,
                "cloud_began_within_floor_10s": r.cloud_began_s is not None
                and r.cloud_began_s <= floor["floor_s"] + 10,
                # a failed attempt before the one that worked says what the fault cost
                "cloud_failed_attempt": r.cloud_error if r.cloud_attempts > 1 else None,
                "error": r.error or (r.cloud_error if r.cloud_s is None else None)})
    finally:
        if args.keep_logs:
            keep_logs(lab, Path(args.keep_logs))
        stack.remove_registry(registry)
    if args.json:
        print(json.dumps({"scenarios": rows}, indent=1))
        return 0
    for row in rows:
        apis = " ".join(f"{n} {v if v is not None else '-'}"
                        for n, v in sorted(row["apis_s"].items()))
        print(f"{row['scenario']} ({row['victim']}): floor {row['floor_s']} s "
              f"(detection {row['detection_s']} + fencing {row['fencing_s']} + slowest "
              f"start {row['slowest_start']} {row['slowest_start_s']}); load "
              f"{' '.join(map(str, row['load']))}")
        print(f"  VIP {row['vip_s']}  APIs {apis}  "
              f"(<= floor + 3: {'yes' if row['apis_within_floor_3s'] else 'NO'})")
        print(f"  cloud sequence done {row['cloud_s']} s, began {row['cloud_began_s']} s, "
              f"after {row['cloud_attempts']} attempts ({row['cloud_hedged']} started "
              f"beside a slow one) (<= floor + 10: done "
              f"{'yes' if row['cloud_within_floor_10s'] else 'NO'}, began "
              f"{'yes' if row['cloud_began_within_floor_10s'] else 'NO'}); "
              f"lost acknowledged writes {row['lost_writes']}; messages lost on a "
              f"quorum queue {row['messages_lost']} of {row['messages_put']}; "
              f"{'ok' if row['ok'] else 'FAILED: ' + '; '.join(row['failures'])}")
        if row["cloud_steps"]:
            print(f"  the sequence that worked, s from its start: "
                  f"{steps_text(row['cloud_steps'], row['cloud_steps_began'])}")
        if row["cloud_failed_attempt"]:
            print(f"  a failed attempt: {row['cloud_failed_attempt']}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--whole-profile", action="store_true",
                    help="the whole controller, every scenario once, with the cloud probe")
    ap.add_argument("--keep-logs", metavar="DIR",
                    help="with --whole-profile: copy the nodes' logs here before teardown")
    ap.add_argument("--service-debug", action="store_true",
                    help="the lab's OpenStack services log at debug level (lab up "
                    "--service-debug); with --keep-logs to read them. Debug logging "
                    "slows the services: not for the numbers this bench reports")
    ap.add_argument("--scenarios", default="node-crash,standby,partition,kill-service,"
                    "kill-mariadbd", help="with --whole-profile: comma-separated")
    args = ap.parse_args()
    cached = stack.cached_openstack()
    if cached is None:
        print("build the OpenStack cache first: scripts/build-openstack-cache.py",
              file=sys.stderr)
        return 2
    # the lab runs the installed agents: this tree's, not another checkout's meanwhile
    with _tree_turn(), _provider_installed():
        if args.whole_profile:
            return whole_profile(args, cached)
        return node_crash_rounds(args, cached)


def node_crash_rounds(args: argparse.Namespace, cached: tuple) -> int:
    registry = stack.private_registry("bench")
    lab = stack.up(stack.UpOptions(venv=cached[0], schemas=cached[1], registry=registry,
                                   service_debug=args.service_debug),
                   progress=lambda m: print(f"lab: {m}", file=sys.stderr))
    rounds = []
    try:
        for i in range(args.rounds):
            report = drill.run(LabTarget(lab), ["node-crash"],
                               work_dir=lab.cluster.dir / f"bench{i}",
                               progress=lambda m: print(f"drill: {m}", file=sys.stderr))
            r = report.scenarios[0]
            survivor = next(n for n in lab.cluster.node_names if n != r.victim)
            token = lab.cluster.token_ms / 1000.0
            detect_floor = token * 2.2
            vip_start = op_exec_seconds(lab, survivor, "vip", "start") or 0.0
            fence = fence_seconds(lab, r.victim)
            delay = 2.0 if r.victim == lab.cluster.node_names[0] else 0.0  # services.py
            vip_floor = detect_floor + delay + fence + vip_start
            rounds.append({
                "victim": r.victim, "ok": r.ok, "lost_writes": len(r.lost_writes),
                "detection_s": r.detection_s, "detection_floor_s": round(detect_floor, 2),
                "vip_s": r.vip_s, "vip_floor_s": round(vip_floor, 2),
                "galera_s": r.galera_s,
                "galera_floor_s": round(max(GALERA_SUSPECT_S, vip_floor), 2),
                "keystone_s": r.probes_s.get("keystone"),
                "keystone_floor_s": round(vip_floor, 2),
                "services_s": r.services_s, "rejoin_s": r.rejoin_s,
                "floor_parts": {"token_s": token, "consensus_s": round(token * 1.2, 2),
                                "monitor_interval_s": 0, "fence_delay_s": delay,
                                "fence_off_s": round(fence, 2),
                                "vip_start_s": vip_start},
            })
    finally:
        stack.remove_registry(registry)

    def med(key: str) -> float | None:
        vals = [r[key] for r in rounds if r[key] is not None]
        return round(statistics.median(vals), 2) if vals else None

    summary = {k: {"measured": med(f"{k}_s"), "floor": med(f"{k}_floor_s")}
               for k in ("detection", "vip", "galera", "keystone")}
    for v in summary.values():
        if v["measured"] is not None:
            v["over_floor"] = round(v["measured"] - v["floor"], 2)
            v["within_3s"] = v["over_floor"] <= 3.0
    out = {"rounds": rounds, "median": summary}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{'':<10} {'measured s':>10} {'floor s':>8} {'over':>6}  goal <= 3 s")
        for k, v in summary.items():
            print(f"{k:<10} {v['measured']!s:>10} {v['floor']!s:>8} "
                  f"{v.get('over_floor', '-')!s:>6}  {'yes' if v.get('within_3s') else 'NO'}")
        for r in rounds:
            print(f"round: victim {r['victim']}, floor parts {r['floor_parts']}")
        print(f"lost acknowledged writes: {sum(r['lost_writes'] for r in rounds)}; "
              f"rounds: {len(rounds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
