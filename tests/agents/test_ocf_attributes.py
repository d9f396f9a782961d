"""Node attributes and promotion scores through the real crm_attribute on a CIB
file (CIB_file), read back by Pacemaker's own tools."""

from __future__ import annotations

import os
import subprocess

import pytest
from pacestack.agents import attributes


@pytest.fixture
def cib_env(cib_file):
    path = cib_file(["controller01", "controller02"])
    return {**os.environ, "CIB_file": str(path)}


def test_reboot_and_forever_attributes_round_trip(cib_env):
    assert attributes.get("galera-seqno", "controller01", env=cib_env) is None
    attributes.set("galera-seqno", 42, "controller01", env=cib_env)
    attributes.set("galera-uuid", "abc-1", "controller01", lifetime="forever", env=cib_env)
    assert attributes.get("galera-seqno", "controller01", env=cib_env) == "42"
    assert attributes.get("galera-seqno", "controller02", env=cib_env) is None
    assert attributes.get("galera-uuid", "controller01", lifetime="forever", env=cib_env) == "abc-1"
    # reboot lifetime lives in the status section, forever in the nodes section
    cib = subprocess.run(["cibadmin", "-Q"], env=cib_env, capture_output=True, text=True,
                         check=True).stdout
    assert 'name="galera-seqno" value="42"' in cib and 'name="galera-uuid" value="abc-1"' in cib
    attributes.delete("galera-seqno", "controller01", env=cib_env)
    attributes.delete("galera-seqno", "controller01", env=cib_env)  # idempotent
    assert attributes.get("galera-seqno", "controller01", env=cib_env) is None


def test_promotion_scores_as_pacemaker_reads_them(cib_env):
    attributes.set_promotion_score("galera:1", 100, "controller01", env=cib_env)
    attributes.set_promotion_score("galera", 5, "controller02", env=cib_env)
    assert attributes.get_promotion_score("galera", "controller01", env=cib_env) == 100
    assert attributes.get_promotion_score("galera", "controller02", env=cib_env) == 5
    # the attribute name Pacemaker's scheduler uses for promotion
    assert attributes.get("master-galera", "controller01", env=cib_env) == "100"
    attributes.delete_promotion_score("galera", "controller01", env=cib_env)
    assert attributes.get_promotion_score("galera", "controller01", env=cib_env) is None


def test_unknown_node_is_an_error_not_a_missing_attribute(cib_env):
    with pytest.raises(attributes.AttributeFailure, match="controller09"):
        attributes.get("x", "controller09", env=cib_env)
    with pytest.raises(attributes.AttributeFailure, match="setting x=1"):
        attributes.set("x", 1, "controller09", env=cib_env)
