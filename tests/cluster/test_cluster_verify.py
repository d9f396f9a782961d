"""verify's findings on small real CIBs (pcs -f, crm_verify, crm_simulate), one per
rule of the issue: a service stops with one node left, cinder-volume could run twice,
the VIP separated from what it fronts, Galera without arbitrator. Budget: ~40 s."""

from __future__ import annotations

from pathlib import Path

import pytest
from pacestack.cluster import apply, description, pcsrun, verify

SMALL = """\
[cluster]
nodes = controller01, controller02
addresses = 10.0.0.11, 10.0.0.12
profile = none

[vip]
address = 10.0.0.10
fronts = api

[resource:api]
agent = ocf:heartbeat:Dummy

[resource:cinder-volume]
agent = ocf:heartbeat:Dummy
mode = single
after = api
with = api
"""


def _applied(tmp_path: Path, text: str, extra_pcs: list[tuple[str, ...]] = ()):
    conf = tmp_path / "cluster.conf"
    conf.write_text(text)
    desc = description.load([str(conf)])
    path = str(tmp_path / "cib.xml")
    apply.apply(desc, cib_file=path)
    if extra_pcs:  # what an operator might have added by hand
        results = pcsrun.run_one_by_one(path, extra_pcs)
        assert all(r.rc == 0 for r in results), results[-1].stderr
    return desc, path


def _codes(report: verify.Report) -> set[str]:
    return {f.code for f in report.findings}


def test_small_stack_is_clean_and_moves_to_the_survivor(tmp_path):
    desc, path = _applied(tmp_path, SMALL)
    report = verify.verify(desc, cib_file=path)
    assert _codes(report) == {"FENCING_DISABLED"} and report.ok
    for failed, survivor in (("controller01", "controller02"), ("controller02", "controller01")):
        sc = report.scenario(f"{failed} fails")
        assert sc.nodes_of("api") == [survivor]
        assert sc.nodes_of("cinder-volume") == [survivor]
        assert sc.nodes_of("vip") == [survivor]


def test_service_that_stops_with_one_node_left(tmp_path):
    # an operator's location constraint keeps api off controller02
    desc, path = _applied(tmp_path, SMALL, [
        ("constraint", "location", "api-clone", "avoids", "controller02")])
    report = verify.verify(desc, cib_file=path)
    stops = [f for f in report.findings if f.code == "SERVICE_STOPS"]
    assert any(f.subject == "api: controller01 fails" and "only controller02 left" in f.message
               for f in stops), report.findings
    assert not report.ok


def test_cinder_volume_as_a_clone_could_run_twice(tmp_path):
    desc, path = _applied(tmp_path, SMALL.replace("mode = single\n", "mode = clone\n"))
    report = verify.verify(desc, cib_file=path)
    assert {"CINDER_ACTIVE_ACTIVE", "SINGLE_INSTANCE_TWICE"} <= _codes(report)
    assert not report.ok


def test_vip_separated_from_what_it_fronts(tmp_path):
    # the VIP's colocation removed by hand: nothing keeps it where api runs
    desc, path = _applied(tmp_path, SMALL, [
        ("constraint", "delete", "colocation-vip-with-api")])
    report = verify.verify(desc, cib_file=path)
    separated = [f for f in report.findings if f.code == "VIP_SEPARATED"]
    assert separated, report.findings
    assert all("without api" in f.message for f in separated)


def test_galera_without_arbitrator_loses_primary(tmp_path):
    text = SMALL.replace("fronts = api", "fronts = api, galera") + """
[resource:galera]
agent = ocf:heartbeat:galera
mode = promotable
params =
    wsrep_cluster_address=gcomm://controller01,controller02
"""
    desc, path = _applied(tmp_path, text)
    report = verify.verify(desc, cib_file=path)
    lost = [f for f in report.findings if f.code == "GALERA_NO_PRIMARY"]
    assert {f.subject for f in lost} == {"galera: controller01 fails",
                                         "galera: controller02 fails"}
    assert "1 of 2 votes" in lost[0].message
    # the same with an arbitrator: garbd's vote keeps the survivor Primary
    arb = tmp_path / "arb"
    arb.mkdir()
    desc2, path2 = _applied(arb, text + "\n[arbitrator]\nhost = arbitrator\naddress = 10.0.0.13\n")
    report2 = verify.verify(desc2, cib_file=path2)
    assert "GALERA_NO_PRIMARY" not in _codes(report2)
    assert report2.scenario("controller01 fails").nodes_of("galera", "Promoted") == \
        ["controller02"]
    # one transition per injected failure already is the steady state
    settled = verify.verify(desc2, cib_file=path2, settle_all=True)
    assert [s.name for s in settled.scenarios] == [s.name for s in report2.scenarios]
    for a, b in zip(settled.scenarios, report2.scenarios, strict=True):
        assert {k: sorted(v) for k, v in a.placement.items()} == \
            {k: sorted(v) for k, v in b.placement.items()}, a.name


def test_invalid_cib_stops_at_crm_verify(tmp_path):
    desc, path = _applied(tmp_path, SMALL)
    pcsrun.run_one_by_one(path, [("property", "set", "stonith-enabled=true")])
    report = verify.verify(desc, cib_file=path)
    assert report.crm_verify and report.scenarios == []
    assert _codes(report) == {"CRM_VERIFY"}


def test_missing_cib_file_is_an_error(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(SMALL)
    desc = description.load([str(conf)])
    with pytest.raises(Exception, match="No such file"):
        verify.verify(desc, cib_file=str(tmp_path / "none.xml"))
