#!/usr/bin/env python3
"""`make demo`: the whole rehearsal on this machine (root, Debian 12), ~6 min warm.

1. the OpenStack venv, the projects' synced schemas and Glance's venv (cached under
   $PACESTACK_CACHE; ~5 min cold);
2. `pacestack lab up --whole-profile`: controller01 + controller02 + arbitrator in
   namespaces, Galera, the VIP controller.domain and every service of the controller
   profile (memcached, RabbitMQ, Keystone, Glance, Placement, Nova, Neutron with its
   agents, Cinder) by `cluster apply`, nova-compute on the arbitrator;
3. the seed's old cloud loaded into the lab's Galera (the real schemas with the
   seed's linuxbridge-era data: flat and VLAN networks, volumes on old-control,
   instances on an old compute host);
4. `pacestack migrate plan` / `apply` / `verify` with the seed's mapping, through
   `pacestack lab exec controller01` with the migrate config `lab up` wrote; then
   `nova-manage cell_v2 update_cell`: cell1 on the new cloud's RabbitMQ;
5. one drill on that cutover: controller01 crashed under a writer committing through
   the VIP and the cloud-level probe (network, port, server on the lab's compute,
   volume attached, images listed) running through the lab's APIs;
6. the summary, and `pacestack lab down`.

Run from the source tree (the seed data builder lives in tests/migrate/).
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = Path(sys.executable)
PACESTACK = str(PY.with_name("pacestack"))

SEED = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
import pymysql
from tests.migrate import seed_cloud
from pacestack.migrate import tables
conn = pymysql.connect(host="127.0.0.1", user="pacestack_lab",
                       password=open(sys.argv[2]).read().strip())
seed = seed_cloud.build_seed(conn, {s: s for s in tables.SERVICE_DATABASES})
with open(sys.argv[3], "w") as fh:
    json.dump(dataclasses.asdict(seed), fh)
print(f"{len(seed.networks)} networks, {len(seed.segments)} segments, "
      f"{len(seed.instances)} instances, {len(seed.ports)} ports, {len(seed.volumes)} volumes")
"""


def step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.monotonic()


def sh(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, **kw)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root (make demo)", file=sys.stderr)
        return 2
    summary: list[tuple[str, str]] = []
    t_all = time.monotonic()

    t = step("OpenStack venv and schemas, Glance's venv (cached under $PACESTACK_CACHE)")
    res = sh([str(PY), str(REPO / "scripts" / "build-openstack-cache.py")],
             capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return 1
    cache = json.loads(res.stdout)
    venv, schemas = Path(cache["venv"]), Path(cache["dump"]).parent
    # lab up finds Glance's venv under $PACESTACK_CACHE, where the script built it
    summary.append(("OpenStack cache", f"{time.monotonic() - t:.0f} s"))

    sys.path.insert(0, str(REPO))
    from tests.fixtures.ocf import _provider_installed, _tree_turn

    # the lab runs the installed agents: this tree's, not another checkout's meanwhile
    # (on a shared machine this waits for other checkouts' tests to end)
    t = time.monotonic()
    with _tree_turn(), _provider_installed():
        summary.append(("agents installed", f"{time.monotonic() - t:.0f} s"))
        return _lab(venv, schemas, summary, t_all)


def _lab(venv: Path, schemas: Path, summary: list[tuple[str, str]], t_all: float) -> int:
    t = step("pacestack lab up --whole-profile")
    res = sh([PACESTACK, "lab", "up", "--whole-profile", "--openstack-venv", str(venv),
              "--sample-schemas", str(schemas)])
    if res.returncode != 0:
        return res.returncode
    summary.append(("lab up", f"{time.monotonic() - t:.0f} s"))
    try:
        return _rehearse(summary, t_all)
    finally:
        step("pacestack lab down")
        sh([PACESTACK, "lab", "down"])


def _rehearse(summary: list[tuple[str, str]], t_all: float) -> int:
    from pacestack.cluster.lab import services, stack

    from tests.migrate import seed_cloud

    lab = stack.Lab.find()
    c1 = lab.cluster.nodes[0]
    work = lab.cluster.dir / "demo"
    work.mkdir(mode=0o700)

    t = step("the seed's old cloud into the lab's Galera (real schemas, seed data)")
    # the seed brings the free VLAN/VXLAN rows its ml2_conf.ini implies (what its
    # neutron-server wrote at start); the lab's neutron-server wrote its own
    lab.sql("DELETE FROM neutron.ml2_vlan_allocations WHERE allocated = 0;\n"
            "DELETE FROM neutron.ml2_vxlan_allocations WHERE allocated = 0;\n")
    seed_json = work / "seed.json"
    res = c1.run([str(PY), "-c", SEED, str(REPO), lab.info.db_password_file, str(seed_json)],
                 check=False, timeout=300)
    print(res.stdout.strip() or res.stderr[-2000:])
    if res.returncode != 0:
        return 1
    summary.append(("old cloud loaded", res.stdout.strip()))
    # the lab registered its own image service on plain HTTP; the old cloud's, on https,
    # would stand beside it in the catalog and a client picks either: the new cloud keeps
    # the lab's (the old cloud's other entries name the same URLs once migrated)
    image = seed_cloud.uid("svc/image").replace("-", "")
    lab.sql(f"DELETE FROM keystone.endpoint WHERE service_id = '{image}';\n"  # noqa: S608
            f"DELETE FROM keystone.service WHERE id = '{image}';\n")  # noqa: S608

    # the new cloud's ML2 ranges are the seed's (what the mapping migrates into): the
    # lab's neutron-servers read them when the drill restarts them, migrate verify's
    # neutron-status too
    ml2 = configparser.ConfigParser()
    ml2.read_string(seed_cloud.ML2_CONF)
    ml2["ml2"]["extension_drivers"] = services.ML2_CONF["ml2"]["extension_drivers"]
    with open(Path(lab.info.config_dir) / "ml2_conf.ini", "w", encoding="utf-8") as fh:
        ml2.write(fh)
    mapping = REPO / "examples" / "seed-mapping.conf"
    # what an operator runs: the migrate config lab up wrote, inside a lab node
    migrate = [PACESTACK, "lab", "exec", c1.name, "--", PACESTACK, "--config-file",
               str(lab.info.migrate_config), "migrate"]
    for verb in ("plan", "apply", "verify"):
        t = step(f"pacestack lab exec {c1.name} -- pacestack migrate {verb} "
                 f"--mapping {mapping.name}")
        res = sh([*migrate, verb, "--mapping", str(mapping)], capture_output=True, text=True,
                 timeout=900)
        text = res.stdout.strip().splitlines()
        print("\n".join(text[-25:]) if text else res.stderr[-2000:])
        if res.returncode != 0:
            print(res.stderr.strip()[-2000:], file=sys.stderr)
            summary.append((f"migrate {verb}", f"FAILED (exit {res.returncode})"))
            if verb != "verify":
                _print_summary(summary, t_all)
                return 1
        else:
            summary.append((f"migrate {verb}", f"ok, {time.monotonic() - t:.0f} s"))

    # migrate moved cell1's transport_url to the new host with the old cloud's RabbitMQ
    # user and password in it; the new cloud's are in its nova.conf, where nova-manage
    # takes them from (no password in argv)
    t = step("nova-manage cell_v2 update_cell: cell1 on the new cloud's RabbitMQ")
    cell = lab.sql("SELECT uuid FROM nova_api.cell_mappings WHERE name = 'cell1';").strip()
    res = c1.run([str(Path(str(lab.info.venv)) / "bin" / "nova-manage"), "--config-file",
                  str(Path(str(lab.info.config_dir)) / "nova.conf"), "cell_v2", "update_cell",
                  "--cell_uuid", cell], check=False, timeout=180)
    if res.returncode != 0:
        print(res.stderr.strip()[-2000:], file=sys.stderr)
    summary.append(("cell1 transport_url", f"ok, {time.monotonic() - t:.0f} s"
                    if res.returncode == 0 else f"FAILED (exit {res.returncode})"))

    # the lab's own services run the migrated cloud: the drill's cloud probe (a network,
    # a port, a server on the lab's compute, a volume attached, images listed through
    # the VIP) is the new cloud's smoke, through a node crash
    t = step("pacestack cluster drill --scenarios node-crash (with the cloud-level probe)")
    res = sh([PACESTACK, "cluster", "drill", "--scenarios", "node-crash", "--timeout", "240"])
    summary.append(("drill node-crash", f"ok, {time.monotonic() - t:.0f} s"
                    if res.returncode == 0 else "FAILED"))
    _print_summary(summary, t_all)
    return 0 if all("FAILED" not in v for _, v in summary) else 1


def _print_summary(summary: list[tuple[str, str]], t_all: float) -> None:
    print("\n=== summary")
    for name, value in summary:
        print(f"{name:<20} {value}")
    print(f"{'total':<20} {time.monotonic() - t_all:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
