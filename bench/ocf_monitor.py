"""Benchmark: monitor latency of ocf:pacestack:openstack-service against
resource-agents' ocf:heartbeat:anything managing the same daemon, in one run.

The daemon is a real HTTP server (python3 -m http.server on loopback) started
by openstack-service; anything is pointed at the same binary and pid file.
Three pairs, each run alternately with Pacemaker's monitor environment:

  process   pid alive (ours: pid and the kernel start time recorded at start)
  http      the same plus a health URL: ours monitor_url, anything's
            monitor_hook running curl (its documented way to check more)
  probe     the process pair as a probe (interval 0), which our sh front hands
            to the Python agent: the cost of every monitor it cannot confirm

    .venv/bin/python bench/ocf_monitor.py [--runs 60] [--json]

Prints median and p90 per agent and the ratio ours/anything (goal <= 1.0x),
the same for CPU time (user+system of the agent and what it runs, e.g. curl:
on a shared machine wall time also measures the neighbours), and the import
time of our monitor path (python -X importtime).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pacestack.agents import install

from pacestack import proc

ANYTHING = "/usr/lib/ocf/resource.d/heartbeat/anything"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pacemaker_env(resource: str, params: dict[str, str]) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "OCF_ROOT": "/usr/lib/ocf", "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1",
           "OCF_RESOURCE_INSTANCE": resource, "OCF_RESKEY_CRM_meta_interval": "10000",
           "OCF_RESKEY_CRM_meta_timeout": "20000", "HA_LOGFACILITY": "none",
           "HA_debug": "0"}
    env.update({f"OCF_RESKEY_{k}": v for k, v in params.items()})
    return env


def _children_cpu() -> float:
    # waited-for children, with what they waited for (anything's curl, our nothing)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run."""
    cpu = _children_cpu()
    started = time.perf_counter()
    rc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        cwd="/", check=False).returncode
    elapsed = time.perf_counter() - started
    if rc != 0:
        raise RuntimeError(f"{argv[0]} monitor returned {rc}")
    return elapsed, _children_cpu() - cpu


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    ordered = sorted(w for w, _c in samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2),
            "cpu_median_ms": round(statistics.median(c for _w, c in samples) * 1000, 2)}


def import_ms(env: dict[str, str]) -> float:
    """Import time of the Python monitor path (python -X importtime, the program
    the sh front hands over to): the cumulative times of the top-level imports
    from pacestack on (interpreter start-up's own imports excluded)."""
    program = install.python_program("openstack-service")
    done = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", program,
                           "monitor"], env=env, capture_output=True, text=True, check=False)
    total, counting = 0, False
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if name.startswith("  "):  # nested: already in its parent's cumulative
            continue
        counting = counting or name.strip() == "pacestack"
        if counting and cumulative.strip().isdigit():
            total += int(cumulative)
    return round(total / 1000, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pacestack-bench-ocf-"))
    provider = work / "provider"
    ours = Path(install.install_agents(str(provider), names=["openstack-service"])[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    (work / "www").mkdir()
    (work / "www" / "index.html").write_text("ok\n")
    binary = "/usr/bin/python3"  # the system's, not a wrapper (pyenv shims exec another)
    pidfile = str(work / "httpd.pid")
    params = {"binary": binary, "pid": pidfile,
              "extra_args": f"-m http.server --bind 127.0.0.1 --directory {work / 'www'} {port}",
              "log": str(work / "httpd.log")}
    start_env = pacemaker_env("httpd", params)
    rc = subprocess.run([str(ours), "start"], env=start_env, check=False).returncode
    if rc != 0:
        raise SystemExit(f"openstack-service start failed with {rc}")
    daemon_pid = proc.read_pidfile(pidfile)  # ended at the end whatever stop does
    results: dict[str, object] = {"runs": args.runs}
    try:
        pairs = {
            "process": (pacemaker_env("httpd", params),
                        pacemaker_env("httpd", {"binfile": binary, "pidfile": pidfile})),
            "http": (pacemaker_env("httpd", {**params, "monitor_url": url}),
                     pacemaker_env("httpd", {"binfile": binary, "pidfile": pidfile,
                                             "monitor_hook": f"curl -sf -o /dev/null {url}"})),
            "probe": ({**pacemaker_env("httpd", params), "OCF_RESKEY_CRM_meta_interval": "0"},
                      {**pacemaker_env("httpd", {"binfile": binary, "pidfile": pidfile}),
                       "OCF_RESKEY_CRM_meta_interval": "0"}),
        }
        for name, (ours_env, any_env) in pairs.items():
            mine: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            for _ in range(3):  # warm the page cache for both
                timed([str(ours), "monitor"], ours_env)
                timed([ANYTHING, "monitor"], any_env)
            for _ in range(args.runs):
                mine.append(timed([str(ours), "monitor"], ours_env))
                theirs.append(timed([ANYTHING, "monitor"], any_env))
            a, b = summary(mine), summary(theirs)
            results[name] = {"openstack-service": a, "anything": b,
                             "ratio": round(a["median_ms"] / b["median_ms"], 2),
                             "cpu_ratio": round(a["cpu_median_ms"] / b["cpu_median_ms"], 2)}
        results["import_ms_monitor_path"] = import_ms(pairs["process"][0])
        python_only = [timed([sys.executable, "-I", "-S", "-c", "pass"], {}) for _ in range(20)]
        results["python_startup_ms"] = summary(python_only)["median_ms"]
        results["python_startup_cpu_ms"] = summary(python_only)["cpu_median_ms"]
    finally:
        subprocess.run([str(ours), "stop"], env=start_env, check=False)
        if daemon_pid and proc.is_alive(daemon_pid):
            proc.terminate(daemon_pid, 5)
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"monitor latency, {args.runs} alternating runs each "
          "(same daemon, Pacemaker's environment)")
    for name in ("process", "http", "probe"):
        r = results[name]
        o, a = r["openstack-service"], r["anything"]
        print(f"  {name:8s} openstack-service median {o['median_ms']:6.1f} ms "
              f"p90 {o['p90_ms']:6.1f} | anything median {a['median_ms']:6.1f} ms "
              f"p90 {a['p90_ms']:6.1f} | ratio {r['ratio']:.2f}x"
              + (" (goal <= 1.0x)" if name != "probe" else " (the Python path)"))
        print(f"  {'':8s} cpu: openstack-service median {o['cpu_median_ms']:6.1f} ms | "
              f"anything median {a['cpu_median_ms']:6.1f} ms | ratio {r['cpu_ratio']:.2f}x")
    print(f"  python -I -S startup alone: {results['python_startup_ms']:.1f} ms "
          f"(cpu {results['python_startup_cpu_ms']:.1f} ms); "
          f"monitor-path imports: {results['import_ms_monitor_path']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
