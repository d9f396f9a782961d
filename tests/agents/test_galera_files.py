"""Root in directories the mysql user owns (the CVE-2016-6664 class).

The agent runs as root in the pid directory and the datadir, both writable by
mysql. Each test plants, AS THE mysql USER (setpriv), a symlink or a FIFO where
the agent expects a file or a directory, pointing at a root-only victim outside,
then drives the agent's own code: the victim's content, owner and mode must stay
as they were, nothing may appear in a root directory, nothing of the victim may
reach a message, and the operation either works safely or refuses in one line.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from pacestack.agents import galera_mysqld, galera_state
from pacestack.agents.galera_mysqld import Mysqld, MysqldError
from pacestack.agents.galera_state import Position, StateError

from tests.fixtures.galera import GaleraCluster
from tests.fixtures.mariadb import MARIADBD
from tests.fixtures.ocf import exit_reason, make_cib, run_agent

MYSQL = "mysql"
UUID = "2ec83218-e91a-11f1-9c34-4743e91b2bee"
GRASTATE = (f"# GALERA saved state\nversion: 2.1\nuuid:    {galera_state.ZERO_UUID}\n"
            "seqno:   -1\nsafe_to_bootstrap: 0\n")


def as_mysql(*argv: str) -> None:
    subprocess.run(["setpriv", "--reuid", MYSQL, "--regid", MYSQL, "--init-groups", *argv],
                   check=True, capture_output=True, timeout=30)


def mysql_ids() -> tuple[int, int]:
    pw = pwd.getpwnam(MYSQL)
    return pw.pw_uid, pw.pw_gid


class Victim:
    """A root-only file and an empty root directory outside mysql's reach."""

    def __init__(self, root: Path):
        self.secret = f"s3cret-{secrets.token_hex(8)}"
        # "[ERROR]" so any log reader that followed a symlink would quote it
        self.text = f"root only [ERROR] {self.secret}\n"
        self.file = root / "victim"
        self.file.write_text(self.text)
        os.chmod(self.file, 0o600)
        self.dir = root / "victimdir"
        self.dir.mkdir(mode=0o755)
        self.before = self._state()

    def _state(self) -> tuple:
        st = os.stat(self.file)
        return (self.file.read_text(), st.st_uid, st.st_gid, st.st_mode, st.st_nlink,
                sorted(os.listdir(self.dir)), os.stat(self.dir).st_uid)

    def assert_untouched(self, *messages: str) -> None:
        assert self._state() == self.before
        for text in messages:
            assert self.secret not in text, text


@pytest.fixture
def area(tmp_path):
    """(a mysql-owned directory like /run/mysqld or the datadir, the victim)."""
    os.chmod(tmp_path, 0o700)  # the victim: reachable by root only
    base = Path(tempfile.mkdtemp(prefix="pacestack-galerafs-"))
    os.chmod(base, 0o755)
    shutil.chown(base, MYSQL, MYSQL)
    try:
        yield base, Victim(tmp_path)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def mysqld_at(base: Path, **kw: str) -> Mysqld:
    run = base / "run"
    fields = {"binary": MARIADBD, "config": str(base / "my.cnf"), "datadir": str(base / "data"),
              "socket": str(run / "mysqld.sock"), "pid_file": str(run / "mysqld.pid"),
              "log": str(base / "error.log"), "user": MYSQL, "group": MYSQL,
              "cluster_address": "gcomm://"}
    fields.update(kw)
    return Mysqld(**fields)


def one_line_refusal(err: BaseException, *words: str) -> str:
    text = str(err)
    assert "\n" not in text and text, text
    for w in words:
        assert w in text, text
    return text


def returns_promptly(call, fifo: Path, timeout: float = 5.0):
    """call() in a thread; when it blocks on the FIFO (old code), unblock it by
    opening the writing end, and fail."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except Exception as err:  # noqa: BLE001 - handed to the test
            box["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
        pytest.fail(f"blocked on the FIFO {fifo.name} for {timeout:.0f}s")
    return box


# -- the pid directory ------------------------------------------------------------------
def test_pid_file_write_never_follows_a_planted_symlink(area):
    base, victim = area
    run = base / "run"
    as_mysql("mkdir", str(run))
    pid_file = run / "mysqld.pid"
    # the old temporary name, and the pid file itself
    as_mysql("ln", "-s", str(victim.file), f"{pid_file}.agent{os.getpid()}")
    as_mysql("ln", "-s", str(victim.file), str(pid_file))
    galera_mysqld._write_pid(str(pid_file), 4242, *mysql_ids())
    victim.assert_untouched()
    st = os.lstat(pid_file)
    assert (st.st_uid, st.st_gid) == mysql_ids() and not os.path.islink(pid_file)
    assert pid_file.read_text() == "4242\n"
    assert sorted(os.listdir(run)) == sorted([pid_file.name, f"mysqld.pid.agent{os.getpid()}"])


def test_pid_directory_through_a_planted_symlink_is_refused(area):
    base, victim = area
    # mysql owns base: it swaps the pid directory for a symlink into root's directory
    as_mysql("ln", "-s", str(victim.dir), str(base / "run"))
    m = mysqld_at(base, socket=str(base / "run" / "sub" / "mysqld.sock"),
                  pid_file=str(base / "run" / "sub" / "mysqld.pid"))
    with pytest.raises(MysqldError) as err:
        m.spawn(["--version"])  # a real mariadbd that ends at once, were it started
    one_line_refusal(err.value, "symlink", "refusing")
    victim.assert_untouched(str(err.value))


def test_pid_directory_reached_through_roots_own_symlink_works(area, tmp_path):
    """A symlink root alone could have made (/var/run -> /run) is still followed."""
    base, victim = area
    as_mysql("mkdir", str(base / "run"))
    (tmp_path / "runlink").symlink_to(base / "run")
    galera_mysqld._write_pid(str(tmp_path / "runlink" / "mysqld.pid"), 77, *mysql_ids())
    assert (base / "run" / "mysqld.pid").read_text() == "77\n"
    assert os.stat(base / "run" / "mysqld.pid").st_uid == mysql_ids()[0]
    victim.assert_untouched()


def test_pid_file_fifo_does_not_hang_the_monitor(area):
    base, victim = area
    as_mysql("mkdir", str(base / "run"))
    fifo = base / "run" / "mysqld.pid"
    as_mysql("mkfifo", str(fifo))
    box = returns_promptly(lambda: mysqld_at(base).pid(), fifo)
    assert box == {"value": None}
    victim.assert_untouched()


def test_error_log_symlink_is_not_read(area):
    base, victim = area
    as_mysql("ln", "-s", str(victim.file), str(base / "error.log"))
    tail = mysqld_at(base).log_tail()
    assert tail == ""
    victim.assert_untouched(tail)


# -- the datadir: grastate.dat ---------------------------------------------------------
def _datadir(base: Path) -> Path:
    data = base / "data"
    as_mysql("mkdir", str(data))
    return data


@pytest.mark.parametrize("call", [
    lambda p: galera_state.set_safe_to_bootstrap(p),
    lambda p: galera_state.restore_uuid(p, UUID),
], ids=["set_safe_to_bootstrap", "restore_uuid"])
def test_grastate_symlink_is_refused_unread(area, call):
    base, victim = area
    path = _datadir(base) / "grastate.dat"
    as_mysql("ln", "-s", str(victim.file), str(path))
    with pytest.raises(StateError) as err:
        call(str(path))
    one_line_refusal(err.value, "symlink", str(path))
    victim.assert_untouched(str(err.value))
    assert os.path.islink(path)


@pytest.mark.parametrize("call", [
    lambda p: galera_state.set_safe_to_bootstrap(p),
    lambda p: galera_state.restore_uuid(p, UUID),
    lambda p: galera_state.read_grastate(p),
], ids=["set_safe_to_bootstrap", "restore_uuid", "read_grastate"])
def test_grastate_fifo_is_refused_promptly(area, call):
    base, victim = area
    fifo = _datadir(base) / "grastate.dat"
    as_mysql("mkfifo", str(fifo))
    box = returns_promptly(lambda: call(str(fifo)), fifo)
    assert isinstance(box.get("error"), StateError), box
    one_line_refusal(box["error"], "not a regular file")
    victim.assert_untouched()


def test_grastate_writes_refuse_a_datadir_swapped_for_a_symlink(area):
    base, victim = area
    (victim.dir / "grastate.dat").write_text(GRASTATE)  # root's copy: must stay as it is
    os.chmod(victim.dir / "grastate.dat", 0o600)
    victim.before = victim._state()
    as_mysql("ln", "-s", str(victim.dir), str(base / "data"))
    path = str(base / "data" / "grastate.dat")
    for call in (lambda: galera_state.write_grastate(path, Position(UUID, 5), *mysql_ids(),
                                                     safe_to_bootstrap=True),
                 lambda: galera_state.set_safe_to_bootstrap(path),
                 lambda: galera_state.restore_uuid(path, UUID)):
        with pytest.raises((StateError, OSError)) as err:
            call()
        one_line_refusal(err.value, "symlink")
        victim.assert_untouched(str(err.value))
    assert (victim.dir / "grastate.dat").read_text() == GRASTATE


def test_grastate_rewrite_keeps_galeras_file_and_leaves_no_temporary(area):
    """The safe path still does its job: owner and mode kept, content changed."""
    base, victim = area
    data = _datadir(base)
    path = data / "grastate.dat"
    as_mysql("sh", "-c", f"umask 007; printf '{GRASTATE}' > {path}")
    galera_state.restore_uuid(str(path), UUID)
    galera_state.set_safe_to_bootstrap(str(path))
    state = galera_state.read_grastate(str(path))
    assert (state.uuid, state.seqno, state.safe_to_bootstrap) == (UUID, -1, True)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*mysql_ids(), 0o660)
    assert os.listdir(data) == ["grastate.dat"]
    victim.assert_untouched()


# -- the datadir: --wsrep-recover and mariadb-install-db --------------------------------
PLANTER = r"""
import os, sys, time
data, victim = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    for n in os.listdir(data):
        p = os.path.join(data, n)
        if n.startswith("wsrep-recover.") and not os.path.islink(p) and os.path.getsize(p):
            os.symlink(victim, p + ".swap")
            os.rename(p + ".swap", p)
            print("swapped", n, flush=True)
            sys.exit(0)
    time.sleep(0.005)
sys.exit(1)
"""


def test_recover_log_swapped_for_a_symlink_is_not_read(galera_factory, area):
    """mysql swaps the --wsrep-recover log for a symlink to the victim while the real
    mariadbd writes it: root must read what mariadbd wrote, not the victim."""
    _, victim = area
    cluster = galera_factory(1)
    node = cluster[0]
    node.prepare_datadir()
    node.write_config()
    m = Mysqld(binary=MARIADBD, config=node.defaults_file, datadir=str(node.datadir),
               socket=node.socket, pid_file=node.pid_file, log=node.log_error, user=MYSQL,
               group=MYSQL, cluster_address=cluster.gcomm_url())
    planter = subprocess.Popen(
        ["setpriv", "--reuid", MYSQL, "--regid", MYSQL, "--init-groups", "/usr/bin/python3",
         "-c", PLANTER, str(node.datadir), str(victim.file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            pos = m.recover(timeout=90)
            message = ""
        except (MysqldError, StateError) as err:
            pos, message = None, str(err)
        out, _ = planter.communicate(timeout=70)
    finally:
        if planter.poll() is None:
            planter.kill()
            planter.wait()
    assert out.startswith("swapped"), "the planter never saw the log"
    victim.assert_untouched(message)
    assert pos is not None, message
    assert pos.uuid == galera_state.ZERO_UUID and pos.source == "recovered"
    assert not [n for n in os.listdir(node.datadir) if n.startswith("wsrep-recover.")]


def test_initialise_refuses_a_datadir_reached_through_a_planted_symlink(area):
    base, victim = area
    as_mysql("ln", "-s", str(victim.dir), str(base / "link"))
    m = mysqld_at(base, datadir=str(base / "link" / "data"))
    started = time.monotonic()
    with pytest.raises(MysqldError) as err:
        m.initialise()
    one_line_refusal(err.value, "symlink", "refusing")
    victim.assert_untouched(str(err.value))
    assert time.monotonic() - started < 5  # refused before mariadb-install-db ran


def mariadbd_on(datadir: Path) -> list[int]:
    """PIDs of processes started with --datadir=datadir."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"--datadir={datadir}".encode() in argv:
                found.append(int(entry))
    return found


# -- through the agent, as Pacemaker runs it ------------------------------------------------
def test_promote_refuses_a_pid_directory_swapped_for_a_symlink(ocf_provider, area, tmp_path):
    """The installed agent bootstraps a one-node cluster whose pid directory mysql
    made a symlink into root's directory: promote fails (OCF_ERR_GENERIC) with one
    line naming it, starts no mariadbd and writes nothing there."""
    _, victim = area
    cluster = GaleraCluster(1, names=[os.uname().nodename])
    cib = make_cib(tmp_path / "cib.xml", [cluster.nodes[0].name])
    env = {"HA_RSCTMP": str(tmp_path / "rsctmp")}
    try:
        node = cluster.nodes[0]
        node.prepare_datadir()
        node.write_config()
        as_mysql("ln", "-s", str(victim.dir), str(node.base_dir / "run"))
        params = {"config": node.defaults_file, "binary": MARIADBD,
                  "datadir": str(node.datadir), "socket": node.socket,
                  "pid": str(node.base_dir / "run" / "mysqld.pid"), "log": node.log_error,
                  "wsrep_cluster_address": cluster.gcomm_url(),
                  "cluster_host_map": cluster.host_map()}
        rc, _, err = run_agent("galera", "start", params, env=env, cib_file=cib, node=node.name)
        assert rc == 0, err[-800:]
        rc, _, err = run_agent("galera", "promote", params, env=env, cib_file=cib,
                               node=node.name, timeout_ms=60000)
        reason = exit_reason(err) or ""
        assert rc == 1, err[-800:]
        one_line_refusal(Exception(reason), "symlink", "refusing", "run")
        victim.assert_untouched(err)
        assert not mariadbd_on(node.datadir), reason
    finally:
        if "params" in locals():  # ends a mariadbd the agent started, by its pid file
            run_agent("galera", "stop", params, env=env, cib_file=cib, node=node.name)
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# -- the datadir: gvwstate.dat (Galera's saved view) and the recovery cache --------------
def test_forget_view_removes_the_saved_view_and_names_its_uuid(area):
    base, victim = area
    data = _datadir(base)
    as_mysql("sh", "-c", f"printf 'my_uuid: {UUID}\\n#vwbeg\\n#vwend\\n' > {data}/gvwstate.dat")
    m = mysqld_at(base)
    assert m.forget_view() == UUID
    assert not (data / "gvwstate.dat").exists()
    assert m.forget_view() is None


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_forget_view_unlinks_a_planted_entry_without_following_it(area, kind):
    base, victim = area
    data = _datadir(base)
    if kind == "symlink":
        as_mysql("ln", "-s", str(victim.file), str(data / "gvwstate.dat"))
    else:
        as_mysql("mkfifo", str(data / "gvwstate.dat"))
    box = returns_promptly(mysqld_at(base).forget_view, data / "gvwstate.dat")
    assert box == {"value": "?"}, box
    assert not os.path.lexists(data / "gvwstate.dat")
    victim.assert_untouched()


def test_recovery_cache_holds_only_while_the_datadir_is_unchanged(area):
    base, victim = area
    data = _datadir(base)
    as_mysql("sh", "-c", f"printf '{GRASTATE}' > {data}/grastate.dat")
    cache = base / "recovered"  # HA_RSCTMP's place: root's own
    m = mysqld_at(base, binary="/bin/false")  # any real recovery fails loudly
    cache.write_text(f"{m.fingerprint()}\n{UUID}:42\n")
    assert m.recover_cached(str(cache)) == Position(UUID, 42, "recovered")
    as_mysql("touch", str(data / "ib_logfile0"))  # mariadbd ran since: recover again
    with pytest.raises(MysqldError):
        m.recover_cached(str(cache))
    assert not cache.exists()
