"""Description (+ the existing CIB) → the ordered pcs steps that realise it.

A plan is a plain list of ``Step`` data: pcs arguments (without ``pcs`` and
``-f FILE``), the section it belongs to and why. The CLI renders it as shell
commands; apply runs it with ``pcs -f``. Against an existing CIB only the
difference is planned, so an applied description plans nothing.
"""

from __future__ import annotations

import dataclasses

from pacestack.cluster import secrets
from pacestack.cluster.cib import Cib, Constraint, Primitive
from pacestack.cluster.description import Description, Resource

SECTIONS = ("remove", "properties", "fencing", "resources", "constraints")
SECTION_TITLES = {
    "remove": "Remove what the description replaces or disables",
    "properties": "Cluster properties",
    "fencing": "Fencing devices",
    "resources": "Resources, in start order",
    "constraints": "Ordering and colocation",
}


@dataclasses.dataclass(frozen=True)
class Step:
    section: str  # one of SECTIONS
    action: str  # create | update | delete | set
    target: str  # the Pacemaker id it creates or changes
    argv: tuple[str, ...]  # pcs arguments, without "pcs" and "-f FILE"
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class WantedConstraint:
    id: str
    kind: str
    attrs: dict[str, str]
    argv: tuple[str, ...]
    reason: str

    def signature(self) -> tuple:
        return Constraint(self.id, self.kind, self.attrs).signature()


def _kv(params: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(params.items())]


def stonith_enabled(desc: Description) -> str:
    return "true" if desc.fencing else "false"


def vip_resource(desc: Description) -> Resource:
    params = {"ip": desc.vip.address, "cidr_netmask": str(desc.vip.cidr_netmask)}
    if desc.vip.nic:
        params["nic"] = desc.vip.nic
    return Resource(name=desc.vip.resource, agent="ocf:heartbeat:IPaddr2", params=params,
                    mode="single", monitor_interval=10, origin="[vip]")


RESOURCE_STICKINESS = 1  # any positive value beats the tie; INFINITY colocations still move


def all_resources(desc: Description) -> list[Resource]:
    """The description's resources plus the VIP (created after what it fronts)."""
    return [*desc.resources, vip_resource(desc)]


def monitor_ops(r: Resource) -> list[tuple[str, str]]:
    """(role, interval) of every recurring monitor ``r`` needs; role "" is role-less.

    A promotable clone needs one per role: Pacemaker runs a role-less monitor only
    on Unpromoted instances, so the Promoted one (Galera's writer) would go
    unwatched. The two intervals must differ, so Unpromoted runs one second later.
    """
    if not r.monitor_interval:
        return []
    if r.mode == "promotable":
        return [("Promoted", f"{r.monitor_interval}s"),
                ("Unpromoted", f"{r.monitor_interval + 1}s")]
    return [("", f"{r.monitor_interval}s")]


def _op_argv(role: str, interval: str) -> list[str]:
    return ["monitor", f"interval={interval}", *([f"role={role}"] if role else [])]


def create_argv(r: Resource) -> tuple[str, ...]:
    argv = ["resource", "create", r.name, r.agent, *_kv(r.params)]
    ops = monitor_ops(r)
    if ops:
        argv.append("op")
        for role, interval in ops:
            argv += _op_argv(role, interval)
    if r.meta:
        argv += ["meta", *_kv(r.meta)]
    if r.mode == "clone":
        argv += ["clone", *_kv(r.clone_meta)]
    elif r.mode == "promotable":
        argv += ["promotable", *_kv(r.clone_meta)]
    if r.agent.startswith(("systemd:", "service:", "lsb:")):
        # pcs can only check that the unit exists on the host running pcs, and needs
        # a running systemd for that; the unit lives on the nodes (preflight checks it)
        argv.append("--force")
    return tuple(argv)


def wanted_constraints(desc: Description) -> list[WantedConstraint]:
    by_name = {r.name: r for r in all_resources(desc)}
    out: list[WantedConstraint] = []
    for r in desc.resources:
        for dep_name in r.after:
            dep = by_name[dep_name]
            first_action = "promote" if dep.mode == "promotable" else "start"
            cid = f"order-{dep.name}-then-{r.name}"
            attrs = {"first": dep.pcs_id, "first-action": first_action, "then": r.pcs_id,
                     "then-action": "start"}
            argv = ["constraint", "order", first_action, dep.pcs_id, "then", "start",
                    r.pcs_id, f"id={cid}"]
            reason = f"{r.name} starts after {dep.name}"
            if dep.clients_reconnect:
                # r starts only after dep (its first start waits for it), but a
                # restart of dep alone restarts nothing: a symmetrical order stops r
                # before dep stops, and an Optional one does not hold r back at all
                # when dep's start is in an earlier transition (Galera's promote is)
                attrs["symmetrical"] = "false"
                argv.append("symmetrical=false")
                reason += " (not stopped with it: it reconnects on its own)"
            out.append(WantedConstraint(cid, "order", attrs, tuple(argv), reason))
            if dep.clients_reconnect and dep.mode != "promotable":
                out.append(_drain_order(r, dep))
        for dep_name in r.with_:
            out.append(_colocation(r.name, r.pcs_id, by_name[dep_name],
                                   f"{r.name} runs with {dep_name}"))
    for name in vip_colocations(desc):
        out.append(_colocation(desc.vip.resource, desc.vip.resource, by_name[name],
                               f"the VIP stays where {name} runs"))
    return out


def _runs_with(desc: Description, name: str) -> set[str]:
    """Everything ``name`` is (transitively) colocated with."""
    by_name = {r.name: r for r in desc.resources}
    seen: set[str] = set()
    todo = list(by_name[name].with_) if name in by_name else []
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(by_name[n].with_ if n in by_name else ())
    return seen


def vip_colocations(desc: Description) -> list[str]:
    """The fronted resources the VIP needs its own colocation with: not those another
    fronted resource already runs with (the VIP follows them through it)."""
    present = [n for n in desc.vip.fronts if desc.resource(n) is not None]
    implied = set().union(*(_runs_with(desc, n) for n in present)) if present else set()
    return [n for n in present if n not in implied]


def _drain_order(r: Resource, dep: Resource) -> WantedConstraint:
    """When one transition stops both ``r`` and ``dep`` on a node (standby, a planned
    move), ``r`` stops first: a TERMed service finishes the requests it holds (its
    RPCs, its replies) while the broker, Keystone and memcached of its node still run;
    stopped the other way round it drained with its node's broker gone and lost the
    work it held. Optional: a stop of ``dep`` alone (a restart, a failure) waits for
    nothing and stops nothing. Not for a promotable ``dep`` (Galera): its clients
    reach it through the VIP, which leaves the node at the start of the transition."""
    cid = f"order-{r.name}-then-{dep.name}"
    attrs = {"first": r.pcs_id, "first-action": "stop", "then": dep.pcs_id,
             "then-action": "stop", "kind": "Optional", "symmetrical": "false"}
    argv = ("constraint", "order", "stop", r.pcs_id, "then", "stop", dep.pcs_id,
            "kind=Optional", "symmetrical=false", f"id={cid}")
    return WantedConstraint(cid, "order", attrs, argv,
                            f"{r.name} stops before {dep.name} when both stop on a node")


def _colocation(name: str, pcs_id: str, dep: Resource, reason: str) -> WantedConstraint:
    role = "Promoted" if dep.mode == "promotable" else "Started"
    cid = f"colocation-{name}-with-{dep.name}"
    argv = ["constraint", "colocation", "add", pcs_id, "with"]
    if role != "Started":
        argv.append(role)
    argv += [dep.pcs_id, "INFINITY", f"id={cid}"]
    return WantedConstraint(
        cid, "colocation",
        {"rsc": pcs_id, "rsc-role": "Started", "with-rsc": dep.pcs_id, "with-rsc-role": role,
         "score": "INFINITY"},
        tuple(argv), reason)


def _normal_ops(ops: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """CIB monitors as pcs writes them: "10" is "10s", Master/Slave are the old names."""
    old_names = {"Master": "Promoted", "Slave": "Unpromoted"}
    return [(old_names.get(role, role), f"{iv}s" if iv.isdigit() else iv) for role, iv in ops]


def _resource_changes(r: Resource, have: Primitive) -> list[Step]:
    """Steps turning ``have`` into ``r`` in place (agent and mode already match)."""
    steps: list[Step] = []
    params = {k: v for k, v in r.params.items() if have.params.get(k) != v}
    removed = {k: "" for k in have.params if k not in r.params}
    if params or removed:
        changed = ", ".join(sorted({**params, **removed}))
        steps.append(Step("resources", "update", r.name,
                          ("resource", "update", r.name, *_kv({**params, **removed})),
                          f"{r.name}: parameters {changed} differ"))
    wanted = monitor_ops(r)
    if wanted and sorted(wanted) != sorted(_normal_ops(have.monitor_ops)):
        # replace them all: two monitors of one resource may not share an interval
        steps.append(Step("resources", "update", r.name,
                          ("resource", "op", "delete", r.name, "monitor"),
                          f"{r.name}: monitor operations differ"))
        steps.extend(Step("resources", "update", r.name,
                          ("resource", "op", "add", r.name, *_op_argv(role, interval)),
                          f"{r.name}: monitor {role or 'every instance'} every {interval}")
                     for role, interval in wanted)
    meta = {k: v for k, v in r.meta.items() if have.meta.get(k) != v}
    if meta:
        steps.append(Step("resources", "update", r.name, ("resource", "meta", r.name, *_kv(meta)),
                          f"{r.name}: meta attributes {', '.join(sorted(meta))} differ"))
    cmeta = {k: v for k, v in r.clone_meta.items() if have.clone_meta.get(k) != v}
    if cmeta and have.clone_id:
        steps.append(Step("resources", "update", have.clone_id,
                          ("resource", "meta", have.clone_id, *_kv(cmeta)),
                          f"{have.clone_id}: meta attributes {', '.join(sorted(cmeta))} differ"))
    return steps


def build(desc: Description, existing: Cib | None = None) -> list[Step]:
    """The steps from ``existing`` (None: an empty CIB) to the description.

    Resources the description switched off (``enabled = false``) are deleted
    when they exist. Resources the description does not mention are left alone.
    """
    have = existing or Cib({}, {}, {}, {}, (), frozenset())
    remove: list[Step] = []
    steps: list[Step] = []
    recreated: set[str] = set()

    for name in desc.disabled:
        if name in have.primitives:
            remove.append(Step("remove", "delete", name, ("resource", "delete", name),
                               f"{name} is disabled in the description"))
            recreated.add(name)

    want = stonith_enabled(desc)
    if have.properties.get("stonith-enabled", "true") != want:
        why = "fencing devices are configured" if desc.fencing else \
            "no fencing device is described (verify and preflight warn)"
        steps.append(Step("properties", "set", "stonith-enabled",
                          ("property", "set", f"stonith-enabled={want}"), why))

    if "resource-stickiness" not in have.resource_defaults:
        # without any, a single resource (cinder-volume, the VIP) goes back wherever the
        # scheduler's tie-break puts it each time the other node recovers: a needless
        # stop and start. An operator's own value, 0 included, is kept.
        steps.append(Step("properties", "set", "resource-stickiness",
                          ("resource", "defaults", "update",
                           f"resource-stickiness={RESOURCE_STICKINESS}"),
                          "resources stay where they run until a constraint moves them"))

    for f in desc.fencing:
        agent = f"stonith:{f.agent}"
        old = have.stonith.get(f.name)
        if old is None or old.agent != agent:
            if old is not None:
                remove.append(Step("remove", "delete", f.name, ("stonith", "delete", f.name),
                                   f"{f.name}: agent changes from {old.agent}"))
            steps.append(Step("fencing", "create", f.name,
                              ("stonith", "create", f.name, f.agent, *_kv(f.params)),
                              f"fencing device {f.name}"))
            continue
        changed = {k: v for k, v in f.params.items() if old.params.get(k) != v}
        changed.update({k: "" for k in old.params if k not in f.params})
        if changed:
            steps.append(Step("fencing", "update", f.name,
                              ("stonith", "update", f.name, *_kv(changed)),
                              f"{f.name}: parameters {', '.join(sorted(changed))} differ"))

    for r in all_resources(desc):
        old = have.primitives.get(r.name)
        if old is not None and (old.agent != r.agent or old.mode != r.mode
                                or old.group_id is not None
                                or (old.clone_id and old.clone_id != r.pcs_id)):
            remove.append(Step("remove", "delete", r.name, ("resource", "delete", r.name),
                               f"{r.name}: {old.agent} ({old.mode}) becomes {r.agent} ({r.mode})"))
            recreated.add(r.name)
            old = None
        if old is None:
            steps.append(Step("resources", "create", r.name, create_argv(r),
                              f"{r.name}: {r.mode} of {r.agent}"))
        else:
            steps.extend(_resource_changes(r, old))

    gone = recreated | {f"{n}-clone" for n in recreated}
    signatures = {sig: cid for sig, cid in have.constraint_signatures().items()
                  if not ({have.constraints[cid].attrs.get(k) for k in
                           ("first", "then", "rsc", "with-rsc")} & gone)}
    # an order of the same pair under any id, but of another kind: Pacemaker applies
    # both, and a symmetrical one left beside ours still restarts dependents
    orders = {sig[:5]: cid for sig, cid in signatures.items() if sig[0] == "order"}
    wanted = wanted_constraints(desc)
    for cid in sorted(_made_here(desc, have) - {c.id for c in wanted}):
        if {have.constraints[cid].attrs.get(k) for k in ("first", "then", "rsc", "with-rsc")} \
                & gone:
            continue  # deleting the resource deletes its constraints
        remove.append(Step("remove", "delete", cid, ("constraint", "delete", cid),
                           f"{cid}: no longer wanted by the description"))
    for c in wanted:
        if c.signature() in signatures:
            continue
        other = orders.get(c.signature()[:5])
        if other is not None and other != c.id:
            remove.append(Step("remove", "delete", other, ("constraint", "delete", other),
                               f"{other} orders {c.reason} with another kind"))
        if c.id in have.constraints and c.id not in {signatures.get(s) for s in signatures}:
            # same id, different meaning: replace it (unless a deleted resource took it)
            if not ({have.constraints[c.id].attrs.get(k) for k in
                     ("first", "then", "rsc", "with-rsc")} & gone):
                remove.append(Step("remove", "delete", c.id, ("constraint", "delete", c.id),
                                   f"{c.id} changes"))
        steps.append(Step("constraints", "create", c.id, c.argv, c.reason))
    return remove + steps


def _made_here(desc: Description, have: Cib) -> set[str]:
    """The constraints of ``have`` under the ids this module gives to one between two
    resources of the description: an earlier plan made them. Any other constraint
    is the operator's and stays."""
    names = [r.name for r in all_resources(desc)]
    ids = {f"{kind}-{a}-{word}-{b}" for a in names for b in names if a != b
           for kind, word in (("order", "then"), ("colocation", "with"))}
    return ids & set(have.constraints)


def secret_params(desc: Description) -> dict[str, frozenset[str]]:
    """Pacemaker id → its secret parameter names (see secrets.py)."""
    out = {f.name: secrets.secret_names(f"stonith:{f.agent}", f.params) for f in desc.fencing}
    for r in all_resources(desc):
        out[r.name] = secrets.secret_names(r.agent, r.params)
    return out


def secret_values(desc: Description) -> set[str]:
    """Every secret value the description holds: what must never be shown."""
    params = {f.name: f.params for f in desc.fencing}
    params.update({r.name: r.params for r in all_resources(desc)})
    return {value for name, keys in secret_params(desc).items()
            for value in secrets.secret_values(params[name], keys)}


def masked(steps: list[Step], desc: Description) -> list[Step]:
    """The steps as they may be shown: secret parameter values as ****."""
    names = secret_params(desc)
    values = secret_values(desc)
    return [dataclasses.replace(
        s, argv=tuple(secrets.mask_text(w, values)
                      for w in secrets.mask_argv(s.argv, names.get(s.target, ()))),
        reason=secrets.mask_text(s.reason, values)) for s in steps]
