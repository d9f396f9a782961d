"""A catalogue of hostile input to ``pacestack migrate``: each case must end in exactly
one line naming what is wrong, the right exit code (2 bad input, 1 runtime failure),
no traceback, no secret, and nothing changed (CHECKSUM TABLE of every table migrate
may write, the journal's rows, the list of databases). test_bad_input.py holds the
mapping refusals planning finds; these are the ones that must never get that far.

One seeded cloud serves the whole module: a fresh one per case would cost seconds
each, and every case must leave it as it found it anyway. Servers that answer
garbage or hang are a TCP stand-in (tests/fixtures/fake_server.py): a real MariaDB
cannot be made to misbehave on demand.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from pacestack.migrate import tables
from pacestack.migrate.journal import Journal

from tests.fixtures.fake_server import fake_server
from tests.fixtures.openstack import Cloud as OSCloud
from tests.migrate import seed_cloud
from tests.migrate.conftest import Seeded, seed_into, write_conf

UNKNOWN = "0ddba11e-0000-4000-8000-00000000dead"
HOSTILE_PW = "pw'`;\"--x"


@pytest.fixture(scope="module")
def cloud(openstack_mariadb, openstack_venv, openstack_dump, tmp_path_factory):
    os_cloud = OSCloud(openstack_mariadb, openstack_venv, openstack_dump).load()
    try:
        s = seed_into(os_cloud, tmp_path_factory.mktemp("hostile"))
        c = s.cloud()
        try:
            Journal(c).ensure_schema()  # journal cases insert into it
        finally:
            c.close()
        yield s
        os_cloud.server.execute(f"DROP DATABASE IF EXISTS `{s.journal_db}`")
    finally:
        os_cloud.drop()


def state(s: Seeded) -> tuple:
    """Everything a case must leave as it was."""
    server = s.os.server
    journal = tuple(server.execute(f"CHECKSUM TABLE `{s.journal_db}`.`{t}`")[0][1]
                    for t in ("runs", "images", "checksums"))
    users = server.execute("SELECT COUNT(*) FROM mysql.user")
    dbs = tuple(sorted(r[0] for r in server.execute("SHOW DATABASES")))
    return s.checksums(), journal, dbs, users


@dataclasses.dataclass
class Case:
    id: str
    code: int
    needles: tuple[str, ...]
    mapping: str | bytes | None = None  # mapping file text; None: the seed's
    conf: str | Callable[[Seeded, dict], str] = ""  # appended to pacestack.conf
    argv: tuple[str, ...] = ("apply", "--mapping", "{mapping}")
    mapping_path: Callable[[Path], str] | None = None  # a special file instead
    setup: Callable[[Seeded, dict], Callable[[], None] | None] | None = None
    fake: str | None = None  # a misbehaving server's behaviour; ctx["port"]
    seconds: float = 60.0  # the case must end within this


def _url(s: Seeded, service: str = "nova", *, user: str = "root", password: str | None = None,
         host: str = "127.0.0.1", database: str | None = None) -> str:
    server = s.os.server
    pw = server.root_password if password is None else password
    import urllib.parse
    return (f"mysql+pymysql://{user}:{urllib.parse.quote(pw, safe='')}@{host}:{server.port}/"
            f"{database if database is not None else s.os.db_names[service]}")


def _db_override(service: str, **kw) -> Callable[[Seeded, dict], str]:
    return lambda s, ctx: f"[database]\n{service}_connection = {_url(s, service, **kw)}\n"


def _admin(**kw) -> Callable[[Seeded, dict], str]:
    return lambda s, ctx: f"[migrate]\nconnection = {_url(s, database='', **kw)}\n"


def _fake_admin(s: Seeded, ctx: dict) -> str:
    return (f"[migrate]\nconnection = mysql+pymysql://root:{HOSTILE_PW}@127.0.0.1:{ctx['port']}/"
            "\n[database]\nconnect_timeout = 2\n")


def _fake_services(s: Seeded, ctx: dict) -> str:
    lines = ["[database]", "connect_timeout = 2"]
    for svc in tables.SERVICE_DATABASES:
        lines.append(f"{svc}_connection = mysql+pymysql://nova:pw@127.0.0.1:{ctx['port']}/"
                     f"{s.os.db_names[svc]}")
    return "\n".join(lines) + "\n"


def _user(name: str, grants: tuple[str, ...]):
    """A real database user with only these grants, dropped afterwards."""
    def setup(s: Seeded, ctx: dict):
        user = f"{name}_{s.os.prefix}"
        server = s.os.server
        server.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", [HOSTILE_PW])
        for g in grants:
            for svc, real in s.os.db_names.items():
                if svc in tables.SERVICE_DATABASES:
                    server.execute(f"GRANT {g} ON `{real}`.* TO '{user}'@'127.0.0.1'")
        ctx["conf"] = (f"[migrate]\nconnection = "
                       f"{_url(s, database='', user=user, password=HOSTILE_PW)}\n")
        return lambda: server.execute(f"DROP USER '{user}'@'127.0.0.1'")
    return setup


def _journal_run(version: str | None, status: str, images: list[tuple[str, str, str, str, str]]):
    """A run another pacestack journaled: images are (db, tbl, op, key_after, cols)."""
    def setup(s: Seeded, ctx: dict):
        run_id = str(uuid.uuid4())
        ctx["run_id"] = run_id
        server, jdb = s.os.server, s.journal_db
        digest = "0" * 64
        server.execute("INSERT INTO runs (run_id, started_at, status, mapping_digest, steps, "
                       "pacestack_version) VALUES (%s, UTC_TIMESTAMP(), %s, %s, %s, %s)",
                       [run_id, status, digest, "keystone,neutron,cinder,nova", version],
                       database=jdb)
        for db, tbl, op, key, cols in images:
            server.execute("INSERT INTO images (run_id, batch, db, tbl, op, key_after, "
                           "row_before, cols) VALUES (%s, 1, %s, %s, %s, %s, NULL, %s)",
                           [run_id, db, tbl, op, key, cols], database=jdb)

        def cleanup():
            server.execute("DELETE FROM images WHERE run_id = %s", [run_id], database=jdb)
            server.execute("DELETE FROM runs WHERE run_id = %s", [run_id], database=jdb)
        return cleanup
    return setup


def _fifo(tmp: Path) -> str:
    path = tmp / "mapping.fifo"
    os.mkfifo(path)
    return str(path)


def _big(tmp: Path) -> str:
    path = tmp / "big.conf"
    with open(path, "w") as fh:
        fh.write("[hosts]\n")
        line = "# " + "x" * 1020 + "\n"
        for _ in range(17 * 1024):
            fh.write(line)
    return str(path)


ROLLBACK = ("rollback", "{run_id}")
SEG = "[segments]\n"
CASES = [
    # -- mapping files: names that would reach SQL ------------------------------------
    Case("host-nul", 2, ("new host", "not a valid host name"),
         "[hosts]\nold-control = contr\0oller\n"),
    Case("host-quote", 2, ("not a valid host name",), "[hosts]\nold-control = contr'oller\n"),
    Case("host-backtick", 2, ("not a valid host name",), "[hosts]\nold-control = `c`\n"),
    Case("host-backslash-quote", 2, ("not a valid host name",),
         "[hosts]\nold-control = c\\';--\n"),
    Case("host-unicode", 2, ("not a valid host name",), "[hosts]\nold-control = контроллер\n"),
    Case("host-long", 2, ("not a valid host name", "..."), "[hosts]\nold-control = "
         + "a" * 300 + "\n"),
    Case("old-host-hostile", 2, ("not a valid host name",),
         "[hosts]\nold-control' OR '1'='1 = controller\n"),
    Case("endpoint-target-hostile", 2, ("not a valid host name",),
         "[endpoints]\nocata-vm = controller.domain/';--\n"),
    Case("endpoint-homoglyph", 2, ("not a valid host name",),
         "[endpoints]\n\u043ecata-vm = controller.domain\n"),
    Case("physnet-quote", 2, ("not a valid physical network name",),
         SEG + "flat dm'z = vlan provider 100\n"),
    Case("target-physnet-backtick", 2, ("not a valid physical network name",),
         SEG + "flat dmz = vlan prov`ider 100\n"),
    Case("network-id-sql", 2, ("segment selector", "or 'network UUID'"),
         SEG + "network 1';DROP TABLE networks;-- = vxlan\n"),
    Case("network-id-long", 2, ("is not a UUID", "..."), SEG + "network " + "f" * 5000
         + " = vxlan\n"),
    Case("segmentation-id-sql", 2, ("VLAN id '100;' is not an integer",),
         SEG + "flat dmz = vlan provider 100;\n"),
    Case("compute-node-hostile", 2, ("not a valid host name",),
         "[computes]\ncompute01 = compute05 compute05.domain'\n"),
    Case("unknown-instance-uuid", 2, ("MAPPING_UNKNOWN_INSTANCE", UNKNOWN),
         f"[computes]\ninstance {UNKNOWN} = compute05 compute05.domain\n"),
    Case("option-hostile", 2, ("firewall_driver",),
         "[options]\nfirewall_driver = openvswitch';--\n"),
    Case("megabyte-line", 2, ("expected 'KEY = VALUE'", "..."), "[hosts]\n" + "k" * 1_000_000),
    # -- mapping files that are not mapping files -------------------------------------
    Case("mapping-dev-zero", 2, ("/dev/zero", "is a device"), mapping_path=lambda t: "/dev/zero",
         seconds=10),
    Case("mapping-fifo", 2, ("is a FIFO",), mapping_path=_fifo, seconds=10),
    Case("mapping-directory", 2, ("is a directory",), mapping_path=lambda t: str(t)),
    Case("mapping-oversized", 2, ("bytes, more than the 16 MiB",), mapping_path=_big),
    # -- pacestack.conf: names that would reach SQL -----------------------------------
    Case("journal-db-backtick", 2, ("journal_database",),
         conf="[migrate]\njournal_database = pace`stack\n"),
    Case("journal-db-sql", 2, ("journal_database",),
         conf="[migrate]\njournal_database = x';DROP DATABASE mysql;--\n"),
    Case("journal-db-long", 2, ("journal_database",), conf="[migrate]\njournal_database = "
         + "j" * 65 + "\n"),
    Case("db-name-backtick", 2, ("nova_connection", "not a database name"),
         conf=_db_override("nova", database="nova%60x")),
    Case("db-name-nul", 2, ("nova_connection", "not a database name"),
         conf=_db_override("nova", database="nova%00")),
    Case("db-name-long", 2, ("not a database name",),
         conf=_db_override("nova", database="n" * 100)),
    Case("db-name-quote-semicolon", 2, ("no database", "nova'; DROP DATABASE x; --"),
         conf=_db_override("nova", database="nova%27%3B%20DROP%20DATABASE%20x%3B%20--")),
    Case("db-name-unicode", 2, ("no database", "нова"),
         conf=_db_override("nova", database="нова")),
    Case("url-host-quote", 2, ("not a host name or address",),
         conf=_db_override("nova", host="contr'oller")),
    Case("url-host-unicode", 2, ("not a host name or address",),
         conf=_db_override("nova", host="контроллер")),
    Case("url-host-long", 2, ("not a host name or address", "..."),
         conf=_db_override("nova", host="h" * 1000)),
    Case("url-control-char", 2, ("control character",),
         conf=lambda s, ctx: f"[migrate]\nconnection = {_url(s, database='')}\x07\n"),
    Case("timeout-sql", 2, ("connect_timeout",),
         conf="[database]\nconnect_timeout = 1; DROP TABLE x\n"),
    Case("ml2-dev-zero", 2, ("is a device",), conf="[openstack]\nml2_config = /dev/zero\n",
         seconds=10),
    Case("service-config-binary", 2, ("not a UTF-8 text file",),
         conf=lambda s, ctx: f"[openstack]\nnova_config = {ctx['binary']}\n"),
    # -- wrong credentials -----------------------------------------------------------
    Case("service-url-wrong-password", 2, ("access denied", "keystone_connection"),
         conf=_db_override("keystone", password=HOSTILE_PW)),
    Case("admin-wrong-user", 2, ("access denied", "[migrate] connection"),
         conf=_admin(user="no'body`;")),
    Case("user-sees-no-database", 2, ("no database",), setup=_user("ps_none", ())),
    Case("user-may-not-write", 2, ("lacks a privilege",), setup=_user("ps_ro", ("SELECT",))),
    # -- unknown ids -----------------------------------------------------------------
    Case("rollback-unknown-run", 2, ("no migrate run", UNKNOWN), argv=("rollback", UNKNOWN)),
    Case("rollback-hostile-run-id", 2, ("RUN_ID", "not a run id"),
         argv=("rollback", "x'); DROP TABLE runs; --")),
    Case("rollback-long-run-id", 2, ("RUN_ID", "not a run id"), argv=("rollback", "r" * 10000)),
    # -- journals from other versions -----------------------------------------------------
    Case("resume-other-version", 2, ("interrupted under pacestack 9.9.0",),
         setup=_journal_run("9.9.0", "running", [])),
    Case("rollback-unknown-table", 2, ("pacestack 9.9.0", "neutron.frobnicators"), argv=ROLLBACK,
         setup=_journal_run("9.9.0", "done", [("neutron", "frobnicators", "update",
                                                '{"id": "x"}', '["colour"]')])),
    Case("rollback-unknown-column", 2, ("did not record its version", "vm_state"), argv=ROLLBACK,
         setup=_journal_run(None, "done", [("nova", "instances", "update", '{"id": 1}',
                                            '["vm_state"]')])),
    Case("rollback-unknown-op", 2, ("pacestack 0.0.1", "upsert"), argv=ROLLBACK,
         setup=_journal_run("0.0.1", "done", [("nova", "instances", "upsert", '{"id": 1}',
                                               '["host"]')])),
    Case("rollback-garbage-image", 2, ("is not JSON",), argv=ROLLBACK,
         setup=_journal_run("0.1.0", "done", [("nova", "instances", "update", "{not json",
                                               '["host"]')])),
    # a packed image (many rows in one) without its rows
    Case("rollback-empty-packed-image", 2, ("is not JSON",), argv=ROLLBACK,
         setup=_journal_run("0.1.0", "done", [("nova", "instances", "updates",
                                               '{"pk": ["id"], "vary": []}', '["host"]')])),
    # -- servers that answer garbage or hang (a TCP stand-in) ----------------------------
    Case("admin-server-garbage", 1, ("does not speak the MySQL protocol",), conf=_fake_admin,
         fake="garbage", seconds=15),
    Case("admin-server-http", 1, ("does not speak the MySQL protocol",), conf=_fake_admin,
         fake="http", seconds=15),
    Case("admin-server-hangs", 1, ("no answer within 2 s",), conf=_fake_admin, fake="hang",
         seconds=15),
    Case("admin-server-closes", 1, ("127.0.0.1",), conf=_fake_admin, fake="close", seconds=15),
    Case("service-server-garbage", 1, ("does not speak the MySQL protocol",),
         conf=_fake_services, fake="garbage", seconds=15),
    Case("rollback-server-hangs", 1, ("no answer within 2 s",), argv=("rollback", UNKNOWN),
         conf=_fake_admin, fake="hang", seconds=15),
]


def _conf(s: Seeded, tmp: Path, case: Case, ctx: dict) -> Path:
    path = write_conf(tmp / "pacestack.conf", s.os, s.ml2_path, s.journal_db)
    extra = case.conf(s, ctx) if callable(case.conf) else case.conf
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(extra + ctx.get("conf", ""))
    return path


def assert_one_line(r, code: int, needles, secrets=()) -> str:
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-1000:])
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("pacestack: error:")]
    assert len(err) == 1, r.stderr[-2000:]
    assert len(err[0]) < 600, err[0][:700]
    for n in needles:
        assert n in err[0], (n, err[0])
    for secret in secrets:
        assert secret not in r.stdout + r.stderr
    return err[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(cloud, case, tmp_path):
    ctx: dict = {"binary": str(tmp_path / "binary.conf")}
    Path(ctx["binary"]).write_bytes(b"[database]\nconnection = \xff\xfe\x00\x9c\n")
    mapping = tmp_path / "mapping.conf"
    if case.mapping is None:
        mapping.write_text(seed_cloud.SEED_MAPPING)
    elif isinstance(case.mapping, bytes):
        mapping.write_bytes(case.mapping)
    else:
        mapping.write_text(case.mapping)
    mpath = case.mapping_path(tmp_path) if case.mapping_path else str(mapping)
    cleanup = case.setup(cloud, ctx) if case.setup else None
    try:
        before = state(cloud)
        with (fake_server(case.fake) if case.fake else _no_server()) as port:
            ctx["port"] = port
            conf = _conf(cloud, tmp_path, case, ctx)
            argv = [a.format(mapping=mpath, run_id=ctx.get("run_id", "")) for a in case.argv]
            started = time.monotonic()
            r = cloud.cli(*argv, conf=conf, timeout=case.seconds + 30)
            took = time.monotonic() - started
        assert_one_line(r, case.code, case.needles,
                        secrets=(cloud.os.server.root_password, HOSTILE_PW))
        assert took < case.seconds, took
        assert state(cloud) == before
    finally:
        if cleanup:
            cleanup()


class _no_server:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_catalogue_size():
    """The catalogue, counted for the record; ids are unique."""
    assert len({c.id for c in CASES}) == len(CASES) >= 50


# -- runtime failures in the middle of a run (exit 1, one line, the rerun finishes) ------

def _hold_instance_lock(s: Seeded):
    """A transaction holding the row lock apply's nova batch needs."""
    conn = s.os.connect("nova", autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM instances WHERE uuid = %s FOR UPDATE",
                    [s.seed.instances["vm-a"]])
    return conn


def _finished(s: Seeded) -> None:
    r = s.cli("apply", "--mapping", str(s.mapping_path))
    assert r.returncode == 0, r.stderr
    assert s.sql("nova", "SELECT host FROM instances WHERE uuid = %s",
                 [s.seed.instances["vm-a"]]) == (("compute05",),)


def test_lock_wait_timeout_mid_apply(seeded):
    server = seeded.os.server
    locker = _hold_instance_lock(seeded)
    server.execute("SET GLOBAL innodb_lock_wait_timeout = 1")
    try:
        r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    finally:
        server.execute("SET GLOBAL innodb_lock_wait_timeout = 50")
        locker.rollback()
        locker.close()
    assert_one_line(r, 1, ("1205", "Lock wait timeout", "run the same command again"),
                    secrets=(server.root_password,))
    assert seeded.sql("nova", "SELECT host FROM instances WHERE uuid = %s",
                      [seeded.seed.instances["vm-a"]]) == (("compute01",),)
    _finished(seeded)


def test_server_gone_mid_apply(seeded):
    """The apply's connections are killed while its batch waits on a lock: to the
    client that is a server gone away (the real server; killing it would end the
    session's other clouds too)."""
    server = seeded.os.server
    locker = _hold_instance_lock(seeded)
    try:
        with locker.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            mine = cur.fetchone()[0]
        p = seeded.cli("apply", "--mapping", str(seeded.mapping_path), popen=True)

        def waiting() -> list[int]:
            return [row[0] for row in server.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID != %s AND "
                "ID != CONNECTION_ID() AND USER = 'root' AND COMMAND = 'Query' AND TIME >= 1",
                [mine])] if p.poll() is None else []

        from pacestack import proc
        assert proc.wait_for(lambda: bool(waiting()), 120, interval=0.2), p.communicate()
        for row in server.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE "
                                  "ID != %s AND ID != CONNECTION_ID() AND USER = 'root'",
                                  [mine]):
            server.execute(f"KILL CONNECTION {int(row[0])}")
        out, err = p.communicate(timeout=120)
    finally:
        locker.rollback()
        locker.close()
    r = type("R", (), {"returncode": p.returncode, "stdout": out, "stderr": err})
    assert_one_line(r, 1, ("lost the database server", "run the same command again"),
                    secrets=(server.root_password,))
    _finished(seeded)


def test_nova_readback_that_prints_garbage(seeded, tmp_path):
    """verify with an interpreter that does not print nova's read-back (a stand-in
    script: the real nova prints what verify expects)."""
    _finished(seeded)
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'Deprecation: something'\necho '{\"a\": 1}'\n")
    fake.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    conf = write_conf(tmp_path / "garbage.conf", seeded.os, seeded.ml2_path, seeded.journal_db,
                      openstack_python=fake, openstack_bin_dir=bin_dir)
    before = seeded.checksums()
    r = seeded.cli("verify", "--mapping", str(seeded.mapping_path), "--only", "nova", conf=conf)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == 1, (r.stdout, r.stderr)
    line = [ln for ln in r.stdout.splitlines() if "NOVA_READBACK_FAILED" in ln]
    assert len(line) == 1 and "not nova's read-back" in line[0], r.stdout
    assert seeded.checksums() == before


def test_journal_from_before_versions_were_recorded(seeded):
    """A journal whose runs table has no version column (written by an earlier
    pacestack) gains it; the new run records its writer, and rollback works."""
    from pacestack import __version__
    server, jdb = seeded.os.server, seeded.journal_db
    server.execute(f"CREATE DATABASE `{jdb}`")
    server.execute("CREATE TABLE runs (run_id VARCHAR(36) NOT NULL PRIMARY KEY, started_at "
                   "DATETIME NOT NULL, finished_at DATETIME NULL, status VARCHAR(16) NOT NULL, "
                   "mapping_digest CHAR(64) NOT NULL, steps VARCHAR(255) NOT NULL, batches INT "
                   "NOT NULL DEFAULT 0, changes INT NOT NULL DEFAULT 0)", database=jdb)
    before = seeded.checksums()
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[1].rstrip(":")
    assert server.execute("SELECT pacestack_version FROM runs WHERE run_id = %s", [run_id],
                          database=jdb) == [(__version__,)]
    r = seeded.cli("rollback", run_id)
    assert r.returncode == 0, r.stderr
    assert seeded.checksums() == before


def test_journal_of_single_row_images_rolls_back(seeded):
    """A run journaled one image per row, as pacestack wrote every update before
    groups of small rows were packed into one image, rolls back to the byte."""
    import contextlib

    from pacestack.migrate.batch import PACKED, Digest
    from pacestack.migrate.journal import dumps
    server, jdb = seeded.os.server, seeded.journal_db
    before = seeded.checksums()
    r = seeded.cli("apply", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[1].rstrip(":")
    packed = [s for (s,) in server.execute("SELECT seq FROM images WHERE run_id = %s AND "
                                           "op = %s", [run_id, PACKED], database=jdb)]
    assert packed  # the seed's bindings, levels and instances at least
    with contextlib.closing(seeded.cloud()) as c:
        rows = [im for im in Journal(c).images(run_id) if im["seq"][0] in packed]
    for im in rows:
        after = {k: {"$md5": str(v)} if isinstance(v, Digest) else v
                 for k, v in im["row_after"].items()}
        server.execute("INSERT INTO images (run_id, batch, db, tbl, op, key_after, row_before, "
                       "cols, row_after) VALUES (%s, %s, %s, %s, 'update', %s, %s, %s, %s)",
                       [run_id, im["batch"], im["db"], im["tbl"], dumps(im["key_after"]),
                        dumps(im["row_before"]), dumps(im["cols"]), dumps(after)], database=jdb)
    server.execute("DELETE FROM images WHERE run_id = %s AND op = %s", [run_id, PACKED],
                   database=jdb)
    r = seeded.cli("rollback", run_id)
    assert r.returncode == 0, r.stderr
    assert seeded.checksums() == before
