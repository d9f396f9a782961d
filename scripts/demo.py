#!/usr/bin/env python3
"""`make demo`: the whole rehearsal on this machine (root, Debian 12), a few minutes.

1. the OpenStack venv and the projects' synced schemas (cached; ~3 min cold);
2. `pacestack lab up`: controller01 + controller02 + arbitrator in namespaces, Galera,
   the VIP controller.domain, Keystone and the Neutron API, all by `cluster apply`;
3. the seed's old cloud loaded into the lab's Galera (the real schemas with the
   seed's linuxbridge-era data: flat and VLAN networks, volumes on old-control,
   instances on an old compute host);
4. `pacestack migrate plan` / `apply` / `verify` with the seed's mapping, on controller01;
   then the new cloud's smoke (tests/migrate/test_new_cloud.py) on that cutover: the
   new side's services started inside controller01 on the lab's databases;
5. one drill: controller01 crashed under a writer committing through the VIP;
6. the summary, and `pacestack lab down`.

Run from the source tree (the seed data builder lives in tests/migrate/).
"""

from __future__ import annotations

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

    t = step("OpenStack venv and schemas (cached under $PACESTACK_CACHE)")
    res = sh([str(PY), str(REPO / "scripts" / "build-openstack-cache.py")],
             capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
        return 1
    cache = json.loads(res.stdout)
    venv, schemas = Path(cache["venv"]), Path(cache["dump"]).parent
    summary.append(("OpenStack cache", f"{time.monotonic() - t:.0f} s"))

    t = step("pacestack lab up")
    res = sh([PACESTACK, "lab", "up", "--openstack-venv", str(venv),
              "--sample-schemas", str(schemas)])
    if res.returncode != 0:
        return res.returncode
    summary.append(("lab up", f"{time.monotonic() - t:.0f} s"))
    try:
        return _rehearse(venv, schemas, summary, t_all)
    finally:
        step("pacestack lab down")
        sh([PACESTACK, "lab", "down"])


def _rehearse(venv: Path, schemas: Path, summary: list[tuple[str, str]], t_all: float) -> int:
    sys.path.insert(0, str(REPO))
    from pacestack.cluster.lab import stack

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

    cfg = Path(lab.info.config_dir)
    ml2 = work / "ml2_conf.ini"
    ml2.write_text(seed_cloud.ML2_CONF, encoding="utf-8")
    # the new cloud's neutron-status (migrate verify) reads the same ranges
    (cfg / "ml2_conf.ini").write_text(seed_cloud.ML2_CONF, encoding="utf-8")
    with open(cfg / "nova.conf", "a", encoding="utf-8") as fh:
        fh.write("\n[service_user]\nsend_service_user_token = true\n")
    mapping = REPO / "examples" / "seed-mapping.conf"
    conf = work / "pacestack.conf"
    lines = ["[openstack]"] + [f"{k}_config = {cfg / f'{k}.conf'}" for k in
                               ("keystone", "neutron", "cinder", "nova", "placement")]
    lines += [f"ml2_config = {ml2}", "[migrate]", "journal_database = pacestack_journal",
              f"openstack_bin_dir = {venv / 'bin'}", f"openstack_python = {venv / 'bin/python'}"]
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")

    migrate = [PACESTACK, "--config-file", str(conf), "migrate"]
    for verb in ("plan", "apply", "verify"):
        t = step(f"pacestack migrate {verb} --mapping {mapping.name} (on controller01)")
        res = c1.run([*migrate, verb, "--mapping", str(mapping)], check=False, timeout=900)
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

    t = step("the new cloud started on this cutover (tests/migrate/test_new_cloud.py)")
    # inside controller01, where the lab's Galera member answers on 127.0.0.1; the
    # smoke's services get config files of their own, the lab's stay as they are
    spec = work / "new-cloud.json"
    spec.write_text(json.dumps({
        "seed": json.loads(seed_json.read_text()), "conf": str(conf),
        "mapping": str(mapping), "ml2": str(ml2), "journal": "pacestack_journal",
        "venv": str(venv), "schemas": str(schemas), "db_user": "pacestack_lab",
        "db_password_file": lab.info.db_password_file, "keys_dir": str(cfg)}))
    res = c1.run(["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(REPO), str(PY),
                  "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                  "tests/migrate/test_new_cloud.py"],
                 env={"PACESTACK_NEW_CLOUD_LAB": str(spec)}, check=False, timeout=900)
    lines = res.stdout.strip().splitlines()
    print("\n".join([ln for ln in lines if ln.startswith("new cloud smoke timings")]
                    + lines[-1:]))
    if res.returncode != 0:
        print("\n".join(lines[-40:]) + res.stderr[-2000:], file=sys.stderr)
    summary.append(("new cloud smoke", f"ok, {time.monotonic() - t:.0f} s" if res.returncode == 0
                    else f"FAILED (exit {res.returncode})"))

    t = step("pacestack cluster drill --scenarios node-crash")
    res = sh([PACESTACK, "cluster", "drill", "--scenarios", "node-crash"])
    summary.append(("drill node-crash", "ok" if res.returncode == 0 else "FAILED"))
    _print_summary(summary, t_all)
    return 0 if all("FAILED" not in v for _, v in summary) else 1


def _print_summary(summary: list[tuple[str, str]], t_all: float) -> None:
    print("\n=== summary")
    for name, value in summary:
        print(f"{name:<20} {value}")
    print(f"{'total':<20} {time.monotonic() - t_all:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
