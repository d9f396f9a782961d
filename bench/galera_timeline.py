"""Where the seconds of a Galera recovery go, under the lab's real Pacemaker.

One lab (``pacestack lab up`` without services or fencing, the agent chosen as in
bench/galera_side_by_side.py), then the same faults in the same way: ``kill -9``
of controller01's mariadbd (``--kills`` times), controller01 power-cut and boot,
a full crash at different seqnos. After each, every node's pacemaker.log (the
agent's own messages are in it: HA_LOGFILE), mariadb error.log and garbd's log
(the arbitrator's view changes, in milliseconds) are copied into ``--out``, and a
timeline is printed: the fault, each agent action's start and run time on each
node, the arbitrator's evictions and view installs, in seconds after the measure
starts (the kill itself; a node crash starts with a second of writes, a full crash
with the rows written before each power cut).

Run as root from the repository:
``.venv/bin/python -m bench.galera_timeline [--agent pacestack|heartbeat] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacestack.cluster.lab import stack  # noqa: E402

from bench import galera_side_by_side as sbs  # noqa: E402
from tests.fixtures.ocf import _provider_installed, _tree_turn  # noqa: E402

# pacemaker.log: "Dec 06 01:12:29.444 controller01 pacemaker-execd [32] (log_execute) ..."
EXECD = re.compile(r"^\w{3} \d\d (\d\d:\d\d:\d\d\.\d{3}) \S+ +pacemaker-execd.*?"
                   r"(?:executing - rsc:galera action:(\w+)|galera (\w+) \(call \d+, PID \d+\) "
                   r"exited with status (\d+) \(execution time ([\d.]+m?s))")
# garbd.log: "2026-12-06 01:19:40.225  INFO: ..."
GARBD = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d\.\d{3}) .*?(suspecting node|forgetting|"
                   r"view\(view_id\((?:PRIM|NON_PRIM)|changed identity|discarding)")


def _seconds(hms: str, day: datetime.date) -> float:
    t = datetime.datetime.strptime(f"{day} {hms}", "%Y-%m-%d %H:%M:%S.%f")
    return t.replace(tzinfo=datetime.UTC).timestamp()


def timeline(logs: dict[str, Path], garbd: Path, start: float, end: float) -> list[str]:
    """Lines "  +S.SSS node what" between start and end (wall clock, UTC logs)."""
    day = datetime.datetime.fromtimestamp(start, datetime.UTC).date()
    events: list[tuple[float, str]] = []
    for node, path in logs.items():
        for line in path.read_text(errors="replace").splitlines():
            m = EXECD.match(line)
            if not m:
                continue
            at = _seconds(m.group(1), day)
            if start <= at <= end:
                what = (f"{m.group(2)} starts" if m.group(2) else
                        f"{m.group(3)} done rc={m.group(4)} in {m.group(5)}")
                events.append((at, f"{node:13s} {what}"))
    for line in garbd.read_text(errors="replace").splitlines():
        m = GARBD.match(line)
        if m and start <= (at := _seconds(m.group(1), day)) <= end:
            events.append((at, f"{'garbd':13s} {m.group(2).split('(')[0]}: "
                               f"{line.split('INFO:', 1)[-1].strip()[:90]}"))
    return [f"  +{at - start:6.3f} {what}" for at, what in sorted(events)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", choices=sorted(sbs.AGENTS), default="pacestack")
    ap.add_argument("--kills", type=int, default=3, help="kill -9 samples")
    ap.add_argument("--out", type=Path, default=Path("galera-timeline"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    registry = stack.private_registry("bench-timeline")
    took: dict[str, list[float]] = {"kill9": [], "returning": [], "full_crash": []}
    with _tree_turn(), _provider_installed():
        try:
            lab = stack.up(stack.UpOptions(services=False, cinder_volume=False,
                                           fencing=False, registry=registry, timeout=300,
                                           galera_agent=sbs.AGENTS[args.agent]),
                           progress=lambda m: print(f"  lab: {m}", file=sys.stderr))
            garbd = Path(lab.cluster.dir) / lab.info.arbitrator / "var_log" / "garbd.log"

            def measured(tag: str, fault) -> None:
                sbs.settle(lab)
                t0 = time.time()
                took[tag.split("-")[0]].append(fault())
                sbs.settle(lab)
                logs = {}
                for node in sbs.NODES:
                    root = lab.cluster.node(node).root
                    for src, kind in ((root.var_log_pacemaker / "pacemaker.log", "pacemaker"),
                                      (root.var_log_mysql / "error.log", "mariadb")):
                        shutil.copy(src, args.out / f"{tag}.{node}.{kind}.log")
                    logs[node] = args.out / f"{tag}.{node}.pacemaker.log"
                shutil.copy(garbd, args.out / f"{tag}.garbd.log")
                print(f"{tag}: {took[tag.split('-')[0]][-1]:.2f}s")
                print("\n".join(timeline(logs, args.out / f"{tag}.garbd.log", t0,
                                         time.time())))

            for i in range(args.kills):
                measured(f"kill9-{i + 1}", lambda: sbs.kill9_alone(lab))
            measured("returning", lambda: sbs.node_crash(lab)[1])
            measured("full_crash", lambda: sbs.full_crash(lab, 0))
        finally:
            stack.remove_registry(registry)
    print(json.dumps(took))
    return 0


if __name__ == "__main__":
    sys.exit(main())
