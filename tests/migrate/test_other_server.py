"""``[migrate] connection`` must reach the server the services' own URLs name: two real
MariaDB servers on loopback, the new cloud on one and the old cloud (same database
names) on the other, as when the admin URL still names the old controller."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pacestack.migrate import tables

from tests.fixtures.openstack import Cloud as OSCloud
from tests.fixtures.openstack import start_tmpfs_server
from tests.migrate import seed_cloud
from tests.migrate.conftest import write_conf


@pytest.fixture
def old_cloud(seeded, openstack_venv, openstack_dump) -> Iterator[OSCloud]:
    """The same seed under the same database names on a second server: the fallback."""
    server = start_tmpfs_server("old")
    try:
        old = OSCloud(server, openstack_venv, openstack_dump, prefix=seeded.os.prefix).load()
        conn = server.connect()
        try:
            seed_cloud.build_seed(conn, old.db_names)
        finally:
            conn.close()
        yield old
    finally:
        server.cleanup()


def _checksums(os_cloud: OSCloud) -> dict[str, object]:
    return {f"{d}.{t}": os_cloud.server.execute(
        f"CHECKSUM TABLE `{os_cloud.db_names[d]}`.`{t}`")[0][1] for d, t in tables.TABLES}


def _databases(server) -> set[str]:
    return {r[0] for r in server.execute("SHOW DATABASES")}


def test_admin_url_on_another_server_is_refused(seeded, old_cloud, tmp_path):
    new_server, old_server = seeded.os.server, old_cloud.server
    before_new, before_old = _checksums(seeded.os), _checksums(old_cloud)
    dbs_new, dbs_old = _databases(new_server), _databases(old_server)
    conf = write_conf(tmp_path / "old.conf", seeded.os, seeded.ml2_path, seeded.journal_db,
                      connection=old_server.url())
    for verb in ("apply", "plan", "verify"):
        r = seeded.cli(verb, "--mapping", str(seeded.mapping_path), "--skip-upstream"
                       if verb == "verify" else "--only=keystone", conf=conf)
        assert r.returncode == 2, (verb, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pacestack: error: "), r.stderr
        assert f"127.0.0.1:{old_server.port}" in lines[0]
        assert f"127.0.0.1:{new_server.port}" in lines[0]
        assert "--allow-other-server" in lines[0] and "another server" in lines[0]
        assert old_server.root_password not in r.stderr + r.stdout
    r = seeded.cli("rollback", "0a0a0a0a-0000-0000-0000-000000000000", conf=conf)
    assert r.returncode == 2 and "--allow-other-server" in r.stderr, r.stderr
    assert _checksums(seeded.os) == before_new and _checksums(old_cloud) == before_old
    # not even the journal database was created on either side
    assert _databases(new_server) == dbs_new and _databases(old_server) == dbs_old
    # said explicitly, the operator gets the other server (plan only reads)
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), "--allow-other-server",
                   conf=conf)
    assert r.returncode == 0, r.stderr
    conf_allow = write_conf(tmp_path / "allow.conf", seeded.os, seeded.ml2_path,
                            seeded.journal_db, connection=old_server.url(),
                            allow_other_server="true")
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path), conf=conf_allow)
    assert r.returncode == 0, r.stderr
    assert _checksums(seeded.os) == before_new and _checksums(old_cloud) == before_old


def test_same_server_under_another_name_is_accepted(seeded, tmp_path):
    """The admin URL through the unix socket, the services' through TCP: one server."""
    server = seeded.os.server
    conf = write_conf(tmp_path / "socket.conf", seeded.os, seeded.ml2_path, seeded.journal_db,
                      connection=f"mysql+pymysql://root@/?unix_socket={server.socket}")
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path), conf=conf)
    assert r.returncode == 0, r.stderr
    assert seeded.sql("neutron", "SELECT COUNT(*) FROM ml2_port_bindings WHERE "
                      "vif_type = 'bridge'") == ((0,),)
