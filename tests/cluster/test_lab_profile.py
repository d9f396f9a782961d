"""The whole controller profile in the lab, and the cloud working through a node crash.

One lab for the module (``lab up --whole-profile`` through the library, in a private
registry): Galera, memcached, RabbitMQ (a cluster with a third member on the
arbitrator; the services' RPC topics quorum queues), Keystone (gunicorn in the profile's
``apache`` place), Glance, Placement, Nova API/scheduler/conductor/novncproxy, the
Neutron API (ML2 openvswitch) with its RPC server and the Open vSwitch, DHCP, L3 and
metadata agents over Open vSwitch's userspace datapath, Cinder
API/scheduler/volume/backup, all from the pinned venvs under the ocf:pacestack
agents with the constraints `cluster apply` generates from ``profile = controller``;
nova-compute with the fake driver and an Open vSwitch agent on the arbitrator. Time
budget: ~5 min on 2 shared cores (lab up ~2 min, the drill's node crash with the
victim's return ~2 min).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
from pacestack.cluster import description as desc_mod
from pacestack.cluster import drill
from pacestack.cluster.drill import cli, scenarios
from pacestack.cluster.drill.lab_target import LabTarget
from pacestack.cluster.lab import cloud, cloud_probe, neutron_agents, stack

from pacestack import proc
from tests.fixtures import openstack_build

TIMINGS: dict[str, object] = {}


@pytest.fixture(scope="module")
def profile_lab(ocf_provider, openstack_venv, openstack_dump) -> Iterator[stack.Lab]:
    registry = stack.private_registry("profile")
    messages: list[str] = []
    t0 = time.monotonic()
    lab = stack.up(stack.UpOptions(whole_profile=True, venv=openstack_venv,
                                   schemas=openstack_dump.parent, registry=registry,
                                   glance_venv=openstack_build.ensure_glance_venv(),
                                   timeout=300), messages.append)
    TIMINGS["lab up"] = round(time.monotonic() - t0, 1)
    lab.progress = messages  # type: ignore[attr-defined]
    try:
        yield lab
    finally:
        stack.remove_registry(registry)
        print(f"\nwhole-profile lab timings: {TIMINGS}")


def _where(lab: stack.Lab) -> dict[str, list[tuple[str, str]]]:
    return {rid: sorted((p["node"], p["role"]) for p in where)
            for rid, where in lab.status()["resources"].items()}


def test_status_lists_every_resource_where_the_description_says(profile_lab):
    lab = profile_lab
    desc = desc_mod.load([lab.info.description], check_agents=False)
    placed = _where(lab)
    both = sorted(lab.cluster.node_names)
    for res in desc.resources:
        where = placed.get(res.name, [])
        if res.mode == "promotable":
            assert where == [(n, "Promoted") for n in both], (res.name, where)
        elif res.mode == "single":
            assert len(where) == 1 and where[0][1] == "Started", (res.name, where)
        else:
            assert where == [(n, "Started") for n in both], (res.name, where)
    names = {r.name for r in desc.resources}
    # the profile's services, RabbitMQ and memcached included, as the lab runs them
    assert {"memcached", "rabbitmq", "apache", "glance-api", "placement-api", "nova-api",
            "nova-scheduler", "nova-conductor", "nova-novncproxy", "neutron-server",
            "cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup",
            "neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
            "neutron-metadata-agent", "neutron-rpc-server", "openvswitch"} <= names
    assert not desc.disabled, desc.disabled
    assert len(placed["vip"]) == 1
    # lab up reported each service as it came up, and the whole stack's time
    progress = "\n".join(lab.progress)
    for name in ("rabbitmq", "nova-conductor", "cinder-backup"):
        assert f"  {name} running (" in progress
    assert "the whole stack took" in progress
    TIMINGS["stack ready (s)"] = lab.info.timings.get("ready")


def _agents_alive(lab: stack.Lab) -> set[tuple[str, str]]:
    return {(a["type"], a["host"]) for a in cloud.agents(lab) if a["alive"]}


def _agents_wanted(lab: stack.Lab) -> set[tuple[str, str]]:
    return {(kind, node) for node in lab.cluster.node_names
            for kind in neutron_agents.AGENT_TYPES} | {("Open vSwitch agent", lab.info.compute)}


def test_neutron_agents_alive_in_the_agent_list(profile_lab):
    """`openstack network agent list` through the VIP: the Open vSwitch, DHCP, L3 and
    metadata agents of both controllers and the compute's Open vSwitch agent, alive."""
    lab = profile_lab
    assert _agents_wanted(lab) <= _agents_alive(lab)
    assert "Neutron agents reporting" in "\n".join(lab.progress)
    # each controller's switch has the integration and tunnel bridges its agent made
    for node in lab.cluster.nodes:
        bridges = node.run(["ovs-vsctl", "list-br"]).stdout.split()
        assert {"br-int", "br-tun"} <= set(bridges), (node.name, bridges)


def test_cloud_sequence_attaches_a_volume_and_deletes_what_it_made(profile_lab):
    """The user sequence through the VIP: the volume is attached to the server (in-use,
    the server in its attachments) and detached again (available), the steps that
    need nothing of each other at once; afterwards the cloud holds as many servers,
    volumes, ports, subnets, networks and images as before (counted through the APIs)."""
    lab = profile_lab
    before = cloud.inventory(lab)
    got = cloud.sequence(lab)
    assert got["ok"], got
    assert got["server_host"] == lab.info.compute and got["image_listed"]
    assert got["attached_to"] and got["detached"] == "available", got
    assert list(got["steps"])[-2:] == ["attach", "detach"], got["steps"]
    # steps that need nothing of each other ran at once: the volume was made while
    # the image uploaded and the server booted, the attachment after both
    steps, began = got["steps"], got["began"]
    assert began["volume"] < steps["image"] < steps["server"], got
    assert began["attach"] >= max(steps["server"], steps["volume"]), got
    assert got["cleanup"]["left"] == [], got["cleanup"]
    assert got["cleanup"]["deleted"].get("servers") == 1, got["cleanup"]
    assert cloud.inventory(lab) == before
    TIMINGS["cloud sequence (s)"] = got["seconds"]
    TIMINGS["cloud sequence steps (began-ended s)"] = {
        n: f"{began[n]}-{end}" for n, end in steps.items()}


MEMBERS = ["rabbit@arbitrator", "rabbit@controller01", "rabbit@controller02"]
# RPC topics of the profile's services: casts wait in these for their server
TOPICS = ("conductor", "scheduler", "compute", "cinder-scheduler", "cinder-volume")


def _rabbitmqctl(node, *args: str) -> object:
    res = node.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", *args, "--formatter", "json"],
                   env={"HOME": "/var/lib/rabbitmq"}, check=False, timeout=60)
    assert res.returncode == 0, (node.name, res.stderr[-300:])
    return json.loads(res.stdout)


def _members(node) -> list[str]:
    return sorted(_rabbitmqctl(node, "cluster_status")["running_nodes"])


def test_rabbitmq_is_one_cluster_and_the_services_queues_are_quorum_queues(profile_lab):
    """Both controllers' brokers (under Pacemaker) and the arbitrator's are one
    RabbitMQ cluster, as each member sees it; the services' RPC topics are quorum
    queues with a replica on each of the three."""
    lab = profile_lab
    for node in [*lab.cluster.nodes, lab.cluster.arbitrator]:
        assert _members(node) == MEMBERS, node.name
    queues = {q["name"]: q for q in _rabbitmqctl(lab.cluster.nodes[0], "list_queues",
                                                 "name", "type", "members")}
    for topic in TOPICS:
        assert queues[topic]["type"] == "quorum", queues.get(topic)
        assert sorted(queues[topic]["members"]) == MEMBERS, queues[topic]


def _queue_members(node, name: str) -> list[str] | None:
    queues = {q["name"]: q for q in _rabbitmqctl(node, "list_queues", "name", "members")}
    return sorted(queues[name]["members"]) if name in queues else None


def _raft(node, name: str) -> dict[str, tuple[str, int]]:
    """member -> (Raft state, commit index) of a quorum queue, as rabbitmq-queues sees it."""
    res = node.run(["/usr/lib/rabbitmq/bin/rabbitmq-queues", "quorum_status", name,
                    "--formatter", "json"], env={"HOME": "/var/lib/rabbitmq"}, check=False,
                   timeout=60)
    if res.returncode != 0:
        return {}
    return {row["Node Name"]: (row["Raft State"], row["Commit Index"])
            for row in json.loads(res.stdout)}


def _caught_up(node, name: str) -> bool:
    """Every member's replica of quorum queue ``name`` at one commit index, each a
    leader or a follower, as ``node`` sees it."""
    raft = _raft(node, name)
    return (sorted(raft) == MEMBERS and len({c for _, c in raft.values()}) == 1
            and all(state in ("leader", "follower") for state, _ in raft.values()))


def test_a_rabbitmq_member_back_serves_quorum_queues_declared_while_it_was_away(profile_lab):
    """RabbitMQ killed on the controller without the VIP: a quorum queue declared
    while it is down names all three members; Pacemaker starts it again and its
    replica of that queue follows the leader, caught up, so the queue survives the
    next loss of either other member."""
    lab = profile_lab
    holder = _where(lab)["vip"][0][0]
    other = next(n for n in lab.cluster.nodes if n.name != holder)
    arb = lab.cluster.arbitrator
    LabTarget(lab).kill(other.name, "rabbitmq")
    assert proc.wait_for(lambda: f"rabbit@{other.name}" not in _members(arb), 30,
                         interval=0.5)
    name = "pacestack-lab-grow"
    assert cloud.queue(lab, put=1, name=name) == 1
    TIMINGS["quorum queue declared with a member down: members"] = _queue_members(arb, name)
    TIMINGS["... its Raft states while down"] = _raft(arb, name)
    t0 = time.monotonic()
    assert proc.wait_for(lambda: _members(arb) == MEMBERS, 120, interval=2)
    assert proc.wait_for(lambda: _caught_up(arb, name), 60, interval=2), _raft(arb, name)
    TIMINGS["rabbitmq -9: its replica caught up (s)"] = round(time.monotonic() - t0, 1)
    assert cloud.queue(lab, name=name, drop=True) == 1
    lab.observer().run(["crm_resource", "--cleanup", "--resource", "rabbitmq"],
                       check=False, timeout=60)


def test_the_arbitrators_broker_killed_the_cloud_and_its_queues_work_on(profile_lab):
    """RabbitMQ killed -9 on the arbitrator (outside Pacemaker, as garbd): the two
    controllers' members are a majority of every quorum queue, so what was confirmed
    before is all there, a publish is confirmed and the user sequence works while it
    is down; started again, its member rejoins and its replica catches up."""
    lab = profile_lab
    arb, c1 = lab.cluster.arbitrator, lab.cluster.nodes[0]
    name = "pacestack-lab-arb"
    assert cloud.queue(lab, put=5, name=name) == 5
    beams = [p for p in arb.pids()
             if proc.cmdline(p) and proc.cmdline(p)[0].endswith("beam.smp")]
    assert beams, "no RabbitMQ (beam.smp) on the arbitrator"
    for pid in beams:
        proc.signal_pid(pid, signal.SIGKILL)
    assert proc.wait_for(lambda: "rabbit@arbitrator" not in _members(c1), 30, interval=0.5)
    try:
        assert cloud.queue(lab, name=name) == 5
        assert cloud.queue(lab, put=1, name=name) == 6
        got = cloud.sequence(lab)
        assert got["ok"], got
        TIMINGS["cloud sequence, arbitrator's broker down (s)"] = got["seconds"]
    finally:
        stack.start_rabbitmq(lab)
        stack.await_rabbitmq(arb, 120)
    assert proc.wait_for(lambda: _members(c1) == MEMBERS, 60, interval=2)
    assert proc.wait_for(lambda: _caught_up(c1, name), 60, interval=2), _raft(c1, name)
    assert cloud.queue(lab, name=name, drop=True) == 6


def test_node_crash_drill_apis_and_the_cloud_recover(profile_lab):
    """The drill's node-crash scenario on the whole controller: the VIP's node
    powered off, each API and the user sequence measured through the VIP from the
    arbitrator while the survivor takes over, then the node booted again."""
    lab = profile_lab
    inventory = cloud.inventory(lab)
    holder = _where(lab)["vip"][0][0]
    # confirmed messages in a quorum queue before the VIP's node dies
    assert cloud.queue(lab, put=5) == 5
    report = drill.run(LabTarget(lab), ["node-crash"], work_dir=lab.cluster.dir / "drill",
                       timeout=240)
    r = report.scenarios[0]
    TIMINGS["drill node-crash"] = {k: v for k, v in r.to_dict().items()
                                   if k not in ("timeline", "lost_writes")}
    print("\n" + cli.render_table(report))
    assert r.victim == holder and r.error is None, r.error
    # what was queued before the crash is all there, through the VIP on the survivor
    TIMINGS["quorum queue after failover (5 before)"] = held = cloud.queue(lab)
    assert held == 5
    assert r.cloud_measured and set(r.apis_s) == set(cloud_probe.APIS), r.apis_s
    assert all(v is not None for v in r.apis_s.values()), r.apis_s
    assert r.cloud_s is not None, (r.cloud_attempts, r.cloud_error)
    assert r.writes_acked > 0 and r.lost_writes == [], r.lost_writes[:20]
    # the drill's own quorum queue: every confirmed message still there on the two
    # members left while the victim was down
    assert (r.messages_put, r.messages_lost) == (scenarios.MESSAGES, 0), r.notes
    assert r.ok, r.to_dict()
    # the clean-up after every attempt had ended deleted what they all made
    assert cloud.inventory(lab) == inventory
    # the victim, booted again with an empty switch, has its agents reporting again
    t_back = time.monotonic()
    assert proc.wait_for(lambda: _agents_wanted(lab) <= _agents_alive(lab), 120,
                         interval=2), _agents_alive(lab)
    TIMINGS["agents alive after the drill (s)"] = round(time.monotonic() - t_back, 1)
    # the victim's broker, booted again, rejoined the cluster with its disk
    assert proc.wait_for(lambda: _members(lab.cluster.arbitrator) == MEMBERS, 120,
                         interval=3)
    assert cloud.queue(lab, drop=True) == 5
