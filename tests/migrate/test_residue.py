"""Every old name in every live row: found, and accounted for (migrate/residue.py)."""

from __future__ import annotations

import contextlib
import json

import pytest
from pacestack.migrate import apply as applymod
from pacestack.migrate import plan as planmod
from pacestack.migrate import residue, verify
from pacestack.migrate import rollback as rbmod

from tests.migrate import seed_cloud

OLD_DHCP = residue.dhcp_device_prefix("old-control")
# (text, counts as naming an old name)
TOKEN_CASES = [
    ("old-control", True),
    ("OLD-CONTROL", True),  # host names are case-insensitive
    ("old-control@rbd#rbd", True),
    ("old-control.", True),  # a sentence's full stop ends the name
    ("old-control-bak", False),  # another host that merely starts with it
    ("old-control.example.com", False),
    ("xold-control", False),
    ("rabbit://openstack:pw@old-control:5672/", True),
    ("rabbit://a:b@h1:5672,a:b@old-control:5672/", True),
    ("http://swift.example:8080/v1/old-control/AUTH_x", False),  # only in a URL path
    ("http://old-control-bak/old-control", False),
    ("http://swift/v1/x then old-control", True),
    ('{"host": "compute01", "ip": "10.0.0.31"}', True),
    ("compute01.domain", True),
    ("compute010", False),
    (f"{OLD_DHCP}-91ad9c57-06df-5c87-8d81-3070931eb4e9", True),
    ("physnet1", True),
    ("PHYSNET1", False),  # physical networks are case-sensitive
    ("physnet10", False),
    ("bridge", True),  # a vif_type
    ('[{"type": "bridge", "id": "x"}]', True),
    ('{"bridge": "br-int", "type": "ovs"}', False),
    ("brq91ad9c57-06", True),
    ("linuxbridge", True),
    ("neutron-linuxbridge-agent", False),
    ("Linux bridge agent", True),
    ("controller", False),
]


def _account(seeded, changes=()):
    with contextlib.closing(seeded.cloud()) as c:
        return residue.account(c, seeded.mapping(), changes)


def _entries(acc, column: str) -> dict[str, int]:
    return {e.outcome: e.rows for e in acc.entries if e.where == column}


def test_token_rule_same_in_python_and_mariadb(seeded):
    """The search runs in MariaDB (PCRE2) and, on planned new values, in Python: one rule."""
    with contextlib.closing(seeded.cloud()) as c:
        matcher = residue.Matcher(residue.old_names(c, seeded.mapping()))
        with c.conn.cursor() as cur:
            for text, expected in TOKEN_CASES:
                assert matcher.hits(text) is expected, text
                # the collation of most service columns: case-insensitive
                cur.execute("SELECT CONVERT(%s USING utf8mb4) COLLATE utf8mb4_general_ci "
                            "REGEXP %s", [text, matcher.sql])
                assert bool(cur.fetchone()[0]) is expected, ("mariadb", text)
                # the literal prefilter never rules out a hit
                cur.execute("SELECT %s REGEXP %s OR %s IN %s", [text, matcher.cheap_sql, text,
                                                                matcher.whole_values])
                assert cur.fetchone()[0] or not expected, ("prefilter", text)


def test_long_values_judged_as_short_ones(seeded):
    """A long value (an info cache) takes the per-literal prefilter, a short one the
    prefix tree: the same verdicts, wherever the name sits, in any case or script."""
    from pacestack.migrate import nova

    # a rewritten info cache, as the plan judges it
    pad = json.dumps([nova.rewrite_vif(seed_cloud.vif(seed_cloud.uid("p"), seed_cloud.uid("n"),
                                                      "fa:16:3e:00:00:01", "10.0.0.5"),
                                       None, {"port_filter": True}, "br-int")])
    assert len(pad) > 600
    with contextlib.closing(seeded.cloud()) as c:
        matcher = residue.Matcher(residue.old_names(c, seeded.mapping()))
    assert not matcher.hits(pad)
    assert matcher.hits(f"{pad[:300]} old-control {pad[300:]}")
    for text, _expected in TOKEN_CASES:
        for long in (f"{pad} {text}", f"{text} {pad}", f"{pad[:300]} {text} {pad[300:]}",
                     f"\u00e9\u0130\u2603 {text} " + "x" * 300, f"{pad}{text}{pad}"):
            # the verdict of the prefix tree alone, for any length
            tree = matcher._plain_re.search(long.lower()) is not None  # noqa: SLF001
            assert matcher.hits(long) is (tree and bool(matcher.spans(long))), (text, long[:40])
        for probe in (text, text.upper(), f"{pad} {text}".lower(), f"\u0130{text}" * 40):
            low = probe.lower()
            assert (any(p in low for p in matcher._plain)  # noqa: SLF001
                    is (matcher._plain_re.search(low) is not None)), probe[:40]  # noqa: SLF001


def test_old_names_from_the_mapping_and_the_cloud(seeded):
    with contextlib.closing(seeded.cloud()) as c:
        names = {(n.kind, n.text) for n in residue.old_names(c, seeded.mapping())}
    assert {("service-host", "old-control"), ("url-host", "ocata-vm"),
            ("compute-host", "compute01"), ("compute-node", "compute01.domain"),
            ("dhcp-device", OLD_DHCP), ("physnet", "physnet1"), ("physnet", "dmz"),
            ("linuxbridge", "Linux bridge agent")} <= names
    assert not any(n[1] == "provider" for n in names)  # still in use after the cutover


def test_display_names_prefix_hosts_and_url_paths_are_not_residue(seeded):
    """A display name, a longer host and a URL path naming the old host are not hits."""
    i = seeded.seed.instances
    seeded.sql("nova", "UPDATE instances SET display_name = 'old-control', hostname = "
                       "'compute01' WHERE uuid = %s", [i["vm-a"]])
    seeded.sql("cinder", "UPDATE volumes SET display_name = 'old-control backup', "
                         "display_description = 'from old-control' WHERE id = %s",
               [seeded.seed.volumes["v2"]])
    seeded.sql("cinder", "INSERT INTO services (created_at, deleted, report_count, disabled, "
                         "host, `binary`, topic, uuid) VALUES (%s, 0, 1, 0, 'old-control-bak', "
                         "'cinder-backup', 'cinder-backup', %s)",
               [seed_cloud.NOW, seed_cloud.uid("bak")])
    acc = _account(seeded)
    cols = {e.where for e in acc.entries}
    assert "nova.instances.display_name" not in cols and "nova.instances.hostname" not in cols
    assert not {"cinder.volumes.display_name", "cinder.volumes.display_description"} & cols
    # old-control@rbd(2) services are hits; old-control-bak is not one of them
    assert _entries(acc, "cinder.services.host") == {"uncovered": 4}
    # the swift endpoint names ocata-vm only in its path: 15 of the 18 URLs are hits
    assert _entries(acc, "keystone.endpoint.url") == {"uncovered": 15}


def test_plan_accounts_for_every_hit_of_the_seed(seeded):
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    acc = json.loads(r.stdout)["accounting"]
    assert acc["uncovered_rows"] == 0
    assert {"cinder", "keystone", "neutron", "nova", "nova_api", "nova_cell0",
            "placement"} == set(acc["databases"])
    out = {(e["column"], e["outcome"]): e for e in acc["entries"]}
    for col in ("nova.services.host", "nova_api.cell_mappings.transport_url",
                "neutron.agents.host", "neutron.ports.device_id",
                "neutron.ml2_port_bindings.host", "cinder.image_volume_cache_entries.host",
                "cinder.volume_attachment.connector", "keystone.endpoint.url"):
        assert (col, "rewritten") in out, col
    assert out[("nova.instances.host", "kept")]["by"].startswith("deleted row")
    assert "registration" in out[("placement.resource_providers.name", "kept")]["by"]
    # the transport URL's password never leaves the database
    assert "seed-rabbit-pw" not in r.stdout


def test_uncovered_residue_refused_unless_the_mapping_keeps_it(seeded):
    """A live row naming the old host in a column no step rewrites: plan refuses (exit 2,
    one line naming db.table.column, rows, an example); [keep] accounts for it."""
    i = seeded.seed.instances
    seeded.sql("nova", "INSERT INTO instance_system_metadata (created_at, instance_uuid, "
                       "`key`, value, deleted) VALUES (%s, %s, 'image_source_host', "
                       "'old-control', 0)", [seed_cloud.NOW, i["vm-a"]])
    row = seeded.sql("nova", "SELECT id FROM instance_system_metadata")[0][0]
    before = seeded.checksums()
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 2
    assert (f"RESIDUE_UNCOVERED nova.instance_system_metadata.value: 1 row, e.g. id={row}, "
            "naming old-control") in r.stderr
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 2 and seeded.checksums() == before
    seeded.mapping(seed_cloud.SEED_MAPPING + "[keep]\nnova.instance_system_metadata.value = "
                   "image provenance, informational\n")
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    kept = [e for e in json.loads(r.stdout)["accounting"]["entries"]
            if e["column"] == "nova.instance_system_metadata.value"]
    assert kept == [{"column": "nova.instance_system_metadata.value", "outcome": "kept",
                     "by": "mapping [keep]: image provenance, informational", "rows": 1,
                     "example": {"id": row}, "names": ["old-control"]}]


def test_every_cell_is_searched(seeded):
    """cell0 is found through nova_api.cell_mappings and searched like the others."""
    seeded.sql("nova_cell0", "INSERT INTO key_pairs (created_at, name, user_id, fingerprint, "
                             "public_key, deleted, type) VALUES (%s, 'k', 'u1', 'f', "
                             "'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 root@old-control', 0, 'ssh')",
               [seed_cloud.NOW])
    with contextlib.closing(seeded.cloud()) as c:
        p = planmod.build(c, seeded.mapping())
    assert [e.where for e in p.accounting.uncovered] == ["nova_cell0.key_pairs.public_key"]
    assert [f.code for f in p.refusals] == ["RESIDUE_UNCOVERED"]


def test_verify_after_apply_zero_uncovered_then_fails_on_planted_residue(seeded):
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 0, r.stderr
    r = seeded.cli("verify", "--mapping", str(seeded.mapping_path), "--skip-upstream",
                   "--format", "json")
    found = json.loads(r.stdout)["findings"]
    assert r.returncode == 0, [f for f in found if f["severity"] == "error"]
    scanned = next(f for f in found if f["code"] == "RESIDUE_SCANNED")
    assert scanned["message"].endswith("0 rows uncovered")
    assert "RESIDUE_UNCOVERED" not in r.stdout
    # a row the services wrote after the cutover still naming the old controller
    seeded.sql("neutron", "UPDATE agents SET configurations = %s WHERE agent_type = "
                          "'L3 agent'", [json.dumps({"agent_mode": "legacy",
                                                     "ex_gw_host": "old-control"})])
    r = seeded.cli("verify", "--mapping", str(seeded.mapping_path), "--skip-upstream")
    assert r.returncode == 1
    assert "RESIDUE_UNCOVERED" in r.stdout and "neutron.agents.configurations" in r.stdout


def test_seed_residue_rewritten_as_the_services_expect(seeded):
    s, p, i = seeded.seed, seeded.seed.ports, seeded.seed.instances
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping())
    assert not r.plan.refusals and r.changes == seed_cloud.SEED_CHANGES
    # nova: the conductor renamed, the old scheduler retired (the new one runs), cell1's URL
    svc = set(seeded.sql("nova", "SELECT host, `binary`, deleted != 0 FROM services "
                                 "WHERE `binary` != 'nova-compute'"))
    assert svc == {("controller", "nova-conductor", 0), ("controller", "nova-scheduler", 0),
                   ("old-control", "nova-scheduler", 1)}
    assert seeded.sql("nova_api", "SELECT transport_url FROM cell_mappings WHERE name = "
                                  "'cell1'")[0][0] == \
        "rabbit://openstack:seed-rabbit-pw@controller:5672/"
    # neutron agents: DHCP merged into the new controller's (its networks follow), L3 and
    # metadata renamed with their ids, so the router stays scheduled on the same agent
    agents = {(t, h) for t, h in seeded.sql("neutron", "SELECT agent_type, host FROM agents")}
    assert agents == {("DHCP agent", "controller"), ("L3 agent", "controller"),
                      ("Metadata agent", "controller"), ("Open vSwitch agent", "controller"),
                      ("Open vSwitch agent", "compute05")}
    new_dhcp = seed_cloud.uid("agent/DHCP agent/controller")
    assert set(seeded.sql("neutron", "SELECT network_id, dhcp_agent_id FROM "
                                     "networkdhcpagentbindings")) == \
        {(s.networks["selfservice-1137"], new_dhcp), (s.networks["selfservice-1169"], new_dhcp)}
    assert seeded.sql("neutron", "SELECT l3_agent_id FROM routerl3agentbindings") == \
        ((seed_cloud.uid("agent/L3 agent/old-control"),),)
    # the DHCP port is the new host's agent's own (neutron's derivation)
    assert seeded.sql("neutron", "SELECT device_id FROM ports WHERE id = %s",
                      [p["dhcp"]])[0][0] == \
        seed_cloud.dhcp_device_id("controller", s.networks["selfservice-1137"])
    # one ACTIVE binding on the mapped host, levels to match; the unbound port untouched
    assert seeded.sql("neutron", "SELECT host, status, vif_type FROM ml2_port_bindings "
                                 "WHERE port_id = %s", [p["vm-a"]]) == \
        (("compute05", "ACTIVE", "ovs"),)
    assert seeded.sql("neutron", "SELECT host, level, driver FROM ml2_port_binding_levels "
                                 "WHERE port_id = %s", [p["vm-a"]]) == \
        (("compute05", 0, "openvswitch"),)
    assert seeded.sql("neutron", "SELECT host, vif_type FROM ml2_port_bindings WHERE "
                                 "port_id = %s", [p["unbound"]]) == (("", "unbound"),)
    # cinder: the image cache keeps backend and pool; the connector follows its instance
    assert seeded.sql("cinder", "SELECT host FROM image_volume_cache_entries") == \
        (("controller@rbd#rbd",),)
    conn = json.loads(seeded.sql("cinder", "SELECT connector FROM volume_attachment")[0][0])
    assert conn == {**json.loads(seed_cloud.CONNECTOR), "host": "compute05"}
    assert i  # the seed has instances: the plan below must move none of them again
    with contextlib.closing(seeded.cloud()) as c:
        assert planmod.build(c, seeded.mapping()).changes == []
        assert not [f for f in verify.residue(c, seeded.mapping()) if f.code ==
                    "RESIDUE_UNCOVERED"]


def test_rollback_restores_the_new_rules_rows(seeded):
    before = seeded.checksums()
    with contextlib.closing(seeded.cloud()) as c:
        r = applymod.apply(c, seeded.mapping())
        assert r.changes == seed_cloud.SEED_CHANGES
        assert seeded.checksums() != before
        rb = rbmod.rollback(c, r.run_id)
    assert rb.checksums_ok and seeded.checksums() == before


@pytest.mark.parametrize("choice", ["remove"])
def test_remove_by_explicit_choice(seeded, choice):
    """nova_control_services / neutron_agents = remove: the old controller's rows go,
    with their scheduling (journaled, not by the foreign keys' cascade)."""
    seeded.mapping(seed_cloud.SEED_MAPPING.replace(
        "[options]\n", f"[options]\nnova_control_services = {choice}\n"
                       f"neutron_agents = {choice}\n"))
    with contextlib.closing(seeded.cloud()) as c:
        p = planmod.build(c, seeded.mapping())
        assert not p.refusals, p.refusals
        deleted_bindings = [ch for ch in p.changes if ch.table in (
            "networkdhcpagentbindings", "routerl3agentbindings") and ch.op == "delete"]
        assert len(deleted_bindings) == 3
        applymod.apply(c, seeded.mapping())
    assert set(seeded.sql("nova", "SELECT host, `binary` FROM services WHERE deleted = 0 "
                                  "AND `binary` != 'nova-compute'")) == \
        {("controller", "nova-scheduler")}
    assert seeded.sql("neutron", "SELECT COUNT(*) FROM agents WHERE host = 'old-control' OR "
                                 "agent_type IN ('L3 agent', 'Metadata agent')") == ((0,),)
    assert seeded.sql("neutron", "SELECT COUNT(*) FROM routerl3agentbindings") == ((0,),)


def test_cell_database_url_rewritten_password_masked(seeded):
    """A cell's database_connection naming the old controller: its host is rewritten
    (credentials, database and query kept); plan output masks the password."""
    url = seeded.sql("nova_api", "SELECT database_connection FROM cell_mappings WHERE "
                                 "name = 'cell1'")[0][0]
    old = url.replace("@127.0.0.1", "@old-control")
    seeded.sql("nova_api", "UPDATE cell_mappings SET database_connection = %s WHERE "
                           "name = 'cell1'", [old])
    password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert password not in r.stdout
    ch = [c for s in json.loads(r.stdout)["steps"] for c in s["changes"]
          if c["table"] == "nova_api.cell_mappings"][0]
    assert ch["after"]["database_connection"] == \
        old.replace("@old-control", "@controller").replace(password, "***")


def test_compute_renamed_in_place(seeded):
    """compute01 becomes compute07 where it stands: its service, node and provider keep
    their ids and uuids, allocations stay, the host mapping and provider name follow.
    Only when the mapping says so: an unregistered new host is otherwise refused."""
    i, p = seeded.seed.instances, seeded.seed.ports
    text = seed_cloud.SEED_MAPPING.replace("compute01 = compute05 compute05.domain",
                                           "compute01 = compute07 compute07.domain")
    with contextlib.closing(seeded.cloud()) as c:
        refused = planmod.build(c, seeded.mapping(text)).refusals
    assert [f.code for f in refused] == ["NEW_COMPUTE_NOT_REGISTERED"]
    assert "add 'rename' to rename compute01 in place" in refused[0].message
    text = text.replace("compute07.domain\n", "compute07.domain rename\n")
    node = seeded.sql("nova", "SELECT id, uuid FROM compute_nodes WHERE host = 'compute01'")[0]
    allocs = seeded.sql("placement", "SELECT id, resource_provider_id FROM allocations "
                                     "ORDER BY id")
    before = seeded.checksums()
    with contextlib.closing(seeded.cloud()) as c:
        plan = planmod.build(c, seeded.mapping(text))
        assert not plan.refusals, plan.refusals
        assert any(n.code == "COMPUTE_RENAMED_IN_PLACE" for n in plan.step("nova").notes)
        assert plan.accounting.uncovered == []
        r = applymod.apply(c, seeded.mapping(text))
    assert seeded.sql("nova", "SELECT id, uuid, hypervisor_hostname FROM compute_nodes WHERE "
                              "host = 'compute07'") == ((node[0], node[1], "compute07.domain"),)
    assert seeded.sql("nova", "SELECT COUNT(*) FROM services WHERE host = 'compute07' AND "
                              "`binary` = 'nova-compute' AND deleted = 0") == ((1,),)
    assert seeded.sql("placement", "SELECT name FROM resource_providers WHERE uuid = %s",
                      [node[1]]) == (("compute07.domain",),)
    assert seeded.sql("placement", "SELECT id, resource_provider_id FROM allocations "
                                   "ORDER BY id") == allocs
    assert seeded.sql("nova_api", "SELECT host FROM host_mappings") == (("compute07",),)
    inst = dict((u, (h, n, cid)) for u, h, n, cid in seeded.sql(
        "nova", "SELECT uuid, host, node, compute_id FROM instances WHERE deleted = 0"))
    assert inst[i["vm-a"]] == ("compute07", "compute07.domain", node[0])
    assert seeded.sql("neutron", "SELECT host FROM ml2_port_bindings WHERE port_id = %s",
                      [p["vm-b"]]) == (("compute07",),)
    with contextlib.closing(seeded.cloud()) as c:
        assert not [f for f in verify.invariants(c, seeded.mapping(text))]
        assert [f for f in verify.residue(c, seeded.mapping(text))
                if f.code == "RESIDUE_UNCOVERED"] == []
        assert rbmod.rollback(c, r.run_id).checksums_ok
    assert seeded.checksums() == before


def test_agent_still_referenced_is_refused_not_cascaded(seeded):
    """An HA router's port binding names the old L3 agent: removing the agent would make
    the server cascade-delete it unjournaled; plan refuses instead."""
    s = seeded.seed
    seeded.sql("neutron", "INSERT INTO ha_router_agent_port_bindings (port_id, router_id, "
                          "l3_agent_id, state) VALUES (%s, %s, %s, 'active')",
               [s.ports["unbound"], seed_cloud.uid("router/r1"),
                seed_cloud.uid("agent/L3 agent/old-control")])
    seeded.mapping(seed_cloud.SEED_MAPPING.replace("[options]\n",
                                                   "[options]\nneutron_agents = remove\n"))
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 2
    assert "AGENT_REFERENCED" in r.stderr and "ha_router_agent_port_bindings" in r.stderr


def test_hit_rows_read_row_by_row_when_they_do_not_fit(seeded, monkeypatch):
    """The packed read and the row-by-row read give the same accounting."""
    with contextlib.closing(seeded.cloud()) as c:
        packed = planmod.build(c, seeded.mapping()).accounting.to_dict()
        c.conn.commit()
        monkeypatch.setattr(residue, "_PACKED_MAX", 16)
        rows = planmod.build(c, seeded.mapping()).accounting.to_dict()
    assert rows == packed and packed["entries"]
