"""Benchmark ``pacestack migrate rehome``: a batch with --parallel against one at a
time, in one run, on the real Compute stack (tests/fixtures/nova.py: Keystone,
Neutron, Placement, nova-api/conductor/scheduler, two nova-computes with Nova's
fake virt driver, RabbitMQ).

Two groups of imported, linuxbridge-era instances are seeded on compute01;
group A (--count) moves to compute05 with --parallel N, group B (--seq-count,
default --count) one at a time. Prints wall times, seconds per instance, the
ratio per instance, the mean seconds per instance in each step, and the CPU
seconds the stack's processes used per instance with the machine's idle share:
the whole stack shares the machine's cores, so that is what bounds --parallel.

    .venv/bin/python bench/migrate_rehome.py --count 200 --seq-count 40 --parallel 8

With --hypervisor, real guests instead (tests/migrate/test_rehome_libvirt.py: QEMU
under TCG through Nova's libvirt driver, Open vSwitch's userspace datapath): --count
guests run the linuxbridge way, rehome moves them onto br-int with --parallel N
(Neutron lost the port of the first --lost-ports of them, as in the test).
Prints seconds per instance per step and each guest's network-down time (first
lost to first answered ping, probes every 0.1 s), against a baseline measured in
the same run on the same guests: a plain ``nova reboot --hard`` of each on its new
host, the outage any reboot costs.

    .venv/bin/python bench/migrate_rehome.py --hypervisor --count 2 --parallel 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

HYPERVISOR_GUESTS = 2  # default --count with --hypervisor: each guest is a TCG QEMU


def _tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user+system) of these processes and their descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, int]] = {}  # pid -> (ppid, ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        f = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(f[1]), int(f[11]) + int(f[12]))
    wanted = set(roots)
    total = 0
    for pid, (_ppid, ticks) in stats.items():
        p, hops = pid, 0
        while p in stats and hops < 30:
            if p in wanted:
                total += ticks
                break
            p, hops = stats[p][0], hops + 1
    return total / tick


def _idle() -> tuple[float, float]:
    """(idle, total) jiffies of the machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [float(x) for x in fh.readline().split()[1:]]
    return f[3] + f[4], sum(f)


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


def _down_times(pingers: dict) -> dict[str, float | None]:
    from tests.fixtures import hypervisor as hv

    return {ip: hv.down_time(p.stop()) for ip, p in pingers.items()}


def _pingers(host, dhcp, ips: list[str], tag: str) -> dict:
    from tests.fixtures import hypervisor as hv

    out = {}
    for ip in ips:
        p = hv.Pinger(dhcp.netns, ip, host.base / f"bench-{tag}-{ip}.log")
        host.children.append(p.child)
        out[ip] = p
    return out


def _wait_all_answering(dhcp, ips: list[str], timeout: float = 300) -> None:
    from tests.migrate.test_rehome_libvirt import wait_answering

    for ip in ips:
        wait_answering(dhcp, ip, timeout)


def _fmt(v: float | None) -> str:
    return "none seen" if v is None else f"{v:.1f} s"


def main_hypervisor(args) -> int:
    from tests.fixtures import guest as guestmod
    from tests.fixtures import hypervisor as hv
    from tests.migrate import test_rehome_libvirt as lv

    count = args.count if args.count_given else HYPERVISOR_GUESTS
    venv = build.ensure_venv()
    dump = build.ensure_dump(venv, lambda: ostack.start_tmpfs_server("build"))
    guest = guestmod.ensure_guest()
    server = ostack.start_tmpfs_server("bench")
    work = Path(tempfile.mkdtemp(prefix="pacestack-bench-rehome-hv-"))
    host = stack = None
    try:
        t0 = time.monotonic()
        host = lv.start_host(work / "compute05")
        stack = lv.start_stack(host, server, venv, dump)
        print(f"hypervisor and stack started in {time.monotonic() - t0:.1f} s", flush=True)
        oc = lv.old_cloud(host, stack, guest, count)
        ips = [i["ip"] for i in oc.insts]
        print(f"{count} old guests booted at once on brq… in {oc.boot_seconds:.1f} s "
              "(to the console marker)", flush=True)
        _wait_all_answering(oc.dhcp, ips)

        for inst in oc.insts[:args.lost_ports]:  # Neutron lost these: rehome recreates
            stack.client.network("DELETE", f"/ports/{inst['port']['id']}")
        pingers = _pingers(host, oc.dhcp, ips, "rehome")
        time.sleep(1)
        for inst in oc.insts:
            host.destroy(inst["old_name"])
        follower = lv.follow_on_br_int(stack, oc)
        lv.place_guest_files(host, guest, oc.insts)
        wall, report = lv.run_rehome(stack, oc, work / "pacestack.conf", args.parallel)
        _wait_all_answering(oc.dhcp, ips)
        rehome_down = _down_times(pingers)
        results = {r["uuid"]: r for r in report["instances"]}
        print(f"rehome: {count} guests, --parallel {args.parallel}: {wall:.1f} s wall "
              f"({wall / count:.1f} s/instance)", flush=True)
        for n, inst in enumerate(oc.insts):
            r = results[inst["uuid"]]
            if r["status"] != "done":
                raise SystemExit(f"rehome of {inst['uuid']} ended {r['status']}: {r}")
            what = "port lost, recreated" if n < args.lost_ports else "no port to repair"
            print(f"  guest {inst['ip']} ({what}) s per step: " + ", ".join(
                f"{k} {v:.1f}" for k, v in (r.get("seconds") or {}).items()), flush=True)

        # the baseline: a hard reboot of the same guests where they now run
        pingers = _pingers(host, oc.dhcp, ips, "reboot")
        time.sleep(1)
        t0 = time.monotonic()
        for inst in oc.insts:
            stack.client.compute("POST", f"/servers/{inst['uuid']}/action",
                                 {"reboot": {"type": "HARD"}})
        for inst in oc.insts:
            # the API set the reboot task before answering: once it is gone the guest
            # was started again, on a console.log libvirt started afresh
            deadline = time.monotonic() + 300
            while stack.client.get(f"/servers/{inst['uuid']}")["server"][
                    "OS-EXT-STS:task_state"] is not None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"hard reboot of {inst['uuid']} did not end in 300 s")
                time.sleep(0.5)
            hv.wait_console(host.base / "instances" / inst["uuid"] / "console.log",
                            guestmod.BOOT_MARKER, 180)
        _wait_all_answering(oc.dhcp, ips)
        reboot_wall = time.monotonic() - t0
        reboot_down = _down_times(pingers)
        follower.stop()
        print(f"baseline nova reboot --hard of all {count} at once: answering again after "
              f"{reboot_wall:.1f} s", flush=True)
        for ip in ips:
            a, b = rehome_down[ip], reboot_down[ip]
            ratio = f"{a / b:.2f}x" if a is not None and b else "n/a"
            print(f"  guest {ip}: network down {_fmt(a)} in rehome, {_fmt(b)} in a hard "
                  f"reboot: ratio {ratio}", flush=True)
        return 0
    finally:
        if stack is not None:
            stack.cleanup()
            stack.cloud.drop()
        if host is not None:
            host.stop()
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=None,
                    help=f"instances per group (default 200; {HYPERVISOR_GUESTS} guests "
                    "with --hypervisor)")
    ap.add_argument("--hypervisor", action="store_true",
                    help="real guests through Nova's libvirt driver (QEMU under TCG)")
    ap.add_argument("--lost-ports", type=int, default=1,
                    help="with --hypervisor: guests whose port Neutron lost before the move "
                    "(recreated and attached on a stopped guest; the others need no repair)")
    ap.add_argument("--seq-count", type=int, default=None,
                    help="instances moved one at a time (default: --count); a smaller "
                    "sample keeps the run short, the ratio is per instance")
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    args.count_given = args.count is not None
    if args.hypervisor:
        return main_hypervisor(args)
    args.count = args.count or 200
    counts = {"par": args.count, "seq": args.seq_count or args.count}
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
        groups = {g: sd.ports(n, net, prefix=g) for g, n in counts.items()}
        sd.seed(groups["par"] + groups["seq"])
        sd.linuxbridge_era(groups["par"] + groups["seq"])
        stack.stop_compute("compute01")
        old = sd.snapshot_old_cloud()
        server.execute("UPDATE routers SET admin_state_up = 0", database=old["neutron"])
        print(f"seeded {sum(counts.values())} instances in {time.monotonic() - t0:.1f} s",
              flush=True)
        conf = work / "pacestack.conf"
        _write_conf(conf, stack, f"{stack.cloud.prefix}_pacestack", old)
        # every process of the stack, and the database server they all use
        roots = [p.pid for p in stack.procs.values()]
        roots += [api.pid for api in (stack.keystone, stack.neutron)]
        roots += [p.pid for p in (stack.rabbit.server, stack.rabbit.epmd) if p is not None]
        roots += [server.pid] if server.pid else []
        per_instance = {}
        for name, parallel in (("par", args.parallel), ("seq", 1)):
            n = counts[name]
            listing = work / f"{name}.txt"
            listing.write_text("\n".join(i["uuid"] for i in groups[name]) + "\n")
            cpu0, idle0, self0 = _tree_cpu(roots), _idle(), os.times()
            wall, s = _rehome(conf, stack.clouds_yaml, listing, parallel)
            cpu1, idle1, self1 = _tree_cpu(roots), _idle(), os.times()
            client = (self1.children_user + self1.children_system
                      - self0.children_user - self0.children_system)
            idle = (idle1[0] - idle0[0]) / max(1.0, idle1[1] - idle0[1])
            per_instance[name] = wall / n
            print(f"{name}: {n} instances, --parallel {parallel}: {wall:.1f} s wall "
                  f"({wall / n:.2f} s/instance), status {s['status']}", flush=True)
            print("  mean s per instance per step: " + ", ".join(
                f"{k} {v:.2f}" for k, v in s["step_seconds_mean"].items()), flush=True)
            print(f"  CPU s per instance: stack {(cpu1 - cpu0) / n:.2f}, pacestack "
                  f"{client / n:.2f}; stack used {(cpu1 - cpu0) / wall:.2f} of "
                  f"{os.cpu_count()} cores, machine idle {100 * idle:.0f}%", flush=True)
        ratio = per_instance["seq"] / per_instance["par"]
        print(f"ratio one-at-a-time / --parallel {args.parallel} (s per instance): "
              f"{ratio:.2f}x")
        return 0
    finally:
        if stack is not None:
            stack.cleanup()
            stack.cloud.drop()
        server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
