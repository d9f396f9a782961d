"""Verify a CIB against its description: crm_verify plus a failure matrix.

For every node failure and every resource failure (on each node it runs on),
crm_simulate computes where every resource runs afterwards. Findings:
- SERVICE_NOT_STARTED: a resource does not run even with every node up;
- SERVICE_STOPS: a resource stops entirely after a node or resource failure;
- SINGLE_INSTANCE_TWICE / CINDER_ACTIVE_ACTIVE: cinder-volume or cinder-backup
  could run on two nodes at once (or any single resource does in a scenario);
- VIP_SEPARATED / VIP_STOPPED: the VIP is not where a resource it fronts runs;
- GALERA_NO_PRIMARY: a node failure leaves Galera without a majority (no arbitrator);
- FENCING_DISABLED: stonith-enabled is false (warning).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import tempfile
import time

from pacestack.cluster import cib, pcsrun, simulate
from pacestack.cluster.description import Description

from pacestack import codes, findings
from pacestack.errors import RuntimeFailure
from pacestack.findings import Finding

SINGLE_ONLY = ("cinder-volume", "cinder-backup")


@dataclasses.dataclass
class Scenario:
    name: str
    kind: str  # baseline | node | resource
    node: str | None
    resource: str | None
    placement: simulate.Placement

    def nodes_of(self, rid: str, role: str | None = None) -> list[str]:
        return sorted(n for n, r in self.placement.get(rid, []) if role is None or r == role)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "node": self.node,
                "resource": self.resource,
                "placement": {rid: [{"node": n, "role": r} for n, r in sorted(v)]
                              for rid, v in sorted(self.placement.items())}}


@dataclasses.dataclass
class Report:
    target: str
    crm_verify: list[str]
    resources: list[str]
    scenarios: list[Scenario]
    findings: list[Finding]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not findings.has_errors(self.findings)

    def scenario(self, name: str) -> Scenario:
        return next(s for s in self.scenarios if s.name == name)

    def to_dict(self) -> dict:
        return {"target": self.target, "ok": self.ok, "crm_verify": self.crm_verify,
                "resources": self.resources,
                "scenarios": [s.to_dict() for s in self.scenarios],
                "findings": [f.to_dict() for f in self.findings],
                "seconds": round(self.seconds, 3)}


def verify(desc: Description, *, cib_file: str | None = None, workers: int | None = None,
           settle_all: bool = False) -> Report:
    """crm_verify and the failure matrix for ``cib_file`` (None: the live CIB)."""
    started = time.monotonic()
    target = cib_file or "live cluster"
    with tempfile.TemporaryDirectory(prefix="pacestack-verify-") as work:
        path = os.path.join(work, "cib.xml")
        if cib_file is None:
            xml = cib.query_live()
        else:
            try:
                with open(cib_file, encoding="utf-8") as fh:
                    xml = fh.read()
            except OSError as exc:
                raise RuntimeFailure(f"{cib_file}: {exc.strerror}") from None
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(xml)
        have = cib.parse(xml, target)
        problems = pcsrun.crm_verify(path)
        out: list[Finding] = [codes.CRM_VERIFY(target, problem=p) for p in problems]
        if problems:
            return Report(target, problems, sorted(have.primitives), [], out,
                          time.monotonic() - started)
        scenarios = failure_matrix(path, work, desc, have, workers, settle_all)
    out += analyse(desc, have, scenarios, target)
    return Report(target, [], sorted(have.primitives), scenarios, out,
                  time.monotonic() - started)


def failure_matrix(path: str, work: str, desc: Description, have: cib.Cib,
                   workers: int | None = None, settle_all: bool = False) -> list[Scenario]:
    """The baseline and every single failure; ``settle_all`` runs every scenario to a
    steady state instead of the one transition that realises the failure."""
    promotable = [p.id for p in have.primitives.values() if p.mode == "promotable"]
    base_path = os.path.join(work, "baseline.xml")
    base = simulate.baseline(path, base_path, desc.node_names, promotable)
    jobs = []  # (name, kind, node, resource, fn, args)
    for node in desc.node_names:
        jobs.append((f"{node} fails", "node", node, None, simulate.node_failure, (node,)))
    for rid in sorted(base):
        for node, _role in sorted(base[rid]):
            jobs.append((f"{rid} fails on {node}", "resource", node, rid,
                         simulate.resource_failure, (rid, node)))
    results: list[Scenario] = [Scenario("all nodes up", "baseline", None, None, base)]

    def run(i, job):
        name, kind, node, rid, fn, args = job
        placement = fn(base_path, os.path.join(work, f"s{i}.xml"), *args,
                       max_transitions=simulate.MAX_TRANSITIONS if settle_all else 1)
        return Scenario(name, kind, node, rid, placement)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as ex:
        results += list(ex.map(run, range(len(jobs)), jobs))
    return results


def _galera_ids(have: cib.Cib) -> list[str]:
    return [p.id for p in have.primitives.values()
            if p.agent.endswith(":galera") and p.mode == "promotable"]


def analyse(desc: Description, have: cib.Cib, scenarios: list[Scenario], target: str
            ) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple] = set()

    def add(f: Finding) -> None:
        key = (f.code, f.subject, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)

    if have.properties.get("stonith-enabled", "true") == "false":
        add(codes.FENCING_DISABLED(f"{target} stonith-enabled", where=target))
    singles = set(SINGLE_ONLY) | {r.name for r in desc.resources if r.mode == "single"} \
        | {desc.vip.resource}
    for name in SINGLE_ONLY:
        p = have.primitives.get(name)
        if p is not None and p.clone_id is not None:
            add(codes.CINDER_ACTIVE_ACTIVE(f"{target} {p.clone_id}", resource=name,
                                           mode=p.mode))
    base = scenarios[0]
    for rid in sorted(have.primitives):
        if not base.nodes_of(rid):
            add(codes.SERVICE_NOT_STARTED(f"{target} {rid}", resource=rid))
    galera = _galera_ids(have)
    vip = desc.vip.resource
    fronted = [r for r in desc.vip.fronts if r in have.primitives]
    for sc in scenarios:
        where = "with every node up" if sc.kind == "baseline" else f"after {sc.name}"
        for rid in sorted(have.primitives):
            if sc.kind != "baseline" and base.nodes_of(rid) and not sc.nodes_of(rid):
                left = f" with only {_survivor(desc, sc.node)} left" if sc.kind == "node" else ""
                add(codes.SERVICE_STOPS(f"{rid}: {sc.name}", resource=rid, where=where,
                                        left=left))
            if rid in singles and len(sc.nodes_of(rid)) > 1:
                add(codes.SINGLE_INSTANCE_TWICE(f"{rid}: {sc.name}", resource=rid,
                                                nodes=list(sc.nodes_of(rid)), where=where))
        if vip in have.primitives:
            vip_nodes = sc.nodes_of(vip)
            if not vip_nodes and base.nodes_of(vip):
                add(codes.VIP_STOPPED(f"{vip}: {sc.name}", vip=desc.vip.address, where=where))
            for rid in fronted:
                p = have.primitives[rid]
                role = "Promoted" if p.mode == "promotable" else None
                for node in vip_nodes:
                    if node not in sc.nodes_of(rid, role):
                        what = f"a {role} {rid}" if role else rid
                        add(codes.VIP_SEPARATED(f"{vip}: {sc.name}", node=node, what=what,
                                                where=where))
        if sc.kind == "node":
            for rid in galera:
                members = base.nodes_of(rid)
                voters = len(members) + (1 if desc.arbitrator else 0)
                left = len([m for m in members if m != sc.node]) + (1 if desc.arbitrator else 0)
                if sc.node in members and left * 2 <= voters:
                    add(codes.GALERA_NO_PRIMARY(f"{rid}: {sc.name}", left=left, voters=voters,
                                                where=where))
    return out


def _survivor(desc: Description, failed: str | None) -> str:
    return ", ".join(n for n in desc.node_names if n != failed) or "no node"
