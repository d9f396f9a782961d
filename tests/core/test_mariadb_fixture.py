"""The MariaDB fixture runs a real server that answers real queries."""

import subprocess

import pymysql
import pytest


def test_query_against_real_mariadb(mariadb):
    rows = mariadb.execute("SELECT VERSION(), @@port, @@bind_address")
    version, port, bind = rows[0]
    assert "MariaDB" in version
    assert port == mariadb.port
    assert bind == "127.0.0.1"
    mariadb.create_database("fixture_probe")
    mariadb.execute("CREATE TABLE IF NOT EXISTS t (id INT PRIMARY KEY, v VARCHAR(10))",
                    database="fixture_probe")
    mariadb.execute("REPLACE INTO t VALUES (1, 'one')", database="fixture_probe")
    assert mariadb.execute("SELECT v FROM t WHERE id = 1", database="fixture_probe") == [("one",)]


def test_password_never_in_argv_and_wrong_password_refused(mariadb):
    cmdline = open(f"/proc/{mariadb.pid}/cmdline", "rb").read().decode()
    assert mariadb.root_password not in cmdline
    with pytest.raises(pymysql.err.OperationalError) as exc:
        mariadb.connect(password="not-the-password")
    assert exc.value.args[0] == 1045  # access denied


def test_real_mysql_client_through_defaults_file(mariadb):
    out = subprocess.run(mariadb.client_argv() + ["-N", "-e", "SELECT 6*7"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"


def test_factory_servers_are_independent_and_stopped(mariadb_factory):
    a = mariadb_factory("a")
    b = mariadb_factory("b")
    assert a.port != b.port
    a.create_database("only_on_a")
    assert ("only_on_a",) not in b.execute("SHOW DATABASES")
    pid = a.pid
    a.stop()
    assert not a.running()
    import os
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/status").read().find("Z") >= 0
