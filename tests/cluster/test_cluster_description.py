"""Bad cluster descriptions: one-line errors naming the file and option, nothing written.

Runs the real ``pacestack cluster apply`` entry (in-process) against CIB files; the
agents are resource-agents' own, so pcs checks them for real.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from pacestack.cluster import description

from pacestack.cli import main
from pacestack.config_check import check_file
from pacestack.config_command import sample_text
from pacestack.errors import ConfigError

BASE = """\
[cluster]
nodes = controller01, controller02
addresses = 10.0.0.11, 10.0.0.12
profile = none

[vip]
address = 10.0.0.10
fronts = api

[resource:db]
agent = ocf:heartbeat:Stateful
mode = promotable

[resource:api]
agent = ocf:heartbeat:Dummy
after = db
"""


def _apply(tmp_path, text: str, capsys, existing: bool = False):
    conf = tmp_path / "cluster.conf"
    conf.write_text(text)
    cib = tmp_path / "cib.xml"
    if existing:
        cib.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                      check=True).stdout)
    before = hashlib.sha256(cib.read_bytes()).hexdigest() if existing else None
    rc = main(["cluster", "apply", "-d", str(conf), "--cib-file", str(cib)])
    err = capsys.readouterr().err
    after = hashlib.sha256(cib.read_bytes()).hexdigest() if cib.exists() else None
    return rc, err, conf, before, after


BAD = {
    "unknown agent": (
        BASE.replace("agent = ocf:heartbeat:Dummy", "agent = ocf:heartbeat:NoSuchAgent"),
        "[resource:api] agent: unknown agent 'ocf:heartbeat:NoSuchAgent'"),
    "agent syntax": (
        BASE.replace("agent = ocf:heartbeat:Dummy", "agent = Dummy"),
        "[resource:api] agent: unknown agent 'Dummy'"),
    "after a missing resource": (
        BASE.replace("after = db", "after = db, keystone"),
        "[resource:api] after: no resource named 'keystone'"),
    "ordering cycle": (
        BASE.replace("mode = promotable", "mode = promotable\nafter = api"),
        "after: ordering cycle: "),
    "duplicate group": (
        BASE + "\n[resource:api]\nagent = ocf:heartbeat:Dummy\n",
        "[resource:api]: duplicate name: the group appears twice"),
    "resource named like the VIP": (
        BASE + "\n[resource:vip]\nagent = ocf:heartbeat:Dummy\n",
        "[resource:vip]: duplicate name: vip is also [vip] resource"),
    "VIP not an address": (
        BASE.replace("address = 10.0.0.10", "address = controller.domain"),
        "[vip] address: 'controller.domain' is not an IP address"),
    "VIP missing": (
        BASE.replace("address = 10.0.0.10\n", ""),
        "[vip] address: missing"),
    "node listed twice": (
        BASE.replace("nodes = controller01, controller02", "nodes = controller01, controller01"),
        "[cluster] nodes: controller01 is listed twice"),
    "address count": (
        BASE.replace("addresses = 10.0.0.11, 10.0.0.12", "addresses = 10.0.0.11"),
        "[cluster] addresses: 1 addresses for 2 nodes"),
    "bad address": (
        BASE.replace("addresses = 10.0.0.11, 10.0.0.12", "addresses = 10.0.0.11, 10.0.0.312"),
        "[cluster] addresses: '10.0.0.312' is not an IP address"),
    "unknown option": (
        BASE.replace("after = db", "afterwards = db"),
        "[resource:api] afterwards: unknown option afterwards"),
    "bad mode": (
        BASE.replace("mode = promotable", "mode = master"),
        "[resource:db] mode: bad value 'master'"),
    "bad params line": (
        BASE.replace("after = db", "after = db\nparams = fake"),
        "[resource:api] params: bad value 'fake': expected key=value"),
    "unknown fence agent": (
        BASE + "\n[fencing:f1]\nagent = fence_nosuch\n",
        "[fencing:f1] agent: unknown fence agent 'fence_nosuch'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_description_is_one_line_naming_file_and_option(tmp_path, capsys, case):
    text, expected = BAD[case]
    rc, err, conf, _, after = _apply(tmp_path, text, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pacestack: error: {conf}: "), lines[0]
    assert expected in lines[0]
    assert after is None, "nothing may be written"


def test_pcs_refusal_names_the_resource_and_leaves_the_cib_alone(tmp_path, capsys):
    # the description is well-formed, but pcs knows Dummy has no such parameter
    text = BASE.replace("after = db", "after = db\nparams = no_such_param=1")
    rc, err, conf, before, after = _apply(tmp_path, text, capsys, existing=True)
    assert rc == 2, err
    line = err.strip()
    assert "\n" not in line
    assert line.startswith(f"pacestack: error: {conf}: [resource:api]: pcs refused")
    assert "no_such_param" in line
    assert before == after


def test_profile_entries_can_be_overridden_and_disabled(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(BASE.replace("profile = none", "profile = controller")
                    .replace("fronts = api\n", "")
                    + "\n[resource:nova-novncproxy]\nenabled = false\n"
                    "\n[resource:memcached]\nmode = single\n")
    desc = description.load([str(conf)], check_agents=False)
    names = [r.name for r in desc.resources]
    assert "nova-novncproxy" not in names and desc.disabled == ("nova-novncproxy",)
    memcached = desc.resource("memcached")
    assert memcached.mode == "single" and memcached.origin == str(conf)
    assert memcached.params == {"systemd_unit": "memcached"}  # the rest stays built-in
    assert {"db", "api", "galera", "cinder-volume", "cinder-backup"} <= set(names)
    # dependency order: everything a resource starts after comes first
    pos = {n: i for i, n in enumerate(names)}
    for r in desc.resources:
        assert all(pos[d] < pos[r.name] for d in r.after), r.name
    assert desc.resource("cinder-volume").mode == "single"
    assert desc.resource("galera").clone_meta["promoted-max"] == "2"
    # a promotable clone described without clone meta still gets notifications
    assert desc.resource("db").clone_meta == {"interleave": "true", "promoted-max": "2",
                                              "notify": "true"}


def test_clients_reconnect_makes_the_orders_after_a_resource_asymmetrical(tmp_path):
    """Set on a resource of one's own, and cleared on a built-in one: the orders
    after it follow, the others stay Mandatory."""
    from pacestack.cluster import plan

    conf = tmp_path / "c.conf"
    conf.write_text(BASE.replace("profile = none", "profile = controller")
                    .replace("fronts = api\n", "")
                    .replace("mode = promotable\n", "mode = promotable\nclients_reconnect = true\n")
                    + "\n[resource:rabbitmq]\nclients_reconnect = false\n")
    desc = description.load([str(conf)], check_agents=False)
    symmetrical = {c.id: c.attrs.get("symmetrical", "true") for c in
                   plan.wanted_constraints(desc) if c.kind == "order"}
    assert symmetrical["order-db-then-api"] == "false"
    assert symmetrical["order-galera-then-apache"] == \
        symmetrical["order-memcached-then-apache"] == "false"
    assert symmetrical["order-rabbitmq-then-nova-api"] == "true"
    assert symmetrical["order-neutron-openvswitch-agent-then-neutron-dhcp-agent"] == "true"


def test_config_check_and_sample_understand_the_description(tmp_path):
    assert check_file("examples/seed-cluster.conf") == []
    bad = tmp_path / "bad.conf"
    bad.write_text(BASE.replace("after = db", "after = db\nflavour = x"))
    codes = [(f.code, f.subject) for f in check_file(str(bad))]
    assert ("CONFIG_UNKNOWN_OPTION", f"{bad} [resource:api] flavour") in codes
    sample = sample_text()
    for text in ("[cluster]", "[vip]", "[arbitrator]", "#shared_host = controller",
                 "#fronts = galera,rabbitmq,apache", "One key=value per line"):
        assert text in sample, text


def test_missing_description_is_a_usage_error():
    with pytest.raises(ConfigError, match="no cluster description"):
        description.load([])
