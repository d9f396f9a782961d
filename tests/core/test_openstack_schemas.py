"""The real OpenStack schemas, made by each project's own tools, and the real APIs.

Everything here runs against the pinned keystone 30 / neutron 29 / cinder 29 /
nova 34 / placement 16 from PyPI and a real MariaDB: the databases come from
keystone-manage, neutron-db-manage, cinder-manage, nova-manage and
placement-manage (cached as a dump, reloaded per test), the checks are the
projects' own `*-status upgrade check`, the APIs are their WSGI apps under
gunicorn on 127.0.0.1.

Budget (warm cache): ~75 s wall here with the load average at 8 on 2 cores
(27 s of CPU: two cloud loads, four `*-status` runs, two API starts); ~30-35 s
on a quiet machine. A cold cache adds the venv (~1.5 min) and the schema sync
(~1-2 min), once: scripts/build-openstack-cache.py prewarms both.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures import openstack_build as build
from tests.fixtures.openstack import (
    SHM,
    SHM_PREFIX,
    TIMINGS,
    Cloud,
    reap_stale_tmpfs_servers,
    serve_api,
)

SEED_URL = "http://controller.domain:5000/v3/"

# What each project's upgrade check says about a freshly synced, empty cloud,
# measured with the pinned releases: every check passes except these, which are
# about configuration a schema-only cloud does not have. Every check that reads
# the databases (cells, VLAN allocations, MACs, segments, service UUIDs,
# consumers, root providers...) passes. A change here means an upstream check
# now judges the fresh schema differently.
UPGRADE_CHECK_TOOLS = ("neutron-status", "cinder-status", "nova-status", "placement-status")
NOT_SUCCESS_ON_EMPTY_CLOUD = {
    # rpc_workers = 0: the loopback API server runs no RPC workers
    ("neutron-status", "Worker counts configured"): "Warning",
    # (the OVN IPv6 check passes only because neutron.conf says this ML2/OVS
    # cloud has no OVN: otherwise it probes tcp:127.0.0.1:6641 and warns)
    # no [placement] / [service_user] credentials: there is no service catalog here
    ("nova-status", "Placement API"): "Failure",
    ("nova-status", "Service User Token Configuration"): "Failure",
}
EXIT_ON_EMPTY_CLOUD = {"neutron-status": 1, "cinder-status": 0, "nova-status": 2,
                       "placement-status": 0}


def parse_upgrade_check(stdout: str) -> dict[str, str]:
    """oslo.upgradecheck's table -> {check name: Success|Warning|Failure}."""
    results: dict[str, str] = {}
    check = None
    for line in stdout.splitlines():
        text = line.strip("| ").strip()
        if text.startswith("Check: "):
            check = text[len("Check: "):]
        elif text.startswith("Result: ") and check is not None:
            results[check] = text[len("Result: "):]
            check = None
    return results


@pytest.fixture(scope="module")
def cloud(openstack_mariadb, openstack_venv, openstack_dump) -> Iterator[Cloud]:
    """One loaded cloud for the read-only checks of this module (saves a reload each)."""
    shared = Cloud(openstack_mariadb, openstack_venv, openstack_dump)
    try:
        shared.load()
        TIMINGS.setdefault("cloud_load", []).append(round(shared.load_seconds, 2))
        yield shared
    finally:
        shared.drop()


def _columns(cloud: Cloud, service: str, table: str) -> set[str]:
    rows = cloud.server.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s", (cloud.db_names[service], table))
    return {r[0] for r in rows}


def _primary_key(cloud: Cloud, service: str, table: str) -> list[str]:
    rows = cloud.server.execute(
        "SELECT column_name FROM information_schema.key_column_usage "
        "WHERE table_schema = %s AND table_name = %s AND constraint_name = 'PRIMARY' "
        "ORDER BY ordinal_position", (cloud.db_names[service], table))
    return [r[0] for r in rows]


def test_keystone_bootstrap_wrote_the_seed_endpoints(cloud: Cloud) -> None:
    rows = cloud.execute("keystone", """
        SELECT e.interface, e.url, e.region_id, s.type
        FROM endpoint e JOIN service s ON s.id = e.service_id""")
    assert sorted(r[0] for r in rows) == ["admin", "internal", "public"]
    assert {(r[1], r[2], r[3]) for r in rows} == {(SEED_URL, "RegionOne", "identity")}
    assert cloud.execute("keystone", "SELECT id FROM region") == [("RegionOne",)]
    users = cloud.execute("keystone", "SELECT name FROM local_user")
    assert ("admin",) in users


def test_neutron_schema_from_neutron_db_manage(cloud: Cloud) -> None:
    assert _primary_key(cloud, "neutron", "ml2_port_bindings") == ["port_id", "host"]
    assert _primary_key(cloud, "neutron", "ml2_port_binding_levels") == [
        "port_id", "host", "level"]
    assert {"id", "network_id", "network_type", "physical_network",
            "segmentation_id"} <= _columns(cloud, "neutron", "networksegments")
    assert _primary_key(cloud, "neutron", "networksegments") == ["id"]
    # upgrade heads: one expand and one contract branch head
    heads = cloud.execute("neutron", "SELECT version_num FROM alembic_version")
    assert len(heads) >= 2


def test_cinder_schema_from_cinder_manage(cloud: Cloud) -> None:
    assert {"id", "host", "deleted", "service_uuid", "status"} <= _columns(
        cloud, "cinder", "volumes")
    assert {"id", "host", "binary", "uuid", "deleted"} <= _columns(cloud, "cinder", "services")
    assert cloud.execute("cinder", "SELECT COUNT(*) FROM volumes") == [(0,)]


def test_nova_schema_and_cells_from_nova_manage(cloud: Cloud) -> None:
    for db in ("nova", "nova_cell0"):
        assert {"uuid", "host", "node", "deleted"} <= _columns(cloud, db, "instances")
        assert {"instance_uuid", "network_info"} <= _columns(cloud, db, "instance_info_caches")
    cells = dict(cloud.execute("nova_api", "SELECT name, database_connection FROM cell_mappings"))
    # create_cell and map_cell0 ran against the build server; the load pointed them here
    assert cells == {"cell0": cloud.url("nova_cell0"), "cell1": cloud.url("nova")}
    # (nova-status's "Cells v2" check below reaches every cell database through them)
    assert {"name", "uuid"} <= _columns(cloud, "placement", "resource_providers")


def test_upstream_upgrade_checks_on_the_fresh_load(cloud: Cloud) -> None:
    def check(tool: str):
        return tool, cloud.run(tool, "upgrade", "check")

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(check, UPGRADE_CHECK_TOOLS))
    not_success = {}
    for tool, result in results.items():
        print(f"{tool} upgrade check: exit {result.returncode}\n{result.stdout}")
        checks = parse_upgrade_check(result.stdout)
        assert len(checks) >= 3, (tool, result.stdout, result.stderr[-2000:])
        not_success.update({(tool, name): verdict for name, verdict in checks.items()
                            if verdict != "Success"})
    assert not_success == NOT_SUCCESS_ON_EMPTY_CLOUD
    # it counted compute nodes in cell0 and cell1 through the rewritten mappings
    assert "No host mappings or compute nodes were found" in results["nova-status"].stdout
    for result in results.values():
        assert cloud.server.root_password not in result.stdout + result.stderr
    assert {t: r.returncode for t, r in results.items()} == EXIT_ON_EMPTY_CLOUD


def test_each_cloud_is_fresh_private_and_dropped(cloud: Cloud) -> None:
    other = Cloud(cloud.server, cloud.venv, cloud.schemas / "dump.sql").load()
    try:
        other.execute("cinder", "INSERT INTO quota_classes (created_at, deleted, "
                      "class_name, resource, hard_limit) VALUES (NOW(), 0, 'x', 'y', 1)")
        count = "SELECT COUNT(*) FROM quota_classes WHERE class_name = 'x'"
        assert other.execute("cinder", count) == [(1,)]
        assert cloud.execute("cinder", count) == [(0,)]
        assert set(other.db_names.values()).isdisjoint(cloud.db_names.values())
        for name in ("keystone.conf", "neutron.conf", "ml2_conf.ini", "cinder.conf",
                     "nova.conf", "placement.conf"):
            mode = stat.S_IMODE(os.stat(other.config_file(name)).st_mode)
            assert mode == 0o600, (name, oct(mode))
            text = other.config_file(name).read_text()
            assert cloud.db_names["nova"] not in text
        argv = other.argv("nova-manage", "db", "version")
        assert argv[1:3] == ["--config-file", str(other.config_file("nova.conf"))]
        assert not any(cloud.server.root_password in part for part in argv)
        assert other.load_seconds < 30
    finally:
        other.drop()
    names = {r[0] for r in cloud.server.execute("SHOW DATABASES")}
    assert names.isdisjoint(other.db_names.values())
    assert set(cloud.db_names.values()) <= names
    assert not other.base_dir.exists()


def test_neutron_api_on_loopback(neutron_api, openstack_cloud: Cloud) -> None:
    assert neutron_api.url.startswith("http://127.0.0.1:")
    status, body = neutron_api.get("/v2.0/networks")
    assert status == 200, (body, neutron_api.log_tail())
    assert body == {"networks": []}
    # the API writes into this test's own neutron database
    status, body = neutron_api.post("/v2.0/networks", {"network": {"name": "probe"}})
    assert status == 201, (body, neutron_api.log_tail())
    rows = openstack_cloud.execute("neutron", "SELECT name FROM networks")
    assert rows == [("probe",)]


def test_keystone_api_on_loopback(cloud: Cloud) -> None:
    api = serve_api(cloud, "keystone")
    try:
        status, body = api.get("/v3")
        assert status == 200, (body, api.log_tail())
        assert body["version"]["status"] == "stable"
        assert body["version"]["id"].startswith("v3.")
        # the bootstrap admin gets a token (fernet keys, password hash, catalog)
        status, body, headers = api.post_with_headers("/v3/auth/tokens", {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"},
                "password": cloud.admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
        assert status == 201, (body, api.log_tail())
        assert headers.get("X-Subject-Token")
        catalog = {entry["type"]: entry for entry in body["token"]["catalog"]}
        urls = {(e["interface"], e["url"], e["region"]) for e in catalog["identity"]["endpoints"]}
        assert urls == {(i, SEED_URL, "RegionOne") for i in ("admin", "internal", "public")}
    finally:
        api.stop()
    assert not api.running()
    assert cloud.admin_password not in api.log_file.read_text(errors="replace")


def test_cache_is_keyed_by_the_pins(openstack_venv, openstack_dump) -> None:
    root = build.cache_root()
    assert openstack_venv == root / "venv" and openstack_venv.is_symlink()
    assert openstack_dump.parent.parent == root
    site = next((openstack_venv / "lib").glob("python3*/site-packages"))
    installed = set()
    for dist in site.glob("*.dist-info"):
        project, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
        installed.add(f"{project.lower().replace('_', '-')}=={version}")
    for pin in build.PINNED:
        assert pin.lower() in installed, pin
    mode = stat.S_IMODE(os.stat(openstack_dump.parent / "admin-password").st_mode)
    assert mode == 0o600


def test_stale_tmpfs_servers_are_reaped_live_ones_kept(openstack_mariadb) -> None:
    """A crashed run's tmpfs datadir holds memory: the next session removes it,
    and never a directory whose mariadbd is alive."""
    stale = Path(tempfile.mkdtemp(prefix=f"{SHM_PREFIX}stale-", dir=SHM))
    (stale / "mysqld.pid").write_text("999999999\n")  # no such process
    (stale / "data").mkdir()
    fresh = Path(tempfile.mkdtemp(prefix=f"{SHM_PREFIX}starting-", dir=SHM))
    try:
        removed = reap_stale_tmpfs_servers()
        assert stale in removed and not stale.exists()
        assert fresh.exists()  # no pid file yet and younger than a minute: starting
        assert openstack_mariadb.base_dir.exists()
        assert openstack_mariadb.execute("SELECT 1") == [(1,)]
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(fresh, ignore_errors=True)
