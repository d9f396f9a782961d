"""The seed's cloud end to end on CIB files, with pacestack's agents installed:
plan -> apply (real pcs -f, crm_verify) -> verify (real crm_simulate), idempotence,
plans against existing CIBs, corosync.conf. Time budget: about 60 s."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pacestack.cluster import apply, cib, description, pcsrun, plan, simulate, verify

from pacestack.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEED = str(ROOT / "examples" / "seed-cluster.conf")
NODES = ("controller01", "controller02")


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def seed(ocf_provider):
    return description.load([SEED])


@pytest.fixture(scope="module")
def applied(seed, tmp_path_factory):
    """The seed's description applied to a new CIB file (and corosync.conf)."""
    work = tmp_path_factory.mktemp("seed")
    cib_path = str(work / "cib.xml")
    corosync = str(work / "corosync.conf")
    result = apply.apply(seed, cib_file=cib_path, corosync_conf=corosync)
    return result, cib_path, corosync


@pytest.fixture(scope="module")
def report(seed, applied):
    return verify.verify(seed, cib_file=applied[1])


def test_every_profile_entry_is_accepted_by_pcs(seed, applied):
    result, cib_path, _ = applied
    assert result.changed
    have = cib.read_file(cib_path)
    expected = {r.name: r for r in plan.all_resources(seed)}
    assert set(have.primitives) == set(expected)
    for name, r in expected.items():
        p = have.primitives[name]
        assert p.agent == r.agent, name
        assert p.mode == r.mode, name
        assert p.params == r.params, name
        for key, value in r.clone_meta.items():
            assert p.clone_meta[key] == value, (name, key)
    # the built-in stack of the issue, with the seed's shared cinder host
    assert {"galera", "memcached", "rabbitmq", "apache", "glance-api", "nova-api",
            "nova-scheduler", "nova-conductor", "nova-novncproxy", "neutron-server",
            "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent",
            "neutron-openvswitch-agent", "cinder-api", "cinder-scheduler", "cinder-volume",
            "cinder-backup", "vip"} <= set(have.primitives)
    assert have.primitives["galera"].mode == "promotable"
    assert have.primitives["cinder-volume"].clone_id is None
    assert have.primitives["cinder-backup"].clone_id is None
    assert have.primitives["vip"].params == {"ip": "10.0.0.10", "cidr_netmask": "24"}
    assert set(have.stonith) == {"fence-controller01", "fence-controller02"}
    assert have.properties.get("stonith-enabled", "true") == "true"
    assert pcsrun.crm_verify(cib_path) == []
    # every wanted ordering/colocation is in the CIB exactly once
    sigs = [c.signature() for c in have.constraints.values()]
    wanted = [c.signature() for c in plan.wanted_constraints(seed)]
    assert sorted(map(repr, sigs)) == sorted(map(repr, wanted))


def test_second_apply_is_a_no_op(seed, applied):
    _, cib_path, corosync = applied
    before, coro_before = _sha(cib_path), _sha(corosync)
    again = apply.apply(seed, cib_file=cib_path, corosync_conf=corosync)
    assert not again.changed and again.steps == []
    assert not again.corosync_changed
    assert _sha(cib_path) == before and _sha(corosync) == coro_before
    assert plan.build(seed, cib.read_file(cib_path)) == []


def test_corosync_conf_is_written_offline_for_the_nodes(applied):
    text = Path(applied[2]).read_text()
    assert "cluster_name: openstack" in text
    assert "ring0_addr: 10.0.0.11" in text and "ring0_addr: 10.0.0.12" in text
    assert "two_node: 1" in text


def test_seed_verifies_clean(report):
    assert report.crm_verify == []
    assert report.ok, report.findings
    assert [f.code for f in report.findings] == []
    # baseline + two node failures + one per running resource instance
    kinds = [s.kind for s in report.scenarios]
    assert kinds.count("node") == 2 and kinds.count("baseline") == 1
    assert kinds.count("resource") >= 2 * 16 + 3


@pytest.mark.parametrize("failed", NODES)
def test_failure_matrix_for_node_loss(report, seed, failed):
    survivor = next(n for n in NODES if n != failed)
    base = report.scenario("all nodes up")
    sc = report.scenario(f"{failed} fails")
    for r in plan.all_resources(seed):
        assert base.nodes_of(r.name), r.name
        assert sc.nodes_of(r.name) == [survivor], (r.name, sc.placement[r.name])
    assert sc.nodes_of("galera", "Promoted") == [survivor]
    for name in ("vip", "cinder-volume", "cinder-backup"):
        assert len(base.nodes_of(name)) == 1
    for r in seed.resources:
        if r.mode != "single":
            assert base.nodes_of(r.name) == list(NODES), r.name


def test_plan_against_the_applied_cib_shows_only_the_difference(seed, applied, tmp_path):
    _, cib_path, _ = applied
    changed = tmp_path / "changed.conf"
    changed.write_text(Path(SEED).read_text() + """
[resource:nova-novncproxy]
enabled = false

[resource:nova-api]
params =
    binary=/usr/bin/nova-api
    config=/etc/nova/nova.conf
    user=nova
    monitor_url=http://127.0.0.1:8774/healthcheck

[resource:heat-api]
agent = ocf:pacestack:openstack-service
params =
    binary=/usr/bin/heat-api
    config=/etc/heat/heat.conf
after = galera, apache
""")
    desc = description.load([str(changed)])
    steps = plan.build(desc, cib.read_file(cib_path))
    assert [(s.section, s.action, s.target) for s in steps] == [
        ("remove", "delete", "nova-novncproxy"),
        ("resources", "update", "nova-api"),
        ("resources", "create", "heat-api"),
        ("constraints", "create", "order-galera-then-heat-api"),
        ("constraints", "create", "order-apache-then-heat-api"),
        # apache reconnects: heat-api stops first only when both stop on a node
        ("constraints", "create", "order-heat-api-then-apache"),
    ]
    assert steps[1].argv == ("resource", "update", "nova-api",
                             "monitor_url=http://127.0.0.1:8774/healthcheck")
    # applying it and planning again: nothing left
    copy = tmp_path / "cib.xml"
    copy.write_bytes(Path(cib_path).read_bytes())
    apply.apply(desc, cib_file=str(copy))
    assert plan.build(desc, cib.read_file(str(copy))) == []
    assert "nova-novncproxy" not in cib.read_file(str(copy)).primitives
    # the in-memory batch builds what pcs builds when cibadmin rewrites the file for
    # every command (delete, update, create, constraints)
    files = tmp_path / "files.xml"
    files.write_bytes(Path(cib_path).read_bytes())
    apply.apply(desc, cib_file=str(files), runner="batch-files")
    assert _configuration(files) == _configuration(copy)


def _configuration(path) -> tuple:
    have = cib.read_file(str(path))
    prims = sorted((p.id, p.agent, sorted(p.params.items()), sorted(p.meta.items()), p.mode,
                    sorted(p.clone_meta.items()), p.monitor_ops)
                   for p in [*have.primitives.values(), *have.stonith.values()])
    return prims, sorted(map(repr, have.constraint_signatures())), sorted(have.properties.items())


def test_plan_against_a_hand_built_cib(seed, tmp_path):
    """The operator already created Galera and the VIP by hand, with pcs's own
    constraint ids: the plan adds only the rest and never duplicates a constraint."""
    path = tmp_path / "cib.xml"
    path.write_text(cib.empty_cib())
    full = plan.build(seed)
    by_target = {s.target: s for s in full}
    by_hand = [by_target["galera"].argv, by_target["memcached"].argv, by_target["apache"].argv,
               ("constraint", "order", "promote", "galera-clone", "then", "start",
                "apache-clone", "symmetrical=false")]
    results = pcsrun.run_batch(str(path), by_hand)
    assert [r.rc for r in results] == [0, 0, 0, 0], results[-1].stderr
    assert "order-galera-then-apache" not in cib.read_file(str(path)).constraints
    steps = plan.build(seed, cib.read_file(str(path)))
    targets = [s.target for s in steps]
    assert not {"galera", "memcached", "apache"} & set(targets)
    assert "order-galera-then-apache" not in targets  # same constraint, pcs's own id
    assert "order-memcached-then-apache" in targets
    assert len(steps) == len(full) - 4
    assert all(s.action == "create" for s in steps if s.section != "properties")


def test_stickiness_is_set_once_and_an_operators_own_value_is_kept(seed, tmp_path):
    """A cluster without a resource-stickiness default gets one (else a single resource
    goes back to the tie-break's node whenever the other node recovers); one the
    operator set, even 0, is theirs."""
    path = tmp_path / "cib.xml"
    path.write_text(cib.empty_cib())
    first = [s for s in plan.build(seed, cib.read_file(str(path)))
             if s.target == "resource-stickiness"]
    assert [s.argv for s in first] == [
        ("resource", "defaults", "update", f"resource-stickiness={plan.RESOURCE_STICKINESS}")]
    assert [r.rc for r in pcsrun.run_batch(str(path), [first[0].argv])] == [0]
    assert cib.read_file(str(path)).resource_defaults["resource-stickiness"] == "1"
    assert not [s for s in plan.build(seed, cib.read_file(str(path)))
                if s.target == "resource-stickiness"]
    pcsrun.run_batch(str(path), [("resource", "defaults", "update", "resource-stickiness=0")])
    assert not [s for s in plan.build(seed, cib.read_file(str(path)))
                if s.target == "resource-stickiness"]


def test_hand_built_symmetrical_order_is_replaced_by_the_asymmetrical_one(seed, tmp_path):
    """A symmetrical order of the same pair under pcs's own id would still restart
    apache with Galera beside the wanted asymmetrical one: the plan deletes it."""
    path = tmp_path / "cib.xml"
    path.write_text(cib.empty_cib())
    by_target = {s.target: s for s in plan.build(seed)}
    by_hand = [by_target["galera"].argv, by_target["apache"].argv,
               ("constraint", "order", "promote", "galera-clone", "then", "start",
                "apache-clone")]
    assert [r.rc for r in pcsrun.run_batch(str(path), by_hand)] == [0, 0, 0]
    (mandatory,) = cib.read_file(str(path)).constraints
    steps = plan.build(seed, cib.read_file(str(path)))
    assert [s.target for s in steps if s.action == "delete"] == [mandatory]
    results = pcsrun.run_batch(str(path), [s.argv for s in steps])
    assert all(r.rc == 0 for r in results), [r.stderr for r in results if r.rc]
    orders = [c for c in cib.read_file(str(path)).constraints.values()
              if c.kind == "order" and c.attrs["first"] == "galera-clone"
              and c.attrs["then"] == "apache-clone"]
    assert [(c.id, c.attrs.get("kind", "Mandatory"), c.attrs.get("symmetrical"))
            for c in orders] == [("order-galera-then-apache", "Mandatory", "false")]
    assert plan.build(seed, cib.read_file(str(path))) == []


def test_cli_plan_is_copy_pasteable_shell(seed, tmp_path, capsys):
    assert main(["cluster", "plan", "-d", SEED, "--empty"]) == 0
    text = capsys.readouterr().out
    commands = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert len(commands) == len(plan.build(seed))
    assert all(c.startswith("pcs ") for c in commands)
    assert "# --- Resources, in start order ---" in text
    # shell-quoted: the Galera host map (with ';') survives a shell round trip
    galera = next(c for c in commands if c.startswith("pcs resource create galera "))
    assert "'cluster_host_map=controller01:10.0.0.11;controller02:10.0.0.12'" in galera
    # the first commands (stickiness, two fencing devices, Galera, memcached), pasted
    # into a shell
    path = tmp_path / "by-hand.xml"
    path.write_text(cib.empty_cib())
    upto = next(i for i, c in enumerate(commands)
                if c.startswith("pcs resource create memcached "))
    script = "set -e\n" + "\n".join(c.replace("pcs ", f"pcs -f {shlex.quote(str(path))} ", 1)
                                    for c in commands[:upto + 1])
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)
    assert {"galera", "memcached"} <= set(cib.read_file(str(path)).primitives)

    assert main(["cluster", "plan", "-d", SEED, "--empty", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == len(commands)
    assert data["steps"][0]["section"] in plan.SECTIONS


def test_cli_verify_renders_the_matrix(seed, applied, capsys):
    path = applied[1]
    assert main(["cluster", "plan", "-d", SEED, "--cib-file", path]) == 0
    assert capsys.readouterr().out.startswith("# nothing to do")
    assert main(["cluster", "verify", "-d", SEED, "--cib-file", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["findings"] == []
    node_loss = next(s for s in data["scenarios"] if s["name"] == "controller01 fails")
    assert node_loss["placement"]["vip"] == [{"node": "controller02", "role": "Started"}]


@pytest.fixture(scope="module")
def steady(applied, tmp_path_factory):
    """The applied seed with every node up and everything running (crm_simulate)."""
    out = str(tmp_path_factory.mktemp("steady") / "steady.xml")
    simulate.baseline(applied[1], out, NODES, ["galera"])
    return out


def _monitor_ms(cib_path: str, name: str) -> int:
    """The interval of the monitor that watches a running instance (Promoted for a
    promotable resource: the steady state promotes Galera on both nodes)."""
    ops = dict(cib.read_file(cib_path).primitives[name].monitor_ops)
    return int(ops.get("Promoted", ops.get(""))[:-1]) * 1000


@pytest.mark.parametrize("name", ["memcached", "rabbitmq", "galera", "apache",
                                  "neutron-server", "cinder-scheduler"])
def test_recovery_of_what_services_reconnect_to_restarts_nothing_else(steady, name):
    """The services reconnect on their own to memcached, RabbitMQ, their database,
    Keystone, and (over RPC) neutron-server and cinder-scheduler: a kill -9 of one of
    them on a node (its monitor finds it dead) recovers only it. A symmetrical order
    after it would stop everything after it there first, taking the node's APIs
    down for the whole restart."""
    stops = simulate.monitor_failure_stops(steady, name, "controller01",
                                           _monitor_ms(steady, name))
    assert stops == {name}


@pytest.mark.parametrize("name", ["galera", "rabbitmq", "memcached", "apache",
                                  "neutron-server", "cinder-scheduler"])
def test_a_node_without_what_services_reach_over_the_network_keeps_its_services(
        steady, tmp_path, name):
    """The services reach the database and the broker through the VIP and memcached
    on every controller: when one of these cannot run on controller01 (a mariadbd
    rejoining has no promotion score yet; a start that failed), every service keeps
    running there, and the VIP leaves controller01 only for what it fronts."""
    placed = simulate.resource_failure(steady, str(tmp_path / "out.xml"), name,
                                       "controller01", max_transitions=3)
    on_01 = {rid for rid, where in placed.items() if any(n == "controller01" for n, _ in where)}
    services = {"apache", "glance-api", "nova-api", "nova-conductor", "neutron-server",
                "neutron-openvswitch-agent", "cinder-api", "cinder-scheduler"} - {name}
    assert services <= on_01, sorted(services - on_01)
    assert name not in on_01
    if name in ("galera", "rabbitmq", "apache", "neutron-server"):
        assert placed["vip"] == [("controller02", "Started")]


def test_recovery_of_the_open_vswitch_agent_still_restarts_what_needs_it(steady):
    """The node's DHCP, L3 and metadata agents need its own Open vSwitch agent: they
    stay colocated with it and restart with it (the check above sees real restarts)."""
    stops = simulate.monitor_failure_stops(steady, "neutron-openvswitch-agent",
                                           "controller01",
                                           _monitor_ms(steady, "neutron-openvswitch-agent"))
    assert {"neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
            "neutron-metadata-agent"} <= stops


def test_services_start_after_galera_promote_when_both_start(applied, tmp_path):
    """The order after Galera's promote holds although the promote comes a transition
    after the start (no colocation holds apache back any more): on a
    cluster start each node's apache starts after its own Galera is promoted."""
    up, started = str(tmp_path / "up.xml"), str(tmp_path / "started.xml")
    argv = ["-x", applied[1], "--quorum", "true", "-O", up]
    for node in NODES:
        argv += ["--node-up", node]
    subprocess.run(["crm_simulate", *argv], check=True, capture_output=True)
    simulate.settle(up, started)  # galera started, not promoted: no score yet
    simulate.set_node_attributes(started, {n: {"master-galera": "10"} for n in NODES})
    graph = tmp_path / "graph.xml"
    subprocess.run(["crm_simulate", "-x", started, "-S", "-G", str(graph)], check=True,
                   capture_output=True)
    def op(a: ET.Element) -> tuple:  # a clone's second instance has keys like apache:1_start_0
        rid = a.get("operation_key", "").split("_", 1)[0].split(":", 1)[0]
        return (rid, a.get("operation"), a.get("on_node"))

    inputs = {}
    for synapse in ET.parse(graph).getroot().iter("synapse"):
        action = synapse.find("action_set")[0]
        if action.tag == "rsc_op":
            inputs[op(action)] = {op(t) for t in synapse.find("inputs").iter("rsc_op")}
    for node in NODES:
        assert ("galera", "promote", node) in inputs[("apache", "start", node)]


def test_promotable_resource_is_monitored_in_both_roles(seed, applied, tmp_path):
    """A role-less monitor runs only on Unpromoted instances: the Promoted Galera
    node would go unwatched. The agent's own defaults give each role a monitor; a
    description's monitor_interval does the same, and a hand-made role-less monitor
    is replaced by the two."""
    galera = cib.read_file(applied[1]).primitives["galera"]
    assert {role for role, _ in galera.monitor_ops} == {"Promoted", "Unpromoted"}

    wanted = dataclasses.replace(
        seed, resources=tuple(dataclasses.replace(r, monitor_interval=7)
                              if r.name == "galera" else r for r in seed.resources))
    create = next(s for s in plan.build(wanted) if s.target == "galera").argv
    assert "role=Promoted" in create and "role=Unpromoted" in create
    by_hand = list(create)
    op = by_hand.index("op")
    by_hand[op:op + 7] = ["op", "monitor", "interval=7s"]  # the two role monitors as one
    path = tmp_path / "cib.xml"
    path.write_text(cib.empty_cib())
    assert [r.rc for r in pcsrun.run_batch(str(path), [tuple(by_hand)])] == [0]
    assert cib.read_file(str(path)).primitives["galera"].monitor_ops == (("", "7s"),)
    fix = [s for s in plan.build(wanted, cib.read_file(str(path))) if s.target == "galera"]
    assert [s.argv[:3] for s in fix] == [("resource", "op", "delete")] + \
        [("resource", "op", "add")] * 2
    results = pcsrun.run_batch(str(path), [s.argv for s in fix])
    assert [r.rc for r in results] == [0, 0, 0], results[-1].stderr
    assert sorted(cib.read_file(str(path)).primitives["galera"].monitor_ops) == \
        [("Promoted", "7s"), ("Unpromoted", "8s")]
    assert not [s for s in plan.build(wanted, cib.read_file(str(path))) if s.target == "galera"]


def test_constraints_an_earlier_plan_made_and_the_description_dropped_are_deleted(
        seed, applied, tmp_path):
    """A cluster applied when the services ran beside their own node's Galera keeps
    that colocation unless the plan deletes it: pacestack's own ids between two
    described resources go; an operator's constraint under any other id stays."""
    path = tmp_path / "cib.xml"
    path.write_text(Path(applied[1]).read_text(encoding="utf-8"))
    old = [("constraint", "colocation", "add", "apache-clone", "with", "Promoted",
            "galera-clone", "INFINITY", "id=colocation-apache-with-galera"),
           ("constraint", "colocation", "add", "nova-api-clone", "with", "galera-clone",
            "100", "id=operators-own")]
    assert [r.rc for r in pcsrun.run_batch(str(path), old)] == [0, 0]
    steps = plan.build(seed, cib.read_file(str(path)))
    assert [(s.action, s.target) for s in steps] == \
        [("delete", "colocation-apache-with-galera")]
    assert [r.rc for r in pcsrun.run_batch(str(path), [s.argv for s in steps])] == [0]
    left = cib.read_file(str(path)).constraints
    assert "operators-own" in left and "colocation-apache-with-galera" not in left
    assert plan.build(seed, cib.read_file(str(path))) == []


def _standby_graph(steady: str, node: str, tmp_path: Path) -> ET.Element:
    """The transition graph the scheduler computes when ``node`` is put in standby."""
    scratch = tmp_path / "standby.xml"
    tree = ET.parse(steady)
    entry = next(n for n in tree.getroot().iter("node") if n.get("uname") == node)
    attrs = entry.find("instance_attributes")
    if attrs is None:
        attrs = ET.SubElement(entry, "instance_attributes", id=f"nodes-{entry.get('id')}")
    ET.SubElement(attrs, "nvpair", id=f"nodes-{entry.get('id')}-standby", name="standby",
                  value="on")
    tree.write(scratch)
    graph = tmp_path / "graph.xml"
    subprocess.run(["crm_simulate", "-x", str(scratch), "-G", str(graph)],
                   capture_output=True, check=True, timeout=120,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return ET.parse(graph).getroot()


def _waits_for(graph: ET.Element) -> dict[tuple[str, str, str], set[tuple[str, str, str]]]:
    """(primitive, operation, node) of each resource action -> every resource action
    it waits for in the graph, through pseudo actions (a clone's stopped)."""
    names: dict[str, tuple[str, str, str] | None] = {}
    inputs: dict[str, list[str]] = {}
    for synapse in graph.findall("synapse"):
        for action in synapse.find("action_set"):
            prim = action.find("primitive")
            names[action.get("id")] = (
                (prim.get("id").split(":")[0], action.get("operation"), action.get("on_node"))
                if action.tag == "rsc_op" and prim is not None else None)
            inputs[action.get("id")] = [t.get("id") for trig in synapse.iter("trigger")
                                        for t in trig]
    out: dict[tuple[str, str, str], set[tuple[str, str, str]]] = {}
    for aid, name in names.items():
        if name is None:
            continue
        seen: set[str] = set()
        todo = list(inputs.get(aid, []))
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo.extend(inputs.get(cur, []))
        out[name] = {names[a] for a in seen if names.get(a) is not None}
    return out


def test_a_standby_stops_the_services_before_what_they_reach_on_that_node(steady, tmp_path):
    """A planned standby stops the node's RPC servers before its broker, Keystone and
    memcached: a TERMed service finishes the requests it holds with them still there
    (stopped first, they took the node's broker from under a draining nova-conductor
    and cinder-volume). Galera is not held: its clients reach it through the VIP,
    which leaves first."""
    waits = _waits_for(_standby_graph(steady, "controller01", tmp_path))
    node = "controller01"
    for dep in ("rabbitmq", "apache", "memcached"):
        before = waits[(dep, "stop", node)]
        for service in ("nova-conductor", "nova-scheduler", "nova-api", "cinder-scheduler"):
            assert (service, "stop", node) in before, (dep, service)
    if ("cinder-volume", "stop", node) in waits:  # the single instance ran there
        assert ("cinder-volume", "stop", node) in waits[("cinder-scheduler", "stop", node)]
    demote = waits[("galera", "demote", node)]
    assert not any(k[0].startswith("nova-") for k in demote), sorted(demote)
