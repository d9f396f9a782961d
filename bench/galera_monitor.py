"""Monitor latency: ocf:pacestack:galera against resource-agents' ocf:heartbeat:galera
(and ocf:heartbeat:Dummy as the floor) on the same running Galera node, in one run.

Also measures the two ways of asking the local server for its wsrep status from a
fresh interpreter (the monitor is a new process every time): the mariadb client
over the socket, and importing PyMySQL. The agent uses the faster one.

Run as root from the repository: ``.venv/bin/python -m bench.galera_monitor [-n 30]``.
Prints medians in ms and the ratios; no pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pacestack.agents import install  # noqa: E402

from tests.fixtures.galera import GaleraCluster  # noqa: E402
from tests.fixtures.mariadb import MARIADBD  # noqa: E402
from tests.fixtures.ocf import PROVIDER_DIR, agent_env, make_cib  # noqa: E402

HEARTBEAT = "/usr/lib/ocf/resource.d/heartbeat"


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    rc = subprocess.run(argv, env=env, capture_output=True, cwd="/", check=False).returncode
    return (time.perf_counter() - start) * 1000, rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=30, help="monitor calls per agent")
    args = ap.parse_args()

    os.makedirs("/run/resource-agents", exist_ok=True)
    existed = (PROVIDER_DIR / "galera").exists()
    written = install.install_agents(str(PROVIDER_DIR), python=sys.executable, names=["galera"])
    cluster = GaleraCluster(1)
    node = cluster.nodes[0]
    try:
        cluster.bootstrap(0)
        # resource-agents' galera reaches the server with the mysql client and the
        # socket from the config's [client] section (it passes none itself)
        with open(node.defaults_file, "a") as fh:
            fh.write(f"[client]\nsocket = {node.socket}\n")
        cib = make_cib(Path(cluster.base_dir) / "cib.xml", [node.name])
        common = {"config": node.defaults_file, "datadir": str(node.datadir),
                  "socket": node.socket, "pid": node.pid_file, "log": node.log_error,
                  "wsrep_cluster_address": cluster.gcomm_url(),
                  "cluster_host_map": cluster.host_map()}
        ours = agent_env("galera", "monitor", {**common, "binary": MARIADBD}, cib_file=cib,
                         resource="galera", interval_ms=10000, node=node.name)
        theirs = agent_env("galera", "monitor", {**common, "binary": "/usr/bin/mysqld_safe",
                                                 "check_user": "root"},
                           cib_file=cib, resource="galera", interval_ms=10000, node=node.name)
        theirs["OCF_RESOURCE_PROVIDER"] = "heartbeat"
        # its status query passes no socket: on a controller the client default
        # (/run/mysqld/mysqld.sock) is right; here its client_binary parameter points
        # at a two-line wrapper adding our socket (costs it one extra exec of sh)
        wrapper = Path(cluster.base_dir) / "mysql-client"
        wrapper.write_text(f"#!/bin/sh\nexec /usr/bin/mariadb \"$@\" --socket={node.socket}\n")
        wrapper.chmod(0o755)
        theirs["OCF_RESKEY_client_binary"] = str(wrapper)
        dummy = agent_env("Dummy", "monitor", {"state": str(Path(cluster.base_dir) / "dummy")},
                          resource="dummy", interval_ms=10000, node=node.name)
        subprocess.run([f"{HEARTBEAT}/Dummy", "start"], env=dummy, check=True,
                       capture_output=True)
        client = [MARIADBD.replace("sbin/mariadbd", "bin/mariadb"), "--no-defaults",
                  "--user=root", f"--socket={node.socket}", "-N", "-B", "-e",
                  "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_status'"]
        pymysql = [sys.executable, "-I", "-c",
                   "import pymysql; "
                   f"c = pymysql.connect(unix_socket={node.socket!r}, user='root'); "
                   "cur = c.cursor(); cur.execute(\"SHOW GLOBAL STATUS LIKE "
                   "'wsrep_cluster_status'\"); cur.fetchall()"]
        runs = {
            "pacestack:galera": ([str(PROVIDER_DIR / "galera"), "monitor"], ours),
            "heartbeat:galera": ([f"{HEARTBEAT}/galera", "monitor"], theirs),
            "heartbeat:Dummy": ([f"{HEARTBEAT}/Dummy", "monitor"], dummy),
            "status via mariadb client": (client, dict(os.environ)),
            "status via PyMySQL": (pymysql, dict(os.environ)),
        }
        samples: dict[str, list[float]] = {k: [] for k in runs}
        codes: dict[str, set[int]] = {k: set() for k in runs}
        for _ in range(args.n):  # interleaved so machine noise hits all alike
            for name, (argv, env) in runs.items():
                ms, rc = timed(argv, env)
                samples[name].append(ms)
                codes[name].add(rc)
        med = {k: statistics.median(v) for k, v in samples.items()}
        for name in runs:
            print(f"{name:28s} median {med[name]:7.1f} ms  exit codes {sorted(codes[name])}")
        ratio = med["pacestack:galera"] / med["heartbeat:galera"]
        print(f"ratio pacestack/heartbeat galera monitor: {ratio:.2f}x (goal <= 1.0x)")
        print(f"ratio pacestack galera / Dummy: "
              f"{med['pacestack:galera'] / med['heartbeat:Dummy']:.1f}x")
        print(json.dumps({"median_ms": med, "ratio_vs_heartbeat": ratio, "n": args.n}))
        return 0
    finally:
        cluster.destroy()
        if not existed:  # remove only what this run wrote
            for path in written:
                Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
