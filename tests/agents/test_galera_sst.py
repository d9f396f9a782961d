"""wsrep_sst_method=pacestack_rsync (agents/sst/): MariaDB's own wsrep_sst_rsync with
shims that end three of its joiner's waits early.

The shims are checked against real bash running the sequences the stock script runs
(a wait that ends early only once what it waits for has happened; every other
sleep its full length). The method is checked on real Galera: a full SST into a
wiped datadir and an IST, all rows present after; and a joiner whose donor is
killed mid-transfer fails and reports no state as received.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from pacestack.agents.galera_mysqld import SST_DIR, SST_METHOD, sst_env
from pacestack.agents.galera_sst import advertises, donor_methods, join_method

from pacestack import proc
from tests.fixtures.galera import AgentDriver
from tests.fixtures.mariadb import MARIADBD

SHIMS = Path(SST_DIR) / "shims"
# (what the stock script runs before its sleep, the sleep, how long it may take)
TIMED = r'''
t() { local s=$(date +%s%N); "$@"; echo "$* $(( ($(date +%s%N) - s) / 1000000 ))"; }
'''


def _run_shims(tmp_path: Path, body: str) -> dict[str, int]:
    """Run ``body`` in bash with the shims first on PATH as the wrapper sets them up;
    lines ``NAME MS`` it prints come back as a dict (first word: the label)."""
    # a directory of each run's own, as the wrapper makes one (mktemp -d) per run: a
    # test that runs its script again must not find the last run's record
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp_path))
    script = tmp_path / "t.sh"
    script.write_text("set -ue\n" + TIMED + body)
    env = {**os.environ, "PATH": f"{SHIMS}:{os.environ['PATH']}",
           "PACESTACK_SST_STATE": str(state), "PACESTACK_SST_MAGIC": str(tmp_path / "magic")}
    out = subprocess.run(["bash", "-c", f'PACESTACK_SST_PARENT=$$ exec bash {script}'],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    got = {}
    for line in out.stdout.splitlines():
        label, *_, ms = line.split()
        got[label] = int(ms)
    return got


def test_sleep_shim_ends_the_magic_poll_only_when_the_file_arrives(tmp_path):
    magic = tmp_path / "magic"
    got = _run_shims(tmp_path, f'''
# the magic-file loop: ps -p <mariadbd> then sleep 1; the donor's file lands at 0.2 s
( /usr/bin/sleep 0.2; echo done > {magic} ) &
ps -p $PACESTACK_SST_PARENT >/dev/null; t sleep 1 | sed 's/^/arrives /'
# the file was there when the sleep began: not this loop's wait, full length
ps -p $PACESTACK_SST_PARENT >/dev/null; t sleep 1 | sed 's/^/present /'
rm {magic}
# sleep 1 after checking another process (wait_previous_sst, lingering daemons):
# rounds of a timeout, never shortened even when the file appears
/usr/bin/sleep 5 & other=$!
( /usr/bin/sleep 0.2; echo done > {magic} ) &
ps -p $other >/dev/null; t sleep 1 | sed 's/^/round /'
kill $other
''')
    assert got["arrives"] < 600, got
    assert got["present"] >= 1000, got
    assert got["round"] >= 1000, got


def test_sleep_shim_ends_cleanups_grace_only_when_the_process_is_gone(tmp_path):
    got = _run_shims(tmp_path, '''
# cleanup_pid: ps -p PID, kill PID, sleep 0.5
/usr/bin/sleep 5 & victim=$!
ps -p $victim >/dev/null; kill $victim; t sleep 0.5 | sed 's/^/killed /'
# the process outlives the grace: full length, as is every round after it
/usr/bin/sleep 5 & alive=$!
ps -p $alive >/dev/null; t sleep 0.5 | sed 's/^/alive /'
ps -p $alive >/dev/null; t sleep 1 | sed 's/^/next /'
kill $alive
# any other sleep is the real one
t sleep 0.2 | sed 's/^/other /'
''')
    assert got["killed"] < 300, got
    assert got["alive"] >= 500, got
    assert got["next"] >= 1000, got
    assert got["other"] >= 200, got


def test_sleep_shim_spares_the_rsync_daemons_exit_pause_once_the_transfer_is_done(
        tmp_path):
    """The joiner's rsync daemon (real rsync) pauses 400 ms on SIGTERM before it
    exits. Once the donor's file is here the grace ends as soon as the daemon is
    gone, without that pause; before, the daemon takes its time."""
    magic = tmp_path / "magic"
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"pid file = {tmp_path}/rsyncd.pid\nuse chroot = no\n"
                    f"[sst]\npath = {tmp_path}\n")
    daemon = (f"rsync --daemon --no-detach --port 0 --address 127.0.0.1 --config {conf} &"
              "\nd=$!; /usr/bin/sleep 0.3")
    script = f'''
rm -f {magic}
# cleanup_pid of a transfer that never completed: SIGTERM, rsync's own pause
{daemon}
ps -p $d >/dev/null; kill $d; t sleep 0.5 | sed 's/^/pending /'
echo done > {magic}
{daemon}
ps -p $d >/dev/null; kill $d; t sleep 0.5 | sed 's/^/complete /'
ps -p $d >/dev/null && echo "alive 1" || :
'''
    # the shim's SIGUSR1 overtakes the pause only when it arrives before rsync's
    # SIGTERM handler runs (the lower signal is delivered first); on a loaded machine
    # rsync may get there first, and the grace lasts as long as without the shim
    for _ in range(3):
        got = _run_shims(tmp_path, script)
        assert "alive" not in got, got
        assert got["pending"] >= 350, got
        if got["complete"] < 200:
            break
    assert got["complete"] < 200, got


def test_sleep_shim_ends_the_wait_for_the_rsync_daemon_once_it_listens(tmp_path):
    """The joiner polls (sleep 0.2) until its rsync daemon (real rsync) listens,
    which takes tens of ms; a process that never listens gets the full sleep."""
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"pid file = {tmp_path}/rsyncd.pid\nuse chroot = no\n"
                    f"[sst]\npath = {tmp_path}\n")
    got = _run_shims(tmp_path, f'''
rsync --daemon --no-detach --port 0 --address 127.0.0.1 --config {conf} & d=$!
ps -p $d >/dev/null; t sleep 0.2 | sed 's/^/rsync /'
kill -USR1 $d
/usr/bin/sleep 5 & other=$!
ps -p $other >/dev/null; t sleep 0.2 | sed 's/^/silent /'
kill $other
''')
    assert got["rsync"] < 150, got
    assert got["silent"] >= 200, got


# -- on real Galera ----------------------------------------------------------------------
def _sst_cluster(galera_factory, monkeypatch, n: int, **extra):
    monkeypatch.setenv("PATH", sst_env(os.environ)["PATH"])
    config = {"wsrep_sst_method": SST_METHOD, **extra}
    cluster = galera_factory(n, extra_config=config)
    # the method's state directories of this cluster's transfers, apart from those of
    # any other Galera running here (mariadbd passes its environment on)
    tmp = cluster.base_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)  # like /tmp: mariadbd runs as mysql
    monkeypatch.setenv("TMPDIR", str(tmp))
    return cluster


def _spawn(node) -> subprocess.Popen:
    """mariadbd on the node's datadir as it is (the harness's start() would fill an
    empty one from its template), without waiting: a joiner opens its socket only
    after the state transfer."""
    node.write_config()
    with open(node.base_dir / "stdout.log", "ab") as log:
        popen = subprocess.Popen([MARIADBD, f"--defaults-file={node.defaults_file}"],
                                 stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    node._popen, node.pid = popen, popen.pid
    return popen


def _this_run(node) -> str:
    text = Path(node.log_error).read_text(errors="replace")
    return text[max(text.rfind("] Starting MariaDB "), 0):]


def _state_dirs() -> set[str]:
    return {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("pacestack-sst.*")}


@pytest.mark.slow
def test_full_sst_and_ist_join_through_pacestack_rsync(galera_factory, monkeypatch):
    cluster = _sst_cluster(galera_factory, monkeypatch, 2)
    before = _state_dirs()
    cluster.start_all()  # node2 joins by a full SST
    assert cluster["node2"].ist_or_sst() == "SST"
    assert "Running: 'wsrep_sst_pacestack_rsync --role 'joiner'" in _this_run(cluster["node2"])
    rows = cluster.write_rows("node1", "sst", 1, 30)

    # a replaced disk: a full SST into an empty datadir
    cluster.stop("node2")
    cluster["node2"].wipe()
    rows += cluster.write_rows("node1", "sst", 31, 10)
    _spawn(cluster["node2"])
    cluster.wait_synced(["node2"])
    assert cluster["node2"].ist_or_sst() == "SST"
    assert cluster.rows("node2", "sst") == rows

    # a restart: IST, the donor runs the same method with --bypass
    cluster.stop("node2")
    rows += cluster.write_rows("node1", "sst", 41, 25)
    cluster.start("node2")
    assert cluster["node2"].ist_or_sst() == "IST"
    assert "wsrep_sst_pacestack_rsync --role 'donor'" in _this_run(cluster["node1"])
    assert cluster.rows("node2", "sst") == rows
    cluster.wait_applied()
    # the wrapper removed its state directory each time
    assert _state_dirs() - before == set()


@pytest.mark.slow
def test_joiner_whose_donor_dies_mid_sst_fails_cleanly(galera_factory, monkeypatch):
    cluster = _sst_cluster(galera_factory, monkeypatch, 3, wsrep_sst_donor="node1,")
    cluster.start_all()
    rows = cluster.write_rows("node1", "half", 1, 50)
    joiner = cluster["node3"]
    cluster.stop("node3")
    joiner.wipe()
    donor_log = Path(cluster["node1"].log_error)
    seen = len(donor_log.read_text(errors="replace"))
    popen = _spawn(joiner)

    def copying() -> bool:
        return "Tables flushed" in donor_log.read_text(errors="replace")[seen:]
    assert proc.wait_for(copying, 60, interval=0.02), joiner.log_tail()
    cluster.kill9(["node1"], settle=False)

    # the joiner's mariadbd gives up: it never takes the partial copy for a state
    assert proc.wait_for(lambda: popen.poll() is not None, 120), joiner.log_tail()
    assert popen.returncode != 0
    text = _this_run(joiner)
    assert "completed on joiner" not in text
    assert "SST received" not in text and "Synced" not in text.split("Running: 'wsrep_sst")[-1]
    # nothing of the transfer is left running (rsync daemon, stock script, wrapper)
    assert proc.wait_for(lambda: not _transfer_processes(joiner), 30), \
        _transfer_processes(joiner)
    # no committed position recorded for the partial copy
    grastate = joiner.datadir / "grastate.dat"
    text = grastate.read_text() if grastate.exists() else ""
    assert not re.search(r"^seqno:\s+[0-9]", text, re.M), text
    # the survivor still has every row
    assert cluster.rows("node2", "half") == rows


def _transfer_processes(node) -> list[int]:
    marker = str(node.datadir).rstrip("/")
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and any(marker in a for a in proc.cmdline(int(entry.name))):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.usefixtures("agent_executables")
def test_the_agent_joins_by_pacestack_rsync_by_default(galera_factory):
    """The agent's default: its mariadbd (joiner and donor) runs the method from
    the agent's own directory, whatever PATH Pacemaker gave the agent."""
    cluster = galera_factory(2)  # the harness's config says rsync: the agent overrides
    driver = AgentDriver(cluster, cluster.base_dir / "cib.xml")
    assert driver.recover() == ["node1", "node2"]
    assert cluster["node2"].ist_or_sst() == "SST"
    # each advertised before its mariadbd started what that mariadbd can donate
    for name in ("node1", "node2"):
        assert advertises(driver.attr("galera-sst-methods", name), SST_METHOD)
    rows = cluster.write_rows("node1", "agent", 1, 20)
    rc, _, err = driver.run("node2", "demote")
    assert rc == 0, err
    rc, _, err = driver.run("node2", "stop")
    assert rc == 0, err
    driver.node_rebooted("node2")
    rows += cluster.write_rows("node1", "agent", 21, 20)
    assert driver.recover(["node2"]) == ["node2"]
    assert cluster["node2"].ist_or_sst() == "IST"
    assert "Running: 'wsrep_sst_pacestack_rsync --role 'joiner'" in _this_run(cluster["node2"])
    assert "wsrep_sst_pacestack_rsync --role 'donor'" in _this_run(cluster["node1"])
    assert cluster.rows("node2", "agent") == rows
    assert f"--wsrep_sst_method={SST_METHOD}" in proc.cmdline(cluster["node2"].current_pid())
    # a stopped node advertises nothing: whatever starts its mariadbd next does
    assert driver.run("node2", "demote")[0] == 0 and driver.run("node2", "stop")[0] == 0
    assert driver.attr("galera-sst-methods", "node2") is None


@pytest.mark.slow
@pytest.mark.usefixtures("agent_executables")
def test_a_joiner_asks_for_rsync_while_a_primary_peer_does_not_advertise(galera_factory):
    """A rolling upgrade: node1's mariadbd was started without this agent's SST
    scripts on its PATH (by an older pacestack: Primary, no advertisement). The
    upgraded node2 joins by plain rsync, which node1 can donate."""
    cluster = galera_factory(2)
    cluster.bootstrap("node1")  # by hand: the test's PATH, no wsrep_sst_pacestack_rsync
    rows = cluster.write_rows("node1", "upgrade", 1, 20)
    driver = AgentDriver(cluster, cluster.base_dir / "cib.xml")
    driver.set_attr("galera-primary", "node1", "1")
    driver.start(["node2"])
    rc, _, err = driver.run("node2", "promote")
    assert rc == 0, err[-1500:]
    assert "--wsrep_sst_method=rsync" in proc.cmdline(cluster["node2"].current_pid())
    assert "Running: 'wsrep_sst_rsync --role 'joiner'" in _this_run(cluster["node2"])
    assert cluster.rows("node2", "upgrade") == rows
    said = [ln for ln in (cluster.base_dir / "agent.log").read_text().splitlines()
            if "joining by wsrep_sst_method=rsync" in ln]
    assert len(said) == 1 and "Primary node1 does not advertise pacestack_rsync" in said[0], said


@pytest.mark.parametrize("explicit,donors,method", [
    (False, {"a": "pacestack_rsync,rsync", "b": "mariabackup,pacestack_rsync,rsync"},
     "pacestack_rsync"),
    (False, {"a": "pacestack_rsync,rsync", "b": None}, "rsync"),
    (False, {"a": "mariabackup,rsync"}, "rsync"),
    (True, {"a": None}, "pacestack_rsync"),  # the operator's choice, as given
])
def test_join_method_negotiation(explicit, donors, method):
    got, why = join_method(SST_METHOD, explicit, donors)
    assert got == method
    assert bool(why) == (method != SST_METHOD)
    if why:
        assert [n for n, v in donors.items() if not advertises(v, SST_METHOD)] == \
            [n for n in donors if n in why.split()]


def test_donor_methods_need_the_stock_script_for_pacestack_rsync(tmp_path):
    for d, names in {"bin": ["wsrep_sst_rsync", "wsrep_sst_common"],
                     "sst": ["wsrep_sst_pacestack_rsync"]}.items():
        (tmp_path / d).mkdir()
        for n in names:
            (tmp_path / d / n).write_text("#!/bin/sh\n")
            (tmp_path / d / n).chmod(0o755)
    path = f"relative:{tmp_path}/sst:/nonexistent"
    assert donor_methods(path, str(tmp_path / "bin")) == ["pacestack_rsync", "rsync"]
    assert donor_methods(path, "/nonexistent") == []


def _fake_stock(tmp_path: Path, body: str) -> dict[str, str]:
    """A stand-in wsrep_sst_rsync first on PATH (the wrapper's delegate): it reports
    what the wrapper gave it; the real one is exercised on Galera below."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "wsrep_sst_rsync"
    fake.write_text("#!/bin/bash\n"
                    f'echo "args $*"; echo "path $PATH"; echo "state ${{PACESTACK_SST_STATE:-}}"\n'
                    f'echo "magic ${{PACESTACK_SST_MAGIC:-}}"\n{body}\n')
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}


WRAPPER = str(Path(SST_DIR) / "wsrep_sst_pacestack_rsync")


def test_wrapper_hands_the_donor_to_the_stock_script_untouched(tmp_path):
    env = _fake_stock(tmp_path, "exit 5")
    out = subprocess.run([WRAPPER, "--role", "donor", "--address", "h:1/rsync_sst", "--bypass"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 5
    assert "args --role donor --address h:1/rsync_sst --bypass" in out.stdout
    assert f"{SHIMS}:" not in out.stdout and "state \n" in out.stdout


def test_wrapper_runs_the_joiner_with_the_shims_and_passes_signals_and_status(tmp_path):
    # like the stock script: a trap that ends its background job, then exit 3
    env = _fake_stock(tmp_path, "trap 'echo got-term; kill $(jobs -p); exit 3' TERM\n"
                                "echo ready x:1/rsync_sst\nsleep 30 >/dev/null & wait")
    argv = [WRAPPER, "--role", "joiner", "--address", "127.0.0.1:9", "--datadir",
            str(tmp_path / "data/"), "--parent", str(os.getpid())]
    wrapper = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in wrapper.stdout:
        lines.append(line)
        if line.startswith("ready"):
            break
    wrapper.terminate()  # what mariadbd sends the script it started
    rest, _ = wrapper.communicate(timeout=30)
    text = "".join(lines) + rest
    assert wrapper.returncode == 3, text
    assert "got-term" in rest
    assert f"path {SHIMS}:" in text
    assert f"magic {tmp_path}/data/rsync_sst_complete" in text
    # its state directory is gone with it
    assert not list(tmp_path.glob("pacestack-sst.*"))
