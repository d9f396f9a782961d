"""Benchmark ``pacestack migrate rehome``: a batch with --parallel against one at a
time, in one run, on the real Compute stack (tests/fixtures/nova.py: Keystone,
Neutron, Placement, nova-api/conductor/scheduler, two nova-computes with Nova's
fake virt driver, RabbitMQ).

Two equal groups of imported, linuxbridge-era instances are seeded on compute01;
group A moves to compute05 with --parallel N, group B one at a time. Prints wall
times, the ratio, and the mean seconds per instance in each step.

    .venv/bin/python bench/migrate_rehome.py --count 200 --parallel 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures import openstack as ostack  # noqa: E402
from tests.fixtures import openstack_build as build  # noqa: E402
from tests.fixtures.nova import Seeder, start_stack  # noqa: E402
from tests.migrate.test_rehome import PACESTACK, _write_conf  # noqa: E402


def _rehome(conf: Path, clouds: Path, listing: Path, parallel: int) -> tuple[float, dict]:
    argv = [PACESTACK, "--config-file", str(conf), "migrate", "rehome",
            "--from-file", str(listing), "--to-host", "compute05", "--parallel", str(parallel),
            "--mtu", "1422", "--format", "json"]
    t0 = time.monotonic()
    r = subprocess.run(argv, env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)},
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"rehome failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return wall, json.loads(r.stdout)["summary"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="instances per group")
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    venv = build.ensure_venv()
    dump = build.ensure_dump(venv, lambda: ostack.start_tmpfs_server("build"))
    server = ostack.start_tmpfs_server("bench")
    stack = None
    work = Path(tempfile.mkdtemp(prefix="pacestack-bench-rehome-"))
    try:
        t0 = time.monotonic()
        stack = start_stack(server, venv, dump)
        print(f"stack started in {time.monotonic() - t0:.1f} s: {json.dumps(stack.timings)}",
              flush=True)
        sd = Seeder(stack)
        net = sd.network("bench", "10.40.0.0/20")
        t0 = time.monotonic()
        groups = {g: sd.ports(args.count, net, prefix=g) for g in ("par", "seq")}
        sd.seed(groups["par"] + groups["seq"])
        sd.linuxbridge_era(groups["par"] + groups["seq"])
        stack.stop_compute("compute01")
        old = sd.snapshot_old_cloud()
        server.execute("UPDATE routers SET admin_state_up = 0", database=old["neutron"])
        print(f"seeded {2 * args.count} instances in {time.monotonic() - t0:.1f} s", flush=True)
        conf = work / "pacestack.conf"
        _write_conf(conf, stack, f"{stack.cloud.prefix}_pacestack", old)
        results = {}
        for name, parallel in (("par", args.parallel), ("seq", 1)):
            listing = work / f"{name}.txt"
            listing.write_text("\n".join(i["uuid"] for i in groups[name]) + "\n")
            results[name] = _rehome(conf, stack.clouds_yaml, listing, parallel)
            wall, s = results[name]
            print(f"{name}: {args.count} instances, --parallel {parallel}: {wall:.1f} s wall "
                  f"({wall / args.count:.2f} s/instance), status {s['status']}", flush=True)
            print("  mean s per instance per step: " + ", ".join(
                f"{k} {v:.2f}" for k, v in s["step_seconds_mean"].items()), flush=True)
        ratio = results["seq"][0] / results["par"][0]
        print(f"ratio one-at-a-time / --parallel {args.parallel}: {ratio:.2f}x")
        return 0
    finally:
        if stack is not None:
            stack.cleanup()
            stack.cloud.drop()
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
