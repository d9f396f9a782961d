"""The Galera agent's one-read snapshot of node attributes (agents/galera_cib.py)
returns exactly what crm_attribute reads, attribute by attribute, from the same
CIB (real cibadmin/crm_attribute on a CIB file); it gives up (None: the agent
falls back to crm_attribute) on an unreadable or ambiguous CIB. ~2 s.
"""

from __future__ import annotations

import os

from pacestack.agents import attributes, galera_cib

NODES = ["controller01", "controller02", "controller03"]


def test_snapshot_equals_crm_attribute(cib_file):
    cib = cib_file(NODES)
    env = {**os.environ, "CIB_file": str(cib)}
    attributes.set("galera-position", "u:5:recovered", "controller01", env=env)
    attributes.set("galera-position", "u:7:grastate", "controller02", env=env)
    attributes.set("galera-primary", "1", "controller02", env=env)
    attributes.set_promotion_score("galera", 100, "controller02", env=env)
    attributes.set("galera-last-committed", "u:7:1795659690", "controller02", "forever",
                   env=env)
    attributes.set("galera-last-committed", "u:3:1795659600", "controller03", "forever",
                   env=env)
    snap = galera_cib.read(env)
    assert snap is not None
    for node in NODES:
        for name in ("galera-position", "galera-primary", "master-galera", "galera-nope"):
            assert snap.get(name, node) == attributes.get(name, node, env=env), (name, node)
        assert snap.get("galera-last-committed", node, "forever") == \
            attributes.get("galera-last-committed", node, "forever", env=env)
    assert snap.get("galera-position", "controller02") == "u:7:grastate"
    assert snap.get("galera-position", "controller03") is None
    assert snap.get("galera-last-committed", "controller02") is None  # not a reboot one
    assert snap.get("galera-position", "elsewhere") is None
    # a value changed afterwards is not in the old snapshot, but in a new one
    attributes.delete("galera-primary", "controller02", env=env)
    assert snap.get("galera-primary", "controller02") == "1"
    assert galera_cib.read(env).get("galera-primary", "controller02") is None


def test_unreadable_or_ambiguous_cib_gives_no_snapshot(cib_file, tmp_path):
    cib = cib_file(NODES)
    env = {**os.environ, "CIB_file": str(cib)}
    attributes.set("galera-position", "u:5:recovered", "controller01", env=env)
    # a second attribute set naming the same attribute with another value
    text = cib.read_text().replace(
        "</instance_attributes>\n      </transient_attributes>",
        '</instance_attributes>\n        <instance_attributes id="status-1-b">'
        '<nvpair id="status-1-b-p" name="galera-position" value="u:9:recovered"/>'
        "</instance_attributes>\n      </transient_attributes>", 1)
    assert text.count('name="galera-position"') == 2
    assert galera_cib.parse(text) is None
    assert galera_cib.parse("<cib><configuration>") is None
    missing = {**os.environ, "CIB_file": str(tmp_path / "no-such-cib.xml")}
    assert galera_cib.read(missing) is None
