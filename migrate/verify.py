"""verify: each step's invariants on the databases, then the projects' own checks.

Invariants are set-based queries that must return no row (a row is a finding
naming it). The projects' own checks run as subprocesses with the OpenStack
installation's interpreter and tools, never imported here: pacestack does not
depend on nova or neutron, and their import side effects stay out of our process.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
from collections.abc import Callable

from pacestack.migrate import cinder, keystone, neutron, nova
from pacestack.migrate import residue as residuemod
from pacestack.migrate.model import STEPS

from pacestack import codes
from pacestack.findings import Finding

# checks that talk to a running service (an API, OVN): not judged by verify
NEEDS_SERVICE = {
    ("nova-status", "Placement API"),
    ("neutron-status", "OVN support for BM provisioning over IPv6 check"),
}

# oslo.upgradecheck exit codes
UPGRADE_CHECK = {0: "success", 1: "warning", 2: "failure"}


# each step's own invariants (a step not run is not checked)
_INVARIANTS = {"keystone": keystone.invariants, "neutron": neutron.invariants,
               "cinder": cinder.invariants, "nova": nova.invariants}


def invariants(cloud, mapping, only: list[str] | None = None) -> list[Finding]:
    """Every invariant of the steps run (all of them by default), in step order."""
    wanted = only or STEPS
    out: list[Finding] = []
    for step in STEPS:
        if step in wanted:
            out.extend(_INVARIANTS[step](cloud, mapping))
    return out


def residue(cloud, mapping) -> list[Finding]:
    """Every live row still naming an old name that no rule keeps: an error each column
    (RESIDUE_UNCOVERED, as plan refuses them); what rules keep, one info line each."""
    acc = residuemod.account(cloud, mapping)
    out = list(acc.refusals)
    for e in acc.entries:
        if e.outcome == "kept":
            out.append(codes.RESIDUE_KEPT(e.where, rows=e.rows, rule=e.by))
    out.append(codes.RESIDUE_SCANNED("old names", columns=acc.columns_scanned,
                                     databases=len(acc.databases), names=len(acc.names),
                                     uncovered=sum(e.rows for e in acc.uncovered)))
    return out


def parse_checks(stdout: str) -> list[tuple[str, str, str]]:
    """(check name, result, details) rows from oslo.upgradecheck's table output."""
    out: list[list[str]] = []
    field = None
    for line in stdout.splitlines():
        text = line.strip().strip("|").strip()
        if text.startswith("Check:"):
            out.append([text[6:].strip(), "", ""])
            field = 0
        elif out and text.startswith("Result:"):
            out[-1][1] = text[7:].strip()
            field = 1
        elif out and text.startswith("Details:"):
            out[-1][2] = text[8:].strip()
            field = 2
        elif out and text and not text.startswith("+") and field in (0, 2):
            out[-1][field] += " " + text
    return [(n.strip(), r, " ".join(d.split())) for n, r, d in out]


def run_upstream_check(argv: list[str], timeout: int, env: dict | None = None) -> list[Finding]:
    """One `*-status upgrade check`: a finding per check, named by the check."""
    name = os.path.basename(argv[0])
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                           check=False)
    except FileNotFoundError:
        return [codes.UPSTREAM_CHECK_MISSING(name, program=argv[0])]
    except OSError as exc:
        return [codes.UPSTREAM_CHECK_ERROR(
            name, error=f"{argv[0]}: {exc.strerror or type(exc).__name__}")]
    except subprocess.TimeoutExpired:
        return [codes.UPSTREAM_CHECK_TIMEOUT(name, check=name, seconds=f"{timeout:g}")]
    checks = parse_checks(p.stdout)
    if p.returncode not in UPGRADE_CHECK or not checks:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return [codes.UPSTREAM_CHECK_ERROR(
            name, error=f"{name} exited {p.returncode}: {' '.join(last.split())[:300]}")]
    out = []
    for check, result, details in checks:
        subject = f"{name}: {check}"
        if (name, check) in NEEDS_SERVICE and result != "Success":
            out.append(codes.UPSTREAM_CHECK_NEEDS_SERVICE(subject, details=details[:200]))
        elif result == "Success":
            out.append(codes.UPSTREAM_CHECK_OK(subject))
        elif result == "Warning":
            out.append(codes.UPSTREAM_CHECK_WARNING(subject, details=details[:300]))
        else:
            out.append(codes.UPSTREAM_CHECK_FAILURE(subject, result=result,
                                                    details=details[:300]))
    return out


# nova's own objects read the moved instances back (run with nova's interpreter)
_NOVA_READBACK = r"""
import json, sys
from nova import config, context, objects
from nova.network import os_vif_util
import os_vif
os_vif.objects.register_all()
config.parse_args(["pacestack-verify", "--config-file", sys.argv[1]])
objects.register_all()
ctx = context.get_admin_context()
out = []
for u in json.loads(sys.stdin.read()):
    inst = objects.Instance.get_by_uuid(ctx, u, expected_attrs=["info_cache"])
    vifs = []
    for vif in inst.info_cache.network_info:
        osvif = os_vif_util.nova_to_osvif_vif(vif)  # raises for VIFs nova cannot plug
        vifs.append({"id": vif["id"], "type": vif["type"], "devname": vif["devname"],
                     "mtu": vif["network"]["meta"].get("mtu"),
                     "os_vif": type(osvif).__name__ if osvif else None})
    out.append({"uuid": u, "host": inst.host, "node": inst.node,
                "compute_id": inst.compute_id, "vifs": vifs})
print(json.dumps(out))
"""


def nova_readback(python: str, nova_conf: str, uuids: list[str],
                  timeout: int = 300) -> tuple[list[dict] | None, str]:
    try:
        p = subprocess.run([python, "-c", _NOVA_READBACK, nova_conf], input=json.dumps(uuids),
                           capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{python}: {type(exc).__name__}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return None, last
    # the last line must be the script's JSON: anything else means that interpreter
    # is not running our script against nova (a wrapper, another nova, a warning)
    try:
        rows = json.loads((p.stdout.strip().splitlines() or [""])[-1])
    except ValueError:
        rows = None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "uuid" in r
                                             for r in rows):
        shown = " ".join(p.stdout.split())[-120:] or "nothing"
        return None, f"{python} printed {shown!r}, not nova's read-back of the instances"
    if sorted(r["uuid"] for r in rows) != sorted(uuids):
        return None, f"nova read back {len(rows)} of {len(uuids)} moved instances"
    return rows, ""


def upstream_checks(bin_dir: str, files: dict[str, str], timeout: int,
                    only: list[str] | None = None,
                    runner: Callable[[list[str], int], list[Finding]] = run_upstream_check
                    ) -> list[Finding]:
    """The projects' own upgrade checks, run side by side (each spends ~10 s importing)."""
    steps = only or STEPS
    argvs = []
    if "neutron" in steps:
        argvs.append([os.path.join(bin_dir, "neutron-status"), "--config-file",
                      files["neutron"], "--config-file", files["ml2"], "upgrade", "check"])
    if "cinder" in steps:
        argvs.append([os.path.join(bin_dir, "cinder-status"), "--config-file",
                      files["cinder"], "upgrade", "check"])
    if "nova" in steps:
        argvs.append([os.path.join(bin_dir, "nova-status"), "--config-file", files["nova"],
                      "upgrade", "check"])
        argvs.append([os.path.join(bin_dir, "placement-status"), "--config-file",
                      files["placement"], "upgrade", "check"])
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(argvs))) as pool:
        results = list(pool.map(lambda a: runner(a, timeout), argvs))
    return [f for r in results for f in r]
