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
from urllib.parse import urlsplit

from pacestack.migrate import neutron
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


def _inv(cloud, out: list[Finding], code: codes.Code, what: str, sql: str, args=None,
         limit: int = 5) -> None:
    rows = cloud.rows(sql, args)
    for r in rows[:limit]:
        out.append(code(what, check=what, row=", ".join(f"{k}={v}" for k, v in r.items())))
    if len(rows) > limit:
        out.append(code(what, check=what, row=f"{len(rows) - limit} more rows"))


def url_hosts(url: str | None) -> list[str]:
    """The host names of a URL that may list several hosts (rabbit://u:p@h1:5672,u:p@h2/),
    lower case."""
    if not url or "://" not in url:
        return []
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    hosts = []
    for part in netloc.split(","):
        part = part.rsplit("@", 1)[-1]
        host = part[1:part.find("]")] if part.startswith("[") else part.split(":")[0]
        if host:
            hosts.append(host.lower())
    return hosts


def _cells_on_old_hosts(cloud, out: list[Finding], old: set[str]) -> None:
    """A cell mapping still naming the old controller: the new conductor and API would
    send that cell's RPC to a message bus (or read a database) that is gone. The URLs
    hold passwords: findings name the cell and the host only."""
    for r in cloud.rows("SELECT uuid, name, transport_url, database_connection "
                        "FROM {nova_api.cell_mappings}"):
        for column, option in (("transport_url", "--transport-url"),
                               ("database_connection", "--database_connection")):
            hosts = [h for h in url_hosts(r[column]) if h in old]
            if hosts:
                out.append(codes.CELL_OLD_HOST(
                    f"nova-manage cell_v2 update_cell --cell_uuid {r['uuid']} {option} ...",
                    cell=str(r["name"] or r["uuid"]), column=column, host=hosts[0]))


def _keystone_invariants(cloud, mapping, out: list[Finding]) -> None:
    """No endpoint URL names a host the mapping moves endpoints away from."""
    if not mapping.endpoints:
        return
    for r in cloud.rows("SELECT id, url FROM {keystone.endpoint}"):
        try:
            host = (urlsplit(r["url"]).hostname or "").lower()
        except ValueError:
            continue
        if host in mapping.endpoints:
            out.append(codes.ENDPOINT_OLD_HOST(f"keystone.endpoint id={r['id']}", host=host))


def _neutron_invariants(cloud, mapping, out: list[Finding]) -> None:
    """Every segment holds its allocation and no allocation is orphaned, no segmentation
    id is used twice, no binding or agent is linuxbridge's, no binding names an old host."""
    old_hosts = tuple(mapping.hosts) or ("",)
    _inv(cloud, out, codes.SEGMENT_NOT_ALLOCATED, "vlan segment without allocated VLAN row",
         "SELECT s.id, s.physical_network, s.segmentation_id FROM {neutron.networksegments} s "
         "LEFT JOIN {neutron.ml2_vlan_allocations} a ON a.physical_network = "
         "s.physical_network AND a.vlan_id = s.segmentation_id AND a.allocated = 1 "
         "WHERE s.network_type = 'vlan' AND a.vlan_id IS NULL")
    _inv(cloud, out, codes.SEGMENT_NOT_ALLOCATED, "vxlan segment without allocated VNI row",
         "SELECT s.id, s.segmentation_id FROM {neutron.networksegments} s "
         "LEFT JOIN {neutron.ml2_vxlan_allocations} a ON a.vxlan_vni = s.segmentation_id "
         "AND a.allocated = 1 WHERE s.network_type = 'vxlan' AND a.vxlan_vni IS NULL")
    _inv(cloud, out, codes.ALLOCATION_LEAKED, "VLAN marked allocated with no segment",
         "SELECT a.physical_network, a.vlan_id FROM {neutron.ml2_vlan_allocations} a "
         "LEFT JOIN {neutron.networksegments} s ON s.network_type = 'vlan' AND "
         "s.physical_network = a.physical_network AND s.segmentation_id = a.vlan_id "
         "WHERE a.allocated = 1 AND s.id IS NULL")
    _inv(cloud, out, codes.ALLOCATION_LEAKED, "VNI marked allocated with no segment",
         "SELECT a.vxlan_vni FROM {neutron.ml2_vxlan_allocations} a "
         "LEFT JOIN {neutron.networksegments} s ON s.network_type = 'vxlan' AND "
         "s.segmentation_id = a.vxlan_vni WHERE a.allocated = 1 AND s.id IS NULL")
    _inv(cloud, out, codes.SEGMENT_DUPLICATE, "segmentation id used twice",
         "SELECT network_type, physical_network, segmentation_id, COUNT(*) AS n "
         "FROM {neutron.networksegments} WHERE segmentation_id IS NOT NULL "
         "GROUP BY network_type, physical_network, segmentation_id HAVING n > 1")
    _inv(cloud, out, codes.BINDING_LINUXBRIDGE, "port binding still linuxbridge",
         "SELECT port_id, host FROM {neutron.ml2_port_bindings} WHERE vif_type = %s",
         [neutron.VIF_TYPE_BRIDGE])
    _inv(cloud, out, codes.BINDING_LINUXBRIDGE, "binding level still linuxbridge",
         "SELECT port_id, host FROM {neutron.ml2_port_binding_levels} WHERE driver = %s",
         ["linuxbridge"])
    _inv(cloud, out, codes.BINDING_OLD_HOST, "port binding on an old host",
         "SELECT port_id, host FROM {neutron.ml2_port_bindings} WHERE host IN %s",
         [old_hosts])
    _inv(cloud, out, codes.AGENT_STALE, "linuxbridge agent left",
         "SELECT id, host FROM {neutron.agents} WHERE agent_type = %s",
         [neutron.LINUXBRIDGE_AGENT])


def _cinder_invariants(cloud, mapping, out: list[Finding]) -> None:
    """No live volume, group, service or backup on an old host; every live service
    versioned; no volume pointing at a retired service."""
    old_hosts = tuple(mapping.hosts) or ("",)
    _inv(cloud, out, codes.CINDER_OLD_HOST, "live cinder volume on an old host",
         "SELECT id, host FROM {cinder.volumes} WHERE deleted = 0 AND "
         "SUBSTRING_INDEX(SUBSTRING_INDEX(host, '#', 1), '@', 1) IN %s", [old_hosts])
    _inv(cloud, out, codes.CINDER_OLD_HOST, "live cinder group on an old host",
         "SELECT id, host FROM {cinder.groups} WHERE deleted = 0 AND "
         "SUBSTRING_INDEX(SUBSTRING_INDEX(host, '#', 1), '@', 1) IN %s", [old_hosts])
    _inv(cloud, out, codes.CINDER_OLD_HOST, "live cinder service on an old host",
         "SELECT id, host FROM {cinder.services} WHERE deleted = 0 AND "
         "SUBSTRING_INDEX(host, '@', 1) IN %s", [old_hosts])
    _inv(cloud, out, codes.CINDER_OLD_HOST, "live cinder backup on an old host",
         "SELECT id, host FROM {cinder.backups} WHERE deleted = 0 AND host IN %s",
         [old_hosts])
    # cinder refuses to start any of its services (ServiceTooOld) while a live row
    # of that binary has no version: a Liberty-era row, or one written by hand
    _inv(cloud, out, codes.CINDER_SERVICE_UNVERSIONED,
         "live cinder service without versions (cinder will raise ServiceTooOld; "
         "`cinder-manage service remove BINARY HOST` if it is gone)",
         "SELECT id, `binary`, host FROM {cinder.services} WHERE deleted = 0 AND "
         "(rpc_current_version IS NULL OR object_current_version IS NULL)")
    _inv(cloud, out, codes.CINDER_SERVICE_UUID, "volume pointing at a retired service",
         "SELECT v.id, v.service_uuid FROM {cinder.volumes} v JOIN {cinder.services} s "
         "ON s.uuid = v.service_uuid WHERE v.deleted = 0 AND s.deleted != 0")


def _nova_invariants(cloud, mapping, out: list[Finding]) -> None:
    """No cell mapping names an old controller; no stopped instance left on an old
    compute; every instance's compute node, info cache and allocations agree with it."""
    _cells_on_old_hosts(cloud, out, {h.lower() for h in (*mapping.hosts, *mapping.endpoints)})
    olds = tuple(m.old_host for m in mapping.computes if m.old_host) or ("",)
    _inv(cloud, out, codes.INSTANCE_OLD_HOST, "live stopped instance left on an old compute",
         "SELECT uuid, host FROM {nova.instances} WHERE deleted = 0 AND host IN %s "
         "AND vm_state = 'stopped'", [olds])
    _inv(cloud, out, codes.INSTANCE_COMPUTE_ID, "instance compute_id names another node",
         "SELECT i.uuid, i.host, i.node FROM {nova.instances} i JOIN {nova.compute_nodes} c "
         "ON c.id = i.compute_id WHERE i.deleted = 0 AND (c.host != i.host OR "
         "c.hypervisor_hostname != i.node)")
    _inv(cloud, out, codes.INFO_CACHE_BRIDGE, "info cache with a linuxbridge VIF",
         "SELECT c.instance_uuid FROM {nova.instance_info_caches} c JOIN {nova.instances} i "
         "ON i.uuid = c.instance_uuid WHERE c.deleted = 0 AND i.deleted = 0 AND "
         "c.network_info LIKE %s", ['%"type": "bridge"%'])
    _inv(cloud, out, codes.ALLOCATION_ELSEWHERE, "allocation not on the instance's node",
         "SELECT a.consumer_id, rp.uuid FROM {placement.allocations} a "
         "JOIN {placement.resource_providers} rp ON rp.id = a.resource_provider_id "
         "JOIN {nova.instances} i ON i.uuid = a.consumer_id "
         "JOIN {nova.compute_nodes} c ON c.id = i.compute_id "
         "WHERE i.deleted = 0 AND rp.uuid != c.uuid")


# each step's invariants (a step not run is not checked)
_INVARIANTS = {"keystone": _keystone_invariants, "neutron": _neutron_invariants,
               "cinder": _cinder_invariants, "nova": _nova_invariants}


def invariants(cloud, mapping, only: list[str] | None = None) -> list[Finding]:
    """Every invariant of the steps run (all of them by default), in step order."""
    wanted = only or STEPS
    out: list[Finding] = []
    for step in STEPS:
        if step in wanted:
            _INVARIANTS[step](cloud, mapping, out)
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
