"""``pacestack cluster`` and ``galera`` against bad and hostile input.

Every case runs the installed ``pacestack`` command (real pcs, crm_verify,
cibadmin, ssh, MariaDB) and asserts one line naming what is wrong, the exit code
(2: the operator's input, 1: the environment), and that nothing changed: the CIB
file's bytes, the files an attacker pointed at, marker files a smuggled option
would create. Stand-ins, where the real thing cannot misbehave on demand: a fake
``pcs`` (and its interpreter) on PATH for "pcs prints garbage / hangs", fake
``crm_mon``/``crm_resource`` for "Pacemaker's tools hang".
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pacestack.errors import RuntimeFailure

PACESTACK = str(Path(sys.executable).with_name("pacestack"))
NOBODY = 65534
SECRET = "Sekrit-4242-xq"

BASE = """\
[cluster]
name = c
nodes = controller01,controller02
addresses = 10.0.0.11,10.0.0.12
profile = none

[vip]
address = 10.0.0.10
name = controller.domain
"""

FENCE = f"""
[fencing:fence-c1]
agent = fence_ipmilan
params =
    ip=10.0.1.11
    username=admin
    password={SECRET}
    pcmk_host_list=controller01
"""


def run(*argv: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PACESTACK, *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False, cwd="/")


def one_line_error(res: subprocess.CompletedProcess, rc: int, *words: str) -> str:
    lines = res.stderr.splitlines()
    assert res.returncode == rc, res.stderr
    assert len(lines) == 1 and lines[0].startswith("pacestack: error: "), res.stderr
    assert "Traceback" not in res.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cib(tmp_path) -> Path:
    path = tmp_path / "cib.xml"
    path.write_text(subprocess.run(["cibadmin", "--empty"], capture_output=True, text=True,
                                   check=True).stdout)
    return path


# ---- the description: malformed, oversized, names that would reach pcs as options --

DESCRIPTIONS = {
    "param key --force": (BASE + "[resource:a]\nagent = systemd:memcached\nparams =\n"
                          "    --force=1\n", "key '--force'"),
    "fence param key -f": (BASE + "[fencing:f]\nagent = fence_ipmilan\nparams =\n"
                           "    -f=/etc/passwd\n", "key '-f'"),
    "meta key --debug": (BASE + "[resource:a]\nagent = systemd:memcached\nmeta =\n"
                         "    --debug=1\n", "key '--debug'"),
    "clone_meta key -h": (BASE + "[resource:a]\nagent = systemd:memcached\nmode = clone\n"
                          "clone_meta =\n    -h=1\n", "key '-h'"),
    "unit starting with -": (BASE + "[resource:a]\nagent = systemd:--now\n",
                             "'--now' is not a unit name"),
    "cluster name option": (BASE.replace("name = c\n", "name = --debug\n"),
                            "'--debug' is not a cluster name"),
    "cluster name shell": (BASE.replace("name = c\n", "name = $(id)\n"),
                           "'$(id)' is not a cluster name"),
    "node name option": (BASE.replace("controller01,", "-oProxyCommand=x,"),
                         "is not a valid node name"),
    "resource name shell": (BASE + "[resource:a;id]\nagent = systemd:memcached\n",
                            "'a;id' is not a valid resource name"),
    "resource name subst": (BASE + "[resource:$(id)]\nagent = systemd:memcached\n",
                            "is not a valid resource name"),
    "fence name space": (BASE + "[fencing:f x]\nagent = fence_ipmilan\n",
                         "is not a valid Pacemaker id"),
    "agent path escape": (BASE + "[resource:a]\nagent = ocf:../../../bin:sh\n",
                          "unknown agent"),
    "fence agent not fence_": (BASE + "[fencing:f]\nagent = /bin/sh\n", "unknown fence agent"),
    "bad pair line": (BASE + "[resource:a]\nagent = systemd:memcached\nparams =\n"
                      "    novalue\n", "expected key=value"),
    "duplicate group": (BASE + "[resource:a]\nagent = systemd:x\n[resource:a]\n"
                        "agent = systemd:y\n", "duplicate name"),
    "not an ini file": ("this is not\nan ini file\n", "/desc.conf"),
    "not UTF-8": (b"[cluster]\nname = \xff\xfe\x00\x95\n", "not a UTF-8 text file"),
    "binary junk": (bytes(range(256)) * 64, "not a UTF-8 text file"),
    "oversized": (BASE + "# " + "x" * (2 * 1024 * 1024) + "\n", "larger than 1024 KiB"),
    "unknown option": (BASE + "[resource:a]\nagent = systemd:x\nbinary = /bin/sh\n",
                       "unknown option binary"),
    "VIP not an address": (BASE.replace("10.0.0.10", "$(id)"), "is not an IP address"),
}


@pytest.mark.parametrize("verb", ["plan", "apply"])
@pytest.mark.parametrize("case", sorted(DESCRIPTIONS))
def test_bad_description_is_one_line_and_changes_nothing(tmp_path, cib, verb, case):
    text, words = DESCRIPTIONS[case]
    desc = tmp_path / "desc.conf"
    if isinstance(text, bytes):
        desc.write_bytes(text)
    else:
        desc.write_text(text)
    before = cib.read_bytes()
    extra = ["--empty"] if verb == "plan" else ["--cib-file", str(cib)]
    res = run("cluster", verb, "-d", str(desc), *extra)
    one_line_error(res, 2, words)
    assert res.stdout == ""
    assert cib.read_bytes() == before


def test_description_that_is_a_directory_or_missing(tmp_path, cib):
    for path, words in ((tmp_path, "is a directory"), (tmp_path / "nope.conf", "")):
        res = run("cluster", "apply", "-d", str(path), "--cib-file", str(cib))
        one_line_error(res, 2, str(path), words)


# ---- secrets: never in output, never in a command line ------------------------------

def _execve_lines(trace: Path) -> list[str]:
    return [ln for ln in trace.read_text(errors="replace").splitlines() if "execve(" in ln]


@pytest.mark.parametrize("runner", ["each", "batch", "batch-files"])
def test_fence_password_stays_out_of_argv_and_output(tmp_path, runner):
    """strace records the argv of every process apply runs (pcs and everything pcs
    runs); the secret reaches the CIB file, and nothing else."""
    desc = tmp_path / "desc.conf"
    desc.write_text(BASE + FENCE)
    cib_path = tmp_path / "new-cib.xml"
    trace = tmp_path / "trace"
    res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "65535", "-o",
                          str(trace), PACESTACK, "cluster", "apply", "-d", str(desc),
                          "--cib-file", str(cib_path), "--runner", runner, "--format", "json"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    execs = _execve_lines(trace)
    assert any("pcs" in ln for ln in execs)
    assert not [ln for ln in execs if SECRET in ln]
    assert SECRET not in res.stdout + res.stderr
    assert "password=****" in res.stdout
    assert f'name="password" value="{SECRET}"' in cib_path.read_text()
    # a changed password is an update: the same holds
    desc.write_text(BASE + FENCE.replace(SECRET, SECRET + "-2"))
    res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-s", "65535", "-o",
                          str(trace), PACESTACK, "cluster", "apply", "-d", str(desc),
                          "--cib-file", str(cib_path), "--runner", runner],
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert not [ln for ln in _execve_lines(trace) if SECRET in ln]
    assert SECRET not in res.stdout + res.stderr
    assert f'name="password" value="{SECRET}-2"' in cib_path.read_text()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_plan_masks_secret_parameters(tmp_path, cib, fmt):
    desc = tmp_path / "desc.conf"
    desc.write_text(BASE + FENCE + "\n[resource:svc]\nagent = systemd:memcached\nparams =\n"
                    "    api_token=tok-77aa\n")
    res = run("cluster", "plan", "-d", str(desc), "--empty", "--format", fmt)
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout and "tok-77aa" not in res.stdout
    text = res.stdout if fmt == "text" else json.dumps(json.loads(res.stdout))
    assert "password=****" in text and "api_token=****" in text


@pytest.mark.parametrize("runner", ["each", "batch"])
def test_pcs_refusal_masks_the_secret(tmp_path, cib, runner):
    """pcs refuses the fencing device (an unknown parameter): the error quotes the
    command, masked."""
    desc = tmp_path / "desc.conf"
    desc.write_text(BASE + FENCE + "    no_such_option=1\n")
    before = cib.read_bytes()
    res = run("cluster", "apply", "-d", str(desc), "--cib-file", str(cib), "--runner", runner)
    line = one_line_error(res, 2, "pcs refused", "password=****")
    assert SECRET not in line + res.stdout
    assert cib.read_bytes() == before


# ---- pcs that answers garbage or hangs (a fake pcs on PATH) --------------------------

@pytest.fixture
def fake_pcs(tmp_path):
    """A ``pcs`` whose interpreter (its shebang, which the batch runner starts) prints
    ``behaviour``; PATH to put first."""
    def make(behaviour: str) -> str:
        bindir = tmp_path / "fakebin"
        bindir.mkdir(exist_ok=True)
        interp = bindir / "fake-python"
        interp.write_text(f"#!/bin/sh\n{behaviour}\n")
        interp.chmod(0o755)
        pcs = bindir / "pcs"
        pcs.write_text(f"#!{interp}\n")
        pcs.chmod(0o755)
        return f"{bindir}:{os.environ['PATH']}"
    return make


@pytest.mark.parametrize("garbage", ["echo '<html>502 Bad Gateway</html>'",
                                     "echo '{\"rc\": \"x\"}'", "echo '[1, 2]'",
                                     "head -c 4096 /dev/urandom | tr -d '\\n'; echo"])
def test_pcs_printing_garbage_is_one_line(tmp_path, cib, fake_pcs, garbage):
    desc = tmp_path / "desc.conf"
    desc.write_text(BASE)
    before = cib.read_bytes()
    res = run("cluster", "apply", "-d", str(desc), "--cib-file", str(cib),
              env={"PATH": fake_pcs(garbage)})
    one_line_error(res, 1, "pcs batch runner answered")
    assert cib.read_bytes() == before


def test_pcs_that_hangs_is_one_line(cib, fake_pcs, monkeypatch):
    from pacestack.cluster import pcsrun

    monkeypatch.setenv("PATH", fake_pcs("exec sleep 30"))
    for call in (lambda: pcsrun.run_batch(str(cib), [["property"]], timeout=1),
                 lambda: pcsrun.run_one_by_one(str(cib), [["property"]], timeout=1)):
        with pytest.raises(RuntimeFailure, match=r"did not finish within 1 s"):
            call()


# ---- the drill's work directory -----------------------------------------------------

def _as_nobody(*argv: str) -> None:
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    "--", *argv], check=True, timeout=30)


WORK_DIRS = {
    "another user's": (lambda p: _as_nobody("mkdir", "-m", "0700", str(p)),
                       f"belongs to uid {NOBODY}"),
    "world-writable": (lambda p: (p.mkdir(), p.chmod(0o1777)), "writable by group or others"),
    "group-writable": (lambda p: (p.mkdir(), p.chmod(0o770)), "writable by group or others"),
    "symlink": (lambda p: p.symlink_to("/etc"), "is a symbolic link"),
    "a file": (lambda p: p.write_text("x"), "is not a directory"),
    "missing parent": (lambda p: None, "No such file or directory"),
}


@pytest.mark.parametrize("case", sorted(WORK_DIRS))
def test_drill_work_dir_someone_else_controls_is_refused(case):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pacestack-test-workdir-"))
    base.chmod(0o1777)  # anyone may create a directory here: /tmp
    try:
        work = base / "work" if case != "missing parent" else base / "no" / "work"
        make, words = WORK_DIRS[case]
        make(work)
        before = sorted(os.listdir(base))
        res = run("cluster", "drill", "--work-dir", str(work), "--scenarios", "standby")
        one_line_error(res, 2, "--work-dir", words)
        assert sorted(os.listdir(base)) == before
        if case in ("another user's", "world-writable", "group-writable"):
            assert os.listdir(work) == []
        assert os.listdir("/etc") and not (Path("/etc") / "probe-standby.jsonl").exists()
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=False)


def test_drill_default_work_dir_is_fresh_and_private(tmp_path):
    from pacestack.cluster import drill

    first, second = drill.work_directory(None, "r1"), drill.work_directory(None, "r1")
    try:
        assert first != second
        for d in (first, second):
            st = d.lstat()
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
            assert st.st_uid == os.geteuid()
        own = tmp_path / "mine"
        assert drill.work_directory(own, "r1") == own and stat.S_IMODE(own.stat().st_mode) == 0o700
    finally:
        first.rmdir()
        second.rmdir()


# ---- host names that reach ssh ------------------------------------------------------

HOSTS = {
    "ssh option": "-oProxyCommand=touch MARK",
    "shell separator": "node1;touch MARK",
    "command substitution": "$(touch MARK)",
    "space": "node1 -oProxyCommand=touch",
    "user@": "root@node1",
    "empty": "",
    "long": "a" * 300,
}


@pytest.fixture
def defaults_file(tmp_path) -> Path:
    f = tmp_path / "my.cnf"
    f.write_text("[client]\nuser = drill\npassword = x\n")
    f.chmod(0o600)
    return f


@pytest.mark.parametrize("where, case", [
    (where, case) for where in ("--nodes", "--from", "--peer-host") for case in sorted(HOSTS)
    # user@host is a valid --peer-host, an empty one means "none"
    if where != "--peer-host" or case not in ("user@", "empty")])
def test_hostile_host_names_never_reach_ssh(tmp_path, defaults_file, case, where):
    mark = tmp_path / "MARK"
    host = HOSTS[case].replace("MARK", str(mark))
    if where == "--peer-host":
        desc = tmp_path / "desc.conf"
        desc.write_text(BASE)
        res = run("cluster", "preflight", "-d", str(desc), "--skip-database", "--root",
                  str(tmp_path), "--peer-host", host)
    else:
        nodes = f"{host},controller02" if where == "--nodes" else "controller01,controller02"
        extra = ["--from", host] if where == "--from" else []
        res = run("cluster", "drill", "--target", "ssh", "--nodes", nodes, *extra,
                  "--db-defaults-file", str(defaults_file), "--yes-i-mean-it",
                  "--work-dir", str(tmp_path / "work"), "--scenarios", "standby", timeout=60)
    if case == "empty" and where == "--nodes":
        one_line_error(res, 2, "--nodes")
    else:
        one_line_error(res, 2, where)
    assert not mark.exists()


# ---- preflight against a database that is not Keystone's, or holds junk -------------

@pytest.mark.parametrize("case", ["no keystone tables", "malformed endpoint URL"])
def test_preflight_database_trouble_is_a_finding_not_a_traceback(tmp_path, mariadb, case):
    db = f"hostile_{os.getpid()}_{case.split()[0]}"
    mariadb.execute(f"DROP DATABASE IF EXISTS `{db}`")
    mariadb.create_database(db)
    try:
        if case == "malformed endpoint URL":
            mariadb.execute("CREATE TABLE service (id VARCHAR(64), type VARCHAR(255))",
                            database=db)
            mariadb.execute("CREATE TABLE endpoint (id VARCHAR(64), interface VARCHAR(8), "
                            "url TEXT, service_id VARCHAR(64))", database=db)
            mariadb.execute("INSERT INTO service VALUES ('s1', 'identity')", database=db)
            mariadb.execute("INSERT INTO endpoint VALUES ('e1', 'public', "
                            "'http://[controller:5000/v3', 's1')", database=db)
        (tmp_path / "etc/keystone").mkdir(parents=True)
        (tmp_path / "etc/keystone/keystone.conf").write_text(
            f"[database]\nconnection = {mariadb.url(db)}\n")
        desc = tmp_path / "desc.conf"
        desc.write_text(BASE)
        res = run("cluster", "preflight", "-d", str(desc), "--root", str(tmp_path),
                  "--node", "controller01", "--format", "json")
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert mariadb.root_password not in res.stdout + res.stderr
        codes = {f["code"]: f for f in json.loads(res.stdout)["findings"]}
        code = "KEYSTONE_DB_UNREADABLE" if case.startswith("no") else "ENDPOINT_MALFORMED"
        assert code in codes, codes
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS `{db}`")


# ---- Pacemaker's tools hanging under galera status / recover ------------------------

@pytest.fixture
def hanging_tools(tmp_path, monkeypatch):
    bindir = tmp_path / "hangbin"
    bindir.mkdir()
    for tool in ("crm_mon", "cibadmin", "crm_resource"):
        (bindir / tool).write_text("#!/bin/sh\nexec sleep 30\n")
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


def test_galera_tools_that_hang_are_one_line(hanging_tools):
    from pacestack.galera import recover as galera_recover
    from pacestack.galera import status as galera_status

    with pytest.raises(RuntimeFailure, match=r"^crm_mon --one-shot did not answer within 1 s$"):
        galera_status._tool(["crm_mon", "--one-shot"], timeout=1)
    st = galera_status.GaleraStatus("galera", "galera-clone", [], [], None, None, {})
    assert galera_recover.nudge(st, "controller01", timeout=1) == \
        "crm_resource --refresh did not finish within 1 s"
