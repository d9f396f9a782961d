"""The sh front of ocf:pacestack:galera's Promoted monitor (agents/galera_sh_monitor.py).

A real three-member Galera brought up by the installed agent (AgentDriver: Pacemaker's
environment, node attributes in a CIB file). Two more executables are written: the
real one as installed, and one whose Python is a stand-in that only says "the sh
front handed this over" (exit 99). For every state the test asserts which of the
two answered, that the real executable's answer is the Python agent's answer (the
front never says "running" where Python would not), and that a record of the
position Python would write is never skipped by the front.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pacestack.agents import install
from pacestack.agents.galera_mysqld import Mysqld

from tests.fixtures.galera import AgentDriver, GaleraCluster
from tests.fixtures.ocf import agent_env

HANDED_OVER = 99
RUNNING_PROMOTED = 8
PYTHON_ONLY = ("from pacestack.agents.ocf import run; from pacestack.agents.galera "
               "import GaleraAgent as A; raise SystemExit(run(A))")
NAMES = ["node1", "node2", "node3"]


class Fronts:
    def __init__(self, base: Path, driver: AgentDriver):
        base.mkdir(parents=True, exist_ok=True)
        self.driver = driver
        self.real = base / "galera"
        self.real.write_text(install.executable_text("galera", sys.executable))
        fake_python = base / "python-stand-in"
        fake_python.write_text(f"#!/bin/sh\necho handed-over >&2\nexit {HANDED_OVER}\n")
        fake_python.chmod(0o755)
        self.front_only = base / "front-only"
        self.front_only.write_text(install.executable_text("galera", str(fake_python),
                                                           paths=[]))
        for path in (self.real, self.front_only):
            path.chmod(0o755)

    def env(self, node: str, interval_ms: int = 10000, params: dict | None = None,
            extra: dict | None = None) -> dict[str, str]:
        d = self.driver
        n = d.cluster[node]
        env = agent_env("galera", "monitor", {**d.params(n), **(params or {})},
                        env=d.meta(), cib_file=d.cib, resource=d.resource,
                        interval_ms=interval_ms, node=n.name)
        env.update(extra or {})
        return env

    def _run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([*argv, "monitor"], env=env, capture_output=True, text=True,
                              timeout=60, check=False, cwd="/")

    def check(self, node: str, *, in_sh: bool, **kw) -> int:
        """Which one answered, and the real executable agrees with Python alone."""
        env = self.env(node, **kw)
        front = self._run([str(self.front_only)], env)
        assert front.returncode in (RUNNING_PROMOTED, HANDED_OVER), front
        assert (front.returncode == RUNNING_PROMOTED) is in_sh, front
        python = self._run([sys.executable, "-c", PYTHON_ONLY], env).returncode
        real = self._run([str(self.real)], env).returncode
        assert real == python, f"sh front says {real}, the Python agent {python}"
        if in_sh:
            assert real == RUNNING_PROMOTED
        return real

    def record_file(self, node: str) -> Path:
        return self.driver.rsctmp / f"pacestack-galera-galera-{node}.recorded"

    def record(self, node: str) -> list[str]:
        return self.record_file(node).read_text().split()


@pytest.fixture(scope="module")
def promoted(ocf_provider, tmp_path_factory):
    base = tmp_path_factory.mktemp("galera-sh")
    cluster = GaleraCluster(2, names=NAMES)
    driver = AgentDriver(cluster, base / "cib.xml")
    try:
        driver.recover()
        yield cluster, driver, Fronts(base / "agents", driver)
    finally:
        cluster.destroy()


def test_script_is_posix_sh(tmp_path):
    path = tmp_path / "galera"
    path.write_text(install.executable_text("galera", sys.executable))
    for shell in ("sh", "dash"):
        res = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_healthy_promoted_monitor_is_answered_in_sh_and_no_record_is_skipped(promoted):
    cluster, _driver, fronts = promoted
    fronts.record_file("node1").unlink(missing_ok=True)
    # no record yet: Python records the position, then the same position is sh's
    fronts.check("node1", in_sh=False)
    uuid, seqno, size, _wall, boot, alone, peers = fronts.record("node1")
    assert (size, alone, peers) == ("3", "1", "-1")
    assert int(seqno) == cluster["node1"].last_committed().seqno
    fronts.check("node1", in_sh=True)
    # commits move the seqno: same view, not alone, recorded just now -> no record due
    cluster.write_rows("node1", "shfront", 1, 3)
    fronts.check("node1", in_sh=True)
    assert fronts.record("node1")[:2] == [uuid, seqno]
    # RECORD_INTERVAL passed (boot clock): Python records, the front hands over
    old = float(boot) - 61
    fronts.record_file("node1").write_text(f"{uuid} {seqno} 3 {_wall} {old} 1 -1\n")
    fronts.check("node1", in_sh=False)
    assert int(fronts.record("node1")[1]) == cluster["node1"].last_committed().seqno
    # a record written by an agent without the front's fields: Python
    for fields in (f"{uuid} {seqno} 3 {_wall}", f"{uuid} {seqno} 3 {_wall} {boot} 1"):
        fronts.record_file("node1").write_text(fields + "\n")
        fronts.check("node1", in_sh=False)
        assert len(fronts.record("node1")) == 7


def _recorded(driver: AgentDriver, node: str) -> str:
    from pacestack.agents import attributes

    return attributes.get("galera-last-committed", node, "forever",
                          env={**os.environ, "CIB_file": str(driver.cib)}) or ""


def test_alone_a_record_is_due_once_past_the_peer_then_every_interval(ocf_provider,
                                                                      tmp_path):
    """The only data member left records its position (a CIB configuration change,
    which aborts Pacemaker's transition in flight) once it passes what the missing
    peer last recorded, then at most every ALONE_RECORD_INTERVAL: the commits in
    between are answered in sh and leave the CIB alone. Before, every monitor under
    writes went to Python and recorded."""
    from pacestack.agents.galera import ALONE_RECORD_INTERVAL

    cluster = GaleraCluster(2, names=["node1", "node2"])
    try:
        driver = AgentDriver(cluster, tmp_path / "cib.xml")
        driver.recover()
        fronts = Fronts(tmp_path / "agents", driver)
        fronts.check("node1", in_sh=False)  # the monitor records the view with node2
        # node2 leaves cleanly (node1 stays Primary, alone): its stop records its
        # final position
        rc, _, err = driver.run("node2", "stop")
        assert rc == 0, err[-800:]
        peer = int(_recorded(driver, "node2").split(":")[1])
        # the view changed: Python records, past node2's record (the view change
        # itself takes a seqno)
        fronts.check("node1", in_sh=False)
        uuid, seqno, size, _wall, boot, alone, peers = fronts.record("node1")
        assert (size, alone, int(peers)) == ("1", "1", peer), fronts.record("node1")
        assert int(seqno) > peer
        cib_seqno = _recorded(driver, "node1")
        # commits: no record due, in sh, the CIB's record unchanged
        for i in range(3):
            cluster.write_rows("node1", "alone", 1 + 2 * i, 2)
            fronts.check("node1", in_sh=True)
        assert fronts.record("node1")[1] == seqno
        assert _recorded(driver, "node1") == cib_seqno
        # the interval passed (boot clock): Python records the newest position
        early = float(boot) - ALONE_RECORD_INTERVAL - 1
        fronts.record_file("node1").write_text(
            f"{uuid} {seqno} 1 {_wall} {early} 1 {peers}\n")
        fronts.check("node1", in_sh=False)
        now = cluster["node1"].last_committed().seqno
        assert int(fronts.record("node1")[1]) == now
        assert _recorded(driver, "node1").split(":")[1] == str(now)
        # a record not yet past the peer's (as if node2 had recorded further): no record
        # while the position stays at or below it, the first one past it is recorded
        fresh = fronts.record("node1")
        fronts.record_file("node1").write_text(" ".join([*fresh[:6], str(now + 2)]) + "\n")
        cluster.write_rows("node1", "alone", 20, 1)
        fronts.check("node1", in_sh=True)
        assert int(fronts.record("node1")[1]) == now
        cluster.write_rows("node1", "alone", 21, 2)
        fronts.check("node1", in_sh=False)
        assert int(fronts.record("node1")[1]) == cluster["node1"].last_committed().seqno
    finally:
        cluster.destroy()


def test_anything_doubtful_goes_to_python(promoted):
    cluster, driver, fronts = promoted
    fronts.record_file("node1").unlink(missing_ok=True)
    fronts.check("node1", in_sh=False)  # Python records first
    fronts.check("node1", in_sh=True)
    fronts.check("node1", in_sh=False, interval_ms=0)  # a probe
    fronts.check("node1", in_sh=False, extra={"HA_debug": "1"})
    fronts.check("node1", in_sh=False, params={"sync_timeout": "soon"})
    fronts.check("node1", in_sh=False, params={"two_node_mode": "maybe"})
    # blank is unset to Python (it strips): a required parameter is missing
    assert fronts.check("node1", in_sh=False, params={"wsrep_cluster_address": "  "}) == 6
    fronts.check("node1", in_sh=False, params={"check_defaults_file": "/nonexistent.cnf"})
    fronts.check("node1", in_sh=False, params={"binary": "/usr/sbin/mysqld"})
    fronts.check("node1", in_sh=False, extra={"OCF_RESKEY_CRM_meta_on_node": ""})
    fronts.check("node1", in_sh=False, extra={"HA_RSCTMP": ""})
    # the pid file names another live process
    n = cluster["node1"]
    real_pid = Path(n.pid_file).read_text()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        Path(n.pid_file).write_text(f"{sleeper.pid}\n")
        fronts.check("node1", in_sh=False)
    finally:
        Path(n.pid_file).write_text(real_pid)
        sleeper.kill()
        sleeper.wait()
    fronts.check("node1", in_sh=True)
    # Unpromoted (role marker): Python's
    role = driver.rsctmp / "pacestack-galera-galera-node1.role"
    role.write_text("unpromoted\n")
    try:
        fronts.check("node1", in_sh=False)
    finally:
        role.write_text("promoted\n")


def test_a_client_defaults_file_with_credentials_is_used_by_the_front(promoted, tmp_path):
    """check_defaults_file: the front's client (with its own options, such as no
    character set files) logs in with the file's user and password, as Python's."""
    cluster, _driver, fronts = promoted
    password = secrets.token_hex(12)
    cluster["node1"].execute("CREATE USER IF NOT EXISTS 'shfront'@'localhost' "
                             "IDENTIFIED BY %s", (password,))
    good = tmp_path / "monitor.cnf"
    good.write_text(f"[client]\nuser=shfront\npassword={password}\n"
                    "default-character-set=utf8mb4\n")
    good.chmod(0o600)
    fronts.record_file("node1").unlink(missing_ok=True)
    fronts.check("node1", in_sh=False, params={"check_defaults_file": str(good)})
    fronts.check("node1", in_sh=True, params={"check_defaults_file": str(good)})
    # a wrong password: the query fails in both, the front hands over
    bad = tmp_path / "wrong.cnf"
    bad.write_text("[client]\nuser=shfront\npassword=not-the-password\n")
    bad.chmod(0o600)
    assert fronts.check("node1", in_sh=False, params={"check_defaults_file": str(bad)}) \
        not in (0, RUNNING_PROMOTED)
    fronts.check("node1", in_sh=True)


def test_python_knows_mariadbd_by_its_executable_as_the_front_does(tmp_path):
    """The front identifies the server by /proc/PID/exe (argv[0] is the starter's
    choice); Python accepts that process too, so a server started under another
    argv[0] is never "running" to the front alone."""
    pid_file = tmp_path / "mysqld.pid"
    m = Mysqld(binary="/usr/bin/sleep", config="", datadir="", socket="",
               pid_file=str(pid_file), log="", user="", group="", cluster_address="")
    renamed = subprocess.Popen(["not-a-server", "60"], executable="/usr/bin/sleep")
    other = subprocess.Popen(["sleep", "60"], executable="/usr/bin/sleep")
    try:
        pid_file.write_text(f"{renamed.pid}\n")
        assert m.pid() == renamed.pid
        assert m._replace(binary="/usr/bin/true").pid() is None  # another executable
        pid_file.write_text(f"{other.pid}\n")
        assert m._replace(binary="/usr/bin/true").pid() is None  # argv[0] sleep, exe sleep
    finally:
        for p in (renamed, other):
            p.kill()
            p.wait()


def _pid(cluster, name: str) -> int:
    return int(Path(cluster[name].pid_file).read_text().strip())


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return True


PEER_PROMOTE = {"OCF_RESKEY_CRM_meta_notify_operation": "promote",
                "OCF_RESKEY_CRM_meta_notify_promote_uname": "node2"}


def test_a_peers_promote_goes_to_python_while_the_view_may_hold_its_incarnation(promoted):
    """Before a peer's promote, a Promoted node whose last noted view holds more than
    itself and the arbitrators hands over: Python sees a killed incarnation of that
    peer off (GaleraRecords.see_off). node2 runs (no position reported), so Python
    answers at once; alone in its view, or not Promoted, the front answers."""
    _cluster, driver, fronts = promoted
    rc, reason = driver.monitor("node1")  # notes the current view (its peers in it)
    assert rc == RUNNING_PROMOTED, reason
    view = driver.rsctmp / "pacestack-galera-galera-node1.view"
    saved = view.read_text()
    conf, me, members, departed = saved.split()
    assert len(members.split(",")) >= 2, saved
    assert notify(fronts, "node1", "pre", in_sh=False, extra=PEER_PROMOTE) == 0
    assert notify(fronts, "node1", "pre", in_sh=True,
                  extra={**PEER_PROMOTE,
                         "OCF_RESKEY_CRM_meta_notify_promote_uname": "node1"}) == 0
    role = driver.rsctmp / "pacestack-galera-galera-node1.role"
    try:
        view.write_text(f"{conf} {me} {me} {departed}\n")  # alone with no arbitrator
        assert notify(fronts, "node1", "pre", in_sh=True, extra=PEER_PROMOTE) == 0
        view.write_text(saved)
        role.write_text("unpromoted\n")
        assert notify(fronts, "node1", "pre", in_sh=True, extra=PEER_PROMOTE) == 0
    finally:
        view.write_text(saved)
        role.write_text("promoted\n")


def test_view_change_and_dead_server_go_to_python(promoted):
    cluster, _driver, fronts = promoted
    fronts.check("node1", in_sh=True)
    node3 = cluster["node3"].status()["wsrep_gcomm_uuid"]
    # node3 dies: node1's view shrinks; Python notes that node3's UUID left
    os.kill(_pid(cluster, "node3"), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while cluster["node1"].status().get("wsrep_cluster_size") != "2":
        assert time.monotonic() < deadline, cluster["node1"].status()
        time.sleep(0.2)
    # with a record of the new size, the view id alone hands over
    recorded = fronts.record_file("node1").read_text()
    fields = recorded.split()
    fronts.record_file("node1").write_text(" ".join([*fields[:2], "2", *fields[3:]]) + "\n")
    fronts.check("node1", in_sh=False)
    assert fronts.driver.attr("galera-departed", "node1") == node3
    fronts.check("node1", in_sh=True)
    # the record of the old view, and a commit moves the seqno: Python records
    fronts.record_file("node1").write_text(recorded)
    cluster.write_rows("node1", "shfront_view", 1, 2)
    assert fronts.check("node1", in_sh=False) == RUNNING_PROMOTED
    assert fronts.record("node1")[2] == "2"
    assert int(fronts.record("node1")[1]) == cluster["node1"].last_committed().seqno
    fronts.check("node1", in_sh=True)
    # mariadbd killed: the Promoted monitor fails, in Python, with its reason
    pid = _pid(cluster, "node1")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not _gone(pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rc = fronts.check("node1", in_sh=False)
    assert rc not in (0, RUNNING_PROMOTED)


def notify(fronts: Fronts, node: str, kind: str, *, in_sh: bool,
           params: dict | None = None, extra: dict | None = None) -> int:
    """A clone notification (``kind``: pre or post of a start) on ``node``: which one
    answered, and the real executable agrees with Python alone."""
    d = fronts.driver
    n = d.cluster[node]
    env = agent_env("galera", "notify", {**d.params(n), **(params or {})}, env=d.meta(),
                    cib_file=d.cib, resource=d.resource, node=n.name)
    env.update({"OCF_RESKEY_CRM_meta_notify": "true",
                "OCF_RESKEY_CRM_meta_notify_type": kind,
                "OCF_RESKEY_CRM_meta_notify_operation": "start", **(extra or {})})

    def run(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([*argv, "notify"], env=env, capture_output=True, text=True,
                              timeout=60, check=False, cwd="/")

    front = run([str(fronts.front_only)])
    assert front.returncode in (0, HANDED_OVER), front
    assert (front.returncode == 0) is in_sh, front
    python = run([sys.executable, "-c", PYTHON_ONLY]).returncode
    real = run([str(fronts.real)]).returncode
    assert real == python, f"sh front says {real}, the Python agent {python}"
    return real


def test_notifications_python_answers_without_a_change_are_answered_in_sh(promoted):
    _cluster, driver, fronts = promoted
    # every "pre" one, and a "post" one on a Promoted node: nothing for Python to do
    assert notify(fronts, "node1", "pre", in_sh=True) == 0
    assert notify(fronts, "node1", "post", in_sh=True) == 0
    assert notify(fronts, "node1", "pre", in_sh=True,
                  extra={"OCF_RESKEY_CRM_meta_on_node": ""}) == 0
    # a "post" one on an Unpromoted node re-scores it (when mariadbd is stopped): Python
    role = driver.rsctmp / "pacestack-galera-galera-node1.role"
    role.write_text("unpromoted\n")
    try:
        notify(fronts, "node1", "post", in_sh=False)
        # ... unless the transition acts on that node alone: its action scored it
        own = {"OCF_RESKEY_CRM_meta_notify_start_uname": "node1 "}
        assert notify(fronts, "node1", "post", in_sh=True, extra=own) == 0
        notify(fronts, "node1", "post", in_sh=False,
               extra={"OCF_RESKEY_CRM_meta_notify_start_uname": "node1 node2"})
        notify(fronts, "node1", "post", in_sh=False,
               extra={**own, "OCF_RESKEY_CRM_meta_notify_stop_uname": "node2"})
        role.unlink()
        notify(fronts, "node1", "post", in_sh=False)  # no marker: Python's to read
    finally:
        role.write_text("promoted\n")
    # no node name, debug logging, a value Python refuses: Python's
    notify(fronts, "node1", "post", in_sh=False, extra={"OCF_RESKEY_CRM_meta_on_node": ""})
    notify(fronts, "node1", "pre", in_sh=False, extra={"HA_debug": "1"})
    assert notify(fronts, "node1", "pre", in_sh=False,
                  params={"sync_timeout": "soon"}) not in (0, HANDED_OVER)
