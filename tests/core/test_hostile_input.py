"""A catalogue of hostile input to the core: the ``pacestack`` command's configuration
files, database URLs and database servers. Each case must end in one line naming what
is wrong (per finding, for ``config check``), the right exit code, no traceback, no
secret, and nothing changed (the input file's bytes; the server's users and databases).
Servers that answer garbage or hang are a TCP stand-in (tests/fixtures/fake_server.py).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from pacestack import db
from pacestack.errors import EXIT_RUNTIME, EXIT_USAGE, PacestackError
from tests.fixtures.fake_server import fake_server

PACESTACK = os.path.join(os.path.dirname(sys.executable), "pacestack")
SECRET = "s3cr3t-'`;\"--\\x"


def _write(tmp: Path, name: str, data: str | bytes) -> str:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _fifo(tmp: Path, name: str = "p.conf") -> str:
    os.mkfifo(tmp / name)
    return str(tmp / name)


def _big(tmp: Path) -> str:
    path = tmp / "big.conf"
    with open(path, "w") as fh:
        fh.write("[database]\n")
        for _ in range(17 * 1024):
            fh.write("#" + "x" * 1023 + "\n")
    return str(path)


def _confdir(tmp: Path) -> str:
    d = tmp / "conf.d"
    d.mkdir()
    _fifo(d, "10-fifo.conf")
    return str(d)


# (id, how the case builds its file -> path, argv with {path}, exit code, needles)
CLI_CASES = [
    ("check-dev-zero", lambda t: "/dev/zero", ("config", "check", "{path}"), 2,
     ("/dev/zero", "is a device")),
    ("config-file-dev-zero", lambda t: "/dev/zero", ("--config-file", "{path}", "config",
                                                     "sample"), 2, ("is a device",)),
    ("check-fifo", _fifo, ("config", "check", "{path}"), 2, ("is a FIFO",)),
    ("config-file-fifo", _fifo, ("--config-file", "{path}", "config", "sample"), 2,
     ("is a FIFO",)),
    ("config-dir-fifo", _confdir, ("--config-dir", "{path}", "config", "sample"), 2,
     ("10-fifo.conf", "is a FIFO")),
    ("check-oversized", _big, ("config", "check", "{path}"), 2, ("more than the 16 MiB",)),
    ("config-file-oversized", _big, ("--config-file", "{path}", "config", "sample"), 2,
     ("more than the 16 MiB",)),
    ("check-binary", lambda t: _write(t, "b.conf", b"[database]\nconnect_timeout = \xff\xfe\n"),
     ("config", "check", "{path}"), 2, ("not a UTF-8",)),
    ("check-directory", lambda t: str(t), ("config", "check", "{path}"), 2,
     ("is a directory",)),
    ("check-no-section", lambda t: _write(t, "n.conf", "x = 1\n" * 3),
     ("config", "check", "{path}"), 2, ("line",)),
    ("config-file-garbage", lambda t: _write(t, "g.conf", "[database\n\0\0\0"),
     ("--config-file", "{path}", "config", "sample"), 2, ("g.conf",)),
    ("sample-into-directory", lambda t: str(t), ("config", "sample", "--output", "{path}"), 2,
     ("cannot write the sample", "Is a directory")),
    ("sample-into-missing-dir", lambda t: str(t / "no" / "such.conf"),
     ("config", "sample", "-o", "{path}"), 2, ("No such file or directory",)),
]

# config check findings: one per line, naming the file; (id, text, needles per line)
CHECK_CASES = [
    ("nul-group", "[data\0base]\nx = 1\n", ("unknown group", "\\x00")),
    ("unicode-group", "[базаданных]\nx = 1\n", ("unknown group", "базаданных")),
    ("sql-group", "[x'];DROP TABLE y;--]\na = 1\n", ("unknown group",)),
    ("backtick-option", "[database]\n`connection` = 1\n", ("unknown option",)),
    ("long-option", "[database]\n" + "o" * 100_000 + " = 1\n", ("unknown option", "...")),
    ("long-group", "[" + "g" * 100_000 + "]\n", ("unknown group", "...")),
    ("huge-value", "[database]\nconnect_timeout = " + "9" * 1_000_000 + "\n",
     ("connect_timeout", "...")),
    ("control-value", "[database]\nconnect_timeout = 1\x1b[2J\n", ("connect_timeout",)),
    ("secret-value", f"[database]\nnova_connection = {SECRET}\nnova_conection = {SECRET}\n",
     ("nova_conection",)),
]

# parse_url: (id, url, needles)
URL_CASES = [
    ("host-quote", f"mysql+pymysql://u:{SECRET}@contr'oller/nova", ("not a host name",)),
    ("host-backtick", f"mysql+pymysql://u:{SECRET}@`h`/nova", ("not a host name",)),
    ("host-semicolon", f"mysql+pymysql://u:{SECRET}@h;rm/nova", ("not a host name",)),
    ("host-unicode", "mysql+pymysql://u:pw@контроллер/nova", ("not a host name",)),
    ("host-long", "mysql+pymysql://u:pw@" + "h" * 5000 + "/nova", ("not a host name", "...")),
    ("db-backtick", "mysql+pymysql://u:pw@h/no%60va", ("not a database name",)),
    ("db-nul", "mysql+pymysql://u:pw@h/nova%00", ("not a database name",)),
    ("db-newline", "mysql+pymysql://u:pw@h/nova%0aDROP", ("not a database name",)),
    ("db-long", "mysql+pymysql://u:pw@h/" + "d" * 65, ("not a database name", "...")),
    ("raw-nul", "mysql+pymysql://u:pw@h/nova\0x", ("control character",)),
    ("raw-newline", "mysql+pymysql://u:pw@h/nova\nx", ("control character",)),
    ("port-sql", "mysql+pymysql://u:pw@h:3306;DROP/nova", ("bad host or port",)),
    ("dialect-hostile", "my'sql://u:pw@h/nova", ("unsupported database dialect",)),
    ("huge", "mysql+pymysql://u:pw@h/" + "x" * 1_000_000, ("not a database name", "...")),
]


def _sha(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_line(stderr: str, needles) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr[-2000:]
    assert len(lines[0]) < 600 and lines[0].isprintable(), lines[0][:700]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_hostile_config_files(case, tmp_path):
    _id, make, argv, code, needles = case
    path = make(tmp_path)
    before = _sha(path)
    started = time.monotonic()
    r = subprocess.run([PACESTACK, *(a.format(path=path) for a in argv)], capture_output=True,
                       text=True, timeout=60, check=False, cwd=tmp_path)
    assert time.monotonic() - started < 20
    assert r.returncode == code, (r.returncode, r.stderr[-1000:])
    _one_line(r.stderr, needles)
    assert _sha(path) == before


@pytest.mark.parametrize("case", CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_hostile_config_check(case, tmp_path):
    _id, text, needles = case
    path = _write(tmp_path, "p.conf", text)
    before = _sha(path)
    r = subprocess.run([PACESTACK, "config", "check", path], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == EXIT_USAGE, (r.returncode, r.stderr[-1000:])
    assert "Traceback" not in r.stderr and SECRET not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(ln.startswith(path) and len(ln) < 600 and ln.isprintable()
                         for ln in lines), r.stderr[:2000]
    assert any(all(n in ln for n in needles) for ln in lines), (needles, lines)
    assert _sha(path) == before


@pytest.mark.parametrize("case", URL_CASES, ids=[c[0] for c in URL_CASES])
def test_hostile_database_urls(case):
    _id, url, needles = case
    with pytest.raises(PacestackError) as exc:
        db.parse_url(url, source="nova.conf [database] connection")
    message = str(exc.value)
    assert exc.value.exit_code == EXIT_USAGE
    assert "nova.conf [database] connection" in message
    assert len(message) < 600 and message.isprintable(), message[:700]
    assert SECRET not in message and urllib.parse.quote(SECRET) not in message
    for n in needles:
        assert n in message, (n, message)


@pytest.mark.parametrize("behaviour, needles", [
    ("garbage", ("does not speak the MySQL protocol",)),
    ("http", ("does not speak the MySQL protocol",)),
    ("hang", ("no answer within 2 s",)),
    ("close", ("127.0.0.1",)),
])
def test_servers_that_answer_garbage_or_hang(behaviour, needles):
    with fake_server(behaviour) as port:
        url = db.parse_url(f"mysql+pymysql://root:{urllib.parse.quote(SECRET, safe='')}"
                           f"@127.0.0.1:{port}/nova", source="nova.conf [database] connection")
        started = time.monotonic()
        with pytest.raises(PacestackError) as exc:
            db.connect(url, timeout=2)
        took = time.monotonic() - started
    message = str(exc.value)
    assert exc.value.exit_code == EXIT_RUNTIME and took < 10, (took, message)
    assert f"127.0.0.1:{port}" in message and SECRET not in message
    for n in needles:
        assert n in message, (n, message)


def _server_state(mariadb) -> tuple:
    return (mariadb.execute("SELECT COUNT(*), MAX(password) FROM mysql.user"),
            sorted(r[0] for r in mariadb.execute("SHOW DATABASES")))


@pytest.mark.parametrize("user, password, database, needles, code", [
    ("root", SECRET, "mysql", ("access denied",), EXIT_USAGE),
    ("no'body`;--", SECRET, "mysql", ("access denied", "no'body`;--"), EXIT_USAGE),
    ("root", None, "no'such;db", ("unknown database",), EXIT_USAGE),
    ("root", None, "нет", ("unknown database",), EXIT_USAGE),
])
def test_wrong_credentials_and_unknown_databases(mariadb, user, password, database, needles,
                                                 code):
    before = _server_state(mariadb)
    pw = mariadb.root_password if password is None else password
    url = db.parse_url(f"mysql+pymysql://{urllib.parse.quote(user, safe='')}:"
                       f"{urllib.parse.quote(pw, safe='')}@127.0.0.1:{mariadb.port}/"
                       f"{urllib.parse.quote(database, safe='')}", source="test.conf")
    with pytest.raises(PacestackError) as exc:
        db.connect(url, timeout=5)
    message = str(exc.value)
    assert exc.value.exit_code == code
    assert SECRET not in message and mariadb.root_password not in message
    for n in needles:
        assert n in message, (n, message)
    assert _server_state(mariadb) == before


def test_catalogue_size():
    assert len(CLI_CASES) + len(CHECK_CASES) + len(URL_CASES) + 4 + 4 >= 40
