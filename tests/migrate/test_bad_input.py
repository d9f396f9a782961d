"""Bad input: one-line errors naming what is wrong, the right exit code, no row changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pacestack.migrate import mapping as mappingmod

from pacestack.errors import ConfigError
from tests.migrate import seed_cloud
from tests.migrate.conftest import write_conf

NET = seed_cloud.uid("net/dmz")


def _one_line_error(r, code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("pacestack: error:")]
    assert len(err) == 1, r.stderr
    for n in needles:
        assert n in err[0], (n, err[0])


BAD_MAPPINGS = [
    (f"[segments]\nnetwork {seed_cloud.uid('net/nowhere')} = vxlan 1500\n", 2,
     "MAPPING_UNKNOWN_NETWORK"),
    ("[segments]\nflat dmz = vlan provider 100\nflat prod = vlan provider 100\n", 2,
     "is also the target of line 2"),
    ("[segments]\nflat dmz = vlan provider 4000\n", 2, "SEGMENT_ID_OUT_OF_RANGE"),
    ("[segments]\nflat dmz = vlan physnet9 120\n", 2, "not in network_vlan_ranges"),
    ("[segments]\nvlan physnet1 = vxlan 1500\n", 2, "SEGMENT_ID_DUPLICATE"),
    ("[segments]\nflat dmz = vxlan 5\n", 2, "SEGMENT_ID_OUT_OF_RANGE"),
    ("[hosts]\nold-kontrol = controller\n", 2, "MAPPING_UNKNOWN_HOST"),
    ("[endpoints]\nocata-wm = controller.domain\n", 2, "MAPPING_UNKNOWN_ENDPOINT_HOST"),
    ("[computes]\ncompute01 = compute99\n", 2, "NEW_COMPUTE_NOT_REGISTERED"),
    ("[computes]\ncompute77 = compute05 compute05.domain\n", 2, "MAPPING_UNKNOWN_HOST"),
    ("[segments]\nflat dmz\n", 2, "mapping.conf:2: expected 'KEY = VALUE'"),
    ("[segmnts]\n", 2, "mapping.conf:1: unknown section"),
    ("[hosts]\nold-control = controller; DROP TABLE instances\n", 2,
     "is not a valid host name"),
    ("[hosts]\nold-control = x\nold-control = y\n", 2, "repeats line 2"),
    ("[options]\noverlay_mtu = 99999\n", 2, "outside 576..9216"),
]


def test_bad_mappings_refused_nothing_changed(seeded):
    """Each bad mapping: one-line error naming it, exit 2, not a row changed. One cloud
    for all cases (a fresh one per case would cost 4 s each)."""
    before = seeded.checksums()
    for extra, code, needle in BAD_MAPPINGS:
        seeded.mapping_path.write_text(extra)
        # apply plans first and refuses on the same findings as plan
        r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
        _one_line_error(r, code, needle)
        assert seeded.checksums() == before, extra
    seeded.mapping_path.write_text(BAD_MAPPINGS[0][0])
    _one_line_error(seeded.cli("plan", "--mapping", str(seeded.mapping_path)), 2,
                    "MAPPING_UNKNOWN_NETWORK")


def test_an_id_marked_allocated_without_a_segment_is_refused_by_its_own_code(seeded):
    """Another network's id and a leaked allocation are two conditions with two fixes;
    plan refuses the latter with the code verify reports it under."""
    seeded.sql("neutron", "UPDATE ml2_vxlan_allocations SET allocated = 1 "
                          "WHERE vxlan_vni = 1777")
    seeded.os.server.execute("COMMIT")
    before = seeded.checksums()
    seeded.mapping_path.write_text("[segments]\nflat dmz = vxlan 1777\n")
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    _one_line_error(r, 2, "ALLOCATION_LEAKED", "vxlan_vni=1777")
    assert seeded.checksums() == before


def test_taken_segmentation_id_and_running_instance(seeded):
    before = seeded.checksums()
    # VNI 1169 already used by another network: the seed's 1137 network may not take it
    seeded.mapping_path.write_text(
        f"[segments]\nnetwork {seed_cloud.uid('net/selfservice-1137')} = vxlan 1169\n"
        "vlan physnet1 = vxlan\n")
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    _one_line_error(r, 2, "SEGMENT_ID_DUPLICATE")
    seeded.sql("nova", "UPDATE instances SET vm_state = 'active', power_state = 1 "
                       "WHERE uuid = %s", [seeded.seed.instances["vm-a"]])
    seeded.os.server.execute("COMMIT")
    before = seeded.checksums()
    seeded.mapping_path.write_text(seed_cloud.SEED_MAPPING)
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    _one_line_error(r, 2, "INSTANCE_NOT_STOPPED", seeded.seed.instances["vm-a"], "--force")
    assert seeded.checksums() == before
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path), "--force")
    assert r.returncode == 0, r.stderr


def test_unreachable_server_and_wrong_password(seeded, tmp_path):
    before = seeded.checksums()
    url = seeded.os.url("neutron")
    secret = url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    bad = url.replace(f":{secret}@", ":not-the-password@")
    conf = write_conf(tmp_path / "wrong.conf", seeded.os, seeded.ml2_path, seeded.journal_db,
                      connection=bad)
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path), conf=conf)
    _one_line_error(r, 2, "access denied")
    assert secret not in r.stderr and "not-the-password" not in r.stderr
    port = seeded.os.server.port
    dead = bad.replace(f":{port}/", ":1/").replace("not-the-password", secret)
    conf = write_conf(tmp_path / "dead.conf", seeded.os, seeded.ml2_path, seeded.journal_db,
                      connection=dead)
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), conf=conf)
    _one_line_error(r, 1, "127.0.0.1:1", "cannot connect")
    assert secret not in r.stderr + r.stdout
    assert seeded.checksums() == before


def test_hostile_names_in_the_database_stay_data(seeded):
    """Names holding quotes, SQL and newlines travel as parameters, never as SQL."""
    hostile = "x'); DROP TABLE networks; -- \n\"`"
    seeded.sql("neutron", "UPDATE networks SET name = %s WHERE id = %s", [hostile, NET])
    seeded.sql("cinder", "UPDATE volumes SET display_name = %s", [hostile])
    seeded.os.server.execute("COMMIT")
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 0, r.stderr
    assert seeded.sql("neutron", "SELECT name FROM networks WHERE id = %s", [NET]) == \
        ((hostile,),)


def test_mapping_parser_errors_name_file_and_line(tmp_path):
    p = tmp_path / "m.conf"
    p.write_text("[segments]\n# comment\nflat dmz = vlan provider\n")
    with pytest.raises(ConfigError, match=r"m.conf:3: a vlan target is"):
        mappingmod.load(str(p))
    with pytest.raises(ConfigError, match="no such mapping file"):
        mappingmod.load(str(tmp_path / "missing.conf"))
    p.write_bytes(b"[hosts]\n\xff = a\n")
    with pytest.raises(ConfigError, match="not a UTF-8"):
        mappingmod.load(str(p))
    m = mappingmod.parse_text(seed_cloud.SEED_MAPPING, "seed")
    assert m.segment_rule("n", "flat", "dmz").target.segmentation_id == 100
    assert m.segment_rule("n", "vlan", "physnet1").target.network_type == "vxlan"
    assert m.segment_rule("n", "vxlan", None) is None


def test_documented_example_is_the_seed_mapping():
    root = Path(__file__).resolve().parents[2]
    example = mappingmod.load(str(root / "examples" / "seed-mapping.conf"))
    seed = mappingmod.parse_text(seed_cloud.SEED_MAPPING, "seed")
    for attr in ("hosts", "endpoints", "overlay_mtu", "firewall_driver"):
        assert getattr(example, attr) == getattr(seed, attr)
    assert [(r.selector, r.target) for r in example.segments] == \
        [(r.selector, r.target) for r in seed.segments]
    assert [(c.old_host, c.new_host, c.new_node) for c in example.computes] == \
        [(c.old_host, c.new_host, c.new_node) for c in seed.computes]
    assert "examples/seed-mapping.conf" in (root / "docs" / "migrate-mapping.md").read_text()
