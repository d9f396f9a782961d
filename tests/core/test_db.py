"""pacestack.db: oslo.db URLs, service config files, and real connections."""

import pytest

from pacestack import db
from pacestack.errors import EXIT_RUNTIME, EXIT_USAGE, ConfigError, PacestackError

HOSTILE_PASSWORD = "p@ss:w/rd?#%'\";DROP TABLE x;--"


def test_parse_and_mask():
    url = db.parse_url("mysql+pymysql://nova:s3cret@controller.domain:3307/nova?charset=utf8")
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "nova", "s3cret", "controller.domain", 3307, "nova")
    assert url.query == {"charset": "utf8"}
    assert "s3cret" not in url.masked() and "s3cret" not in str(url) and "s3cret" not in repr(url)
    assert url.masked() == "mysql+pymysql://nova:****@controller.domain:3307/nova?charset=utf8"
    assert db.parse_url(url.render()) == url


def test_hostile_password_round_trips_quoted():
    import urllib.parse
    raw = f"mysql+pymysql://u:{urllib.parse.quote(HOSTILE_PASSWORD, safe='')}@127.0.0.1/x"
    url = db.parse_url(raw)
    assert url.password == HOSTILE_PASSWORD
    assert HOSTILE_PASSWORD not in url.masked()


@pytest.mark.parametrize("raw, words", [
    ("", "empty"),
    ("controller/nova", "not a database URL"),
    ("postgresql://u:pw@h/db", "unsupported database dialect"),
    ("mysql+pymysql://u:pw@h:notaport/db", "bad host or port"),
    ("mysql+pymysql://u:pw@/db", "names no host"),
])
def test_malformed_urls_are_one_line_config_errors(raw, words):
    with pytest.raises(ConfigError) as exc:
        db.parse_url(raw, source="nova.conf [database] connection")
    message = str(exc.value)
    assert words in message and "nova.conf [database] connection" in message
    assert ":pw@" not in message
    assert "\n" not in message and exc.value.exit_code == EXIT_USAGE


def test_url_from_service_config(tmp_path):
    conf = tmp_path / "nova.conf"
    conf.write_text("[DEFAULT]\ntransport_url = fake://\n[database]\n"
                    "connection = mysql+pymysql://nova:pw1@10.0.0.5/nova\n"
                    "[api_database]\nconnection = mysql+pymysql://nova:pw2@10.0.0.5/nova_api\n")
    assert db.url_from_service_config(str(conf)).database == "nova"
    api = db.url_from_service_config(str(conf), "api_database")
    assert api.database == "nova_api" and api.password == "pw2"
    assert str(conf) in api.source
    with pytest.raises(ConfigError, match=r"\[placement_database\] connection is not set"):
        db.url_from_service_config(str(conf), "placement_database")
    with pytest.raises(ConfigError, match="no such file"):
        db.url_from_service_config(str(tmp_path / "missing.conf"))
    bad = tmp_path / "bad.conf"
    bad.write_text("[database\nconnection = x\n")
    with pytest.raises(ConfigError, match="bad.conf"):
        db.url_from_service_config(str(bad))


def test_connect_to_real_server(mariadb):
    url = db.parse_url(mariadb.url("mysql"))
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchone()[0] == "root@127.0.0.1"


def test_wrong_password_is_config_error_without_password(mariadb):
    url = db.parse_url(mariadb.url(password="definitely-wrong-pw"), source="cinder.conf")
    with pytest.raises(ConfigError) as exc:
        db.connect(url)
    message = str(exc.value)
    assert "access denied" in message and f"127.0.0.1:{mariadb.port}" in message
    assert "definitely-wrong-pw" not in message and mariadb.root_password not in message


def test_unreachable_server_is_runtime_error(mariadb):
    from tests.fixtures.mariadb import free_port
    port = free_port()
    url = db.parse_url(f"mysql+pymysql://root:pw@127.0.0.1:{port}/x")
    with pytest.raises(PacestackError) as exc:
        db.connect(url, timeout=2)
    assert exc.value.exit_code == EXIT_RUNTIME
    assert f"127.0.0.1:{port}" in str(exc.value) and "unreachable" in str(exc.value)
