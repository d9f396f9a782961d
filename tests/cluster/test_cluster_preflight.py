"""preflight against two nodes' files: a real Keystone database (keystone-manage
bootstrap's endpoints, from the openstack_cloud fixture), its real fernet and
credential keys, corosync.conf as pcs writes it, Galera option files.
Budget: ~15 s (plus the shared cloud fixture)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pacestack.cluster import apply, description, preflight

from pacestack.cli import main

DESC = """\
[cluster]
nodes = controller01, controller02
addresses = 10.0.0.11, 10.0.0.12
profile = none
shared_host = controller

[vip]
address = {vip}
name = {name}

[arbitrator]
host = arbitrator
address = 10.0.0.13

[fencing:fence-all]
agent = fence_dummy
params =
    pcmk_host_list=controller01 controller02
"""

GALERA = """\
[galera]
wsrep_on = ON
wsrep_cluster_name = {name}
wsrep_cluster_address = gcomm://10.0.0.11,10.0.0.12,10.0.0.13
wsrep_sst_method = {sst}
"""


def _node(root: Path, cloud, host: str, cluster_name: str = "openstack", sst: str = "rsync"):
    (root / "etc/cinder").mkdir(parents=True)
    (root / "etc/cinder/cinder.conf").write_text(f"[DEFAULT]\nhost = {host}\n")
    (root / "etc/keystone").mkdir(parents=True)
    shutil.copy(cloud.config_file("keystone.conf"), root / "etc/keystone/keystone.conf")
    for sub in ("fernet-keys", "credential-keys"):
        shutil.copytree(cloud.config_dir / sub, root / "etc/keystone" / sub)
    (root / "etc/mysql/conf.d").mkdir(parents=True)
    (root / "etc/mysql/conf.d/galera.cnf").write_text(GALERA.format(name=cluster_name, sst=sst))
    return root


def _desc(tmp_path: Path, vip: str, name: str) -> description.Description:
    path = tmp_path / f"cluster-{name}.conf"
    path.write_text(DESC.format(vip=vip, name=name))
    return description.load([str(path)])


@pytest.fixture
def nodes(tmp_path, openstack_cloud):
    good = _node(tmp_path / "controller01", openstack_cloud, "controller")
    peer = _node(tmp_path / "controller02", openstack_cloud, "controller")
    desc = _desc(tmp_path, "127.0.0.1", "localhost")
    (good / "etc/corosync").mkdir(parents=True)
    (good / "etc/corosync/corosync.conf").write_text(apply.corosync_conf_text(desc))
    return good, peer, openstack_cloud


def _codes(found) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in found:
        out.setdefault(f.code, []).append(f)
    return out


def test_preflight_on_two_nodes_files(nodes, tmp_path, capsys):
    """One cloud for three checks (a fresh cloud costs ~15 s here)."""
    _consistent_nodes_pass_but_the_endpoints_name_the_real_vip(nodes, tmp_path)
    _endpoints_at_the_vip_name_and_an_unresolvable_name(nodes, tmp_path)
    _every_inconsistency_is_a_finding_naming_its_file(nodes, tmp_path, capsys)


def _consistent_nodes_pass_but_the_endpoints_name_the_real_vip(nodes, tmp_path):
    good, peer, cloud = nodes
    # VIP name localhost resolves to 127.0.0.1: the endpoints (controller.domain) differ
    desc = _desc(tmp_path, "127.0.0.1", "localhost")
    found = preflight.preflight(desc, preflight.Inputs(
        node="controller01", root=str(good), peer_root=str(peer), cib_file=None))
    codes = _codes(found)
    assert set(codes) == {"ENDPOINT_NOT_VIP"}, found
    assert all("controller.domain" in f.message for f in codes["ENDPOINT_NOT_VIP"])
    assert all(f.subject.startswith("keystone.endpoint id=") for f in codes["ENDPOINT_NOT_VIP"])


def _endpoints_at_the_vip_name_and_an_unresolvable_name(nodes, tmp_path):
    good, peer, _ = nodes
    desc = _desc(tmp_path, "10.0.0.10", "controller.domain")
    found = preflight.preflight(desc, preflight.Inputs(
        node="controller01", root=str(good), peer_root=str(peer)))
    codes = _codes(found)
    assert "ENDPOINT_NOT_VIP" not in codes  # keystone-manage bootstrap used the VIP name
    assert set(codes) == {"VIP_NAME_UNRESOLVED"}, found


def _every_inconsistency_is_a_finding_naming_its_file(nodes, tmp_path, capsys):
    good, peer, cloud = nodes
    (peer / "etc/cinder/cinder.conf").write_text("[DEFAULT]\nhost = controller02\n")
    key = peer / "etc/keystone/credential-keys/0"
    key.write_bytes(b"not-the-same-key=")
    shutil.rmtree(peer / "etc/keystone/fernet-keys")
    (peer / "etc/mysql/conf.d/galera.cnf").write_text(
        GALERA.format(name="other", sst="mariabackup").replace(",10.0.0.13", ""))
    (good / "etc/corosync/corosync.conf").write_text(
        (good / "etc/corosync/corosync.conf").read_text().replace("two_node: 1", "two_node: 0"))
    cloud.execute("keystone", "UPDATE endpoint SET url = 'http://old-control:5000/v3/' "
                  "WHERE interface = 'admin'")
    desc = _desc(tmp_path, "127.0.0.1", "localhost")
    found = preflight.preflight(desc, preflight.Inputs(
        node="controller01", root=str(good), peer_root=str(peer)))
    codes = _codes(found)
    assert codes["CINDER_HOST_MISMATCH"][0].subject == \
        f"{peer}/etc/cinder/cinder.conf [DEFAULT] host"
    assert "CINDER_HOST_DIFFERS" in codes
    assert codes["KEYSTONE_KEYS_DIFFER"][0].subject == "/etc/keystone/credential-keys"
    assert codes["KEYSTONE_KEYS_MISSING"][0].subject == f"{peer}/etc/keystone/fernet-keys"
    assert {f.subject for f in codes["GALERA_OPTIONS_DIFFER"]} == {
        "wsrep_cluster_name", "wsrep_sst_method", "wsrep_cluster_address"}
    assert codes["GALERA_ADDRESS_LIST"][0].subject == \
        f"{peer}/etc/mysql/conf.d/galera.cnf wsrep_cluster_address"
    assert "arbitrator" in codes["GALERA_ADDRESS_LIST"][0].message
    assert codes["COROSYNC_TWO_NODE"][0].subject.endswith("corosync.conf quorum.two_node")
    assert any("old-control" in f.message for f in codes["ENDPOINT_NOT_VIP"])
    assert codes["COROSYNC_WAIT_FOR_ALL"][0].severity.name == "WARNING"  # two_node 0: off
    assert all(f.severity.name == "ERROR" for f in found if f.code != "COROSYNC_WAIT_FOR_ALL")

    # the CLI renders the same findings and fails
    conf = tmp_path / "cluster-localhost.conf"
    rc = main(["cluster", "preflight", "-d", str(conf), "--node", "controller01",
               "--root", str(good), "--peer-root", str(peer), "--format", "json"])
    assert rc == 1
    assert '"CINDER_HOST_MISMATCH"' in capsys.readouterr().out


def test_fencing_and_quorum_warnings(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(DESC.format(vip="127.0.0.1", name="localhost").split("[fencing:")[0])
    desc = description.load([str(path)])
    coro = tmp_path / "corosync.conf"
    coro.write_text(apply.corosync_conf_text(desc).replace(
        "two_node: 1", "two_node: 1\n    wait_for_all: 0"))
    found = preflight.preflight(desc, preflight.Inputs(
        node="controller01", root=str(tmp_path / "empty"), corosync_conf=str(coro),
        skip_database=True))
    codes = _codes(found)
    assert codes["FENCING_NOT_DESCRIBED"][0].severity.name == "WARNING"
    assert codes["COROSYNC_WAIT_FOR_ALL"][0].severity.name == "WARNING"
    assert codes["PEER_NOT_CHECKED"][0].severity.name == "WARNING"
    assert "COROSYNC_TWO_NODE" not in codes
    assert "CINDER_CONF_MISSING" in codes and "KEYSTONE_KEYS_MISSING" in codes


def test_services_not_beside_galera_must_reach_it_through_the_vip(tmp_path):
    """The profile colocates no service with Galera: a nova.conf that names the
    node's own database would run Nova beside a Galera that may not be Primary. The
    VIP's name or address passes; a resource described `with = galera` may keep
    127.0.0.1; the password in the URL never reaches the finding."""
    conf = tmp_path / "c.conf"
    conf.write_text(DESC.format(vip="10.0.0.10", name="controller.domain") + """
[resource:galera]
agent = ocf:pacestack:galera
mode = promotable
clients_reconnect = true

[resource:nova-api]
agent = ocf:pacestack:openstack-service
params =
    config=/etc/nova/nova.conf
after = galera

[resource:local-api]
agent = ocf:pacestack:openstack-service
params =
    config=/etc/local/local.conf
after = galera
with = galera
""")
    desc = description.load([str(conf)], check_agents=False)
    roots = []
    for name, host in (("controller01", "127.0.0.1"), ("controller02", "10.0.0.10")):
        root = tmp_path / name
        (root / "etc/nova").mkdir(parents=True)
        (root / "etc/nova/nova.conf").write_text(
            f"[database]\nconnection = mysql+pymysql://nova:s3cret-pw@{host}/nova\n"
            "[api_database]\nconnection = mysql+pymysql://nova:s3cret-pw@controller.domain"
            "/nova_api\n")
        (root / "etc/local").mkdir(parents=True)
        (root / "etc/local/local.conf").write_text(
            "[database]\nconnection = mysql+pymysql://x:s3cret-pw@127.0.0.1/x\n")
        roots.append(preflight.Files(name, root=str(root)))
    found = preflight.check_database_reach(desc, roots)
    assert [(f.code, f.subject) for f in found] == [
        ("DATABASE_NOT_VIA_VIP", f"{roots[0].root}/etc/nova/nova.conf [database] connection")]
    assert "nova-api reaches its database at 127.0.0.1" in found[0].message
    assert "s3cret-pw" not in found[0].message + found[0].subject
