"""IST join time: wsrep_sst_method=rsync against pacestack_rsync, in one run.

A 2-node Galera cluster on loopback (tests/fixtures/galera.py). Each round stops
node2, commits rows on node1 and starts node2 again, timed from the start until
node2 is Synced; the joiner's method alternates between the two every round (the
donor runs what the joiner asks for), so both see the same load. From the joiner's
log, the SST script's own phases (its WSREP_SST lines carry milliseconds):

  script   "SST started on joiner" .. "Joiner cleanup done." (mariadbd takes the
           result only when the script has exited)
  wait     .. "Galera co-ords from recovery" (ready, then the poll for the donor's
           magic file)
  cleanup  "Joiner cleanup:" .. "Joiner cleanup done." (its rsync daemon's exit)

Run as root from the repository: ``.venv/bin/python -m bench.galera_join [-n 8]``.
Prints medians and ranges in seconds, and pacestack_rsync / rsync ratios of the
medians; no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacestack.agents.galera_mysqld import SST_METHOD, sst_env  # noqa: E402

from tests.fixtures.galera import GaleraCluster  # noqa: E402

METHODS = ("rsync", SST_METHOD)
STAMP = re.compile(r"WSREP_SST: \[\w+\] (.*) \((\d{8} \d\d:\d\d:\d\d\.\d{3})\)$")


def phases(log: str) -> dict[str, float]:
    """The joiner script's phases (seconds) in the latest run of this log."""
    text = log[max(log.rfind("] Starting MariaDB "), 0):]
    at: dict[str, float] = {}
    for line in text.splitlines():
        m = STAMP.search(line)
        if not m:
            continue
        t = datetime.strptime(m.group(2), "%Y%m%d %H:%M:%S.%f").timestamp()
        msg = m.group(1)
        for key, prefix in (("start", "rsync SST started on joiner"),
                            ("coords", "Galera co-ords from recovery"),
                            ("cleanup", "Joiner cleanup:"), ("done", "Joiner cleanup done.")):
            if msg.startswith(prefix):
                at.setdefault(key, t)
    if len(at) < 4:
        return {}
    return {"script": at["done"] - at["start"], "wait": at["coords"] - at["start"],
            "cleanup": at["done"] - at["cleanup"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=8, help="joins per method")
    ap.add_argument("--rows", type=int, default=50, help="rows committed while node2 is down")
    args = ap.parse_args()

    os.environ["PATH"] = sst_env(os.environ)["PATH"]  # mariadbd finds the method's script
    cluster = GaleraCluster(2, extra_config={"wsrep_sst_method": "rsync"})
    results: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    try:
        cluster.start_all()
        joiner = cluster["node2"]
        next_id = 1
        for i in range(args.n * 2):
            method = METHODS[i % 2]
            cluster.stop("node2")
            cluster.write_rows("node1", "bench", next_id, args.rows)
            next_id += args.rows
            cluster.extra_config["wsrep_sst_method"] = method
            started = time.monotonic()
            cluster.start("node2")
            took = time.monotonic() - started
            kind = joiner.ist_or_sst()
            if kind != "IST":
                raise SystemExit(f"round {i}: {method} joined by {kind or 'no transfer'}")
            row = {"join": took, **phases(Path(joiner.log_error).read_text(errors="replace"))}
            for key, value in row.items():
                results[method].setdefault(key, []).append(value)
            print(f"{method:16} " + " ".join(f"{k} {v:.2f}" for k, v in row.items()),
                  flush=True)
        if len(cluster.rows("node2", "bench")) != next_id - 1:
            raise SystemExit("node2 is missing rows")
    finally:
        cluster.destroy()

    print(f"\nIST joins, {args.n} per method, seconds: median [min-max]")
    base = results["rsync"]
    for key in ("join", "script", "wait", "cleanup"):
        cells = []
        for method in METHODS:
            values = results[method].get(key, [])
            cells.append(f"{method} {statistics.median(values):.2f} "
                         f"[{min(values):.2f}-{max(values):.2f}]" if values else f"{method} -")
        ours, theirs = results[SST_METHOD].get(key), base.get(key)
        ratio = (f"ratio {statistics.median(ours) / statistics.median(theirs):.2f}"
                 if ours and theirs else "")
        print(f"{key:8} " + "  ".join(cells) + f"  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
