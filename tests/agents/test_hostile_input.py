"""The agents against a hostile node: what a service account, a local user or a bad
parameter can do must get nowhere, and every refusal is one exit reason with the
OCF code that says where the fault is.

The service account is the real ``nobody``; what it plants it plants itself,
through ``setpriv`` (its uid, gid and no other groups), in a log directory it owns
as /var/log/nova is owned by nova. The agent is the installed one, run as
Pacemaker runs it (tests/fixtures/ocf.py), managing the small real daemon of
tests/fixtures/service_daemon.py.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from pacestack import proc
from tests.fixtures.ocf import exit_reason, run_agent

NOBODY = 65534
VICTIM_TEXT = "root-only: VICTIM-7f3a secret line\n"


def as_nobody(*argv: str) -> None:
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                    "--", *argv], check=True, timeout=30)


def snapshot(path: Path) -> tuple:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_size, path.read_bytes()


@pytest.fixture
def world(daemon_dir, ocf_provider):
    """A root-only victim file, a log directory the service account owns, and the
    resource's parameters; whatever the agent started is stopped afterwards."""
    victim = daemon_dir / "victim"
    victim.write_text(VICTIM_TEXT)
    victim.chmod(0o600)
    logs = daemon_dir / "logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    params = {"binary": str(daemon_dir / "fake-api"), "config": str(daemon_dir / "svc.conf"),
              "pid": str(daemon_dir / "run" / "api.pid"), "log": str(logs / "api.log"),
              "user": "nobody", "group": "nogroup"}
    yield victim, logs, params
    pid = proc.read_pidfile(params["pid"])
    run_agent("openstack-service", "stop", {**params, "stop_timeout": 1}, resource="svc")
    if pid and proc.is_alive(pid):
        os.kill(pid, signal.SIGKILL)


def agent(action: str, params: dict, **kw) -> tuple[int, str, str]:
    return run_agent("openstack-service", action, params, resource="svc", **kw)


PLANTS = {
    "symlink to a root file": (
        lambda log, victim: as_nobody("ln", "-s", str(victim), str(log)),
        "is a symbolic link: refused"),
    "dangling symlink": (
        lambda log, victim: as_nobody("ln", "-s", str(victim) + ".new", str(log)),
        "is a symbolic link: refused"),
    "fifo": (lambda log, victim: as_nobody("mkfifo", str(log)),
             "is not a regular file: refused"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_planted_log_is_refused_and_the_victim_untouched(world, plant):
    """The account that owns the log directory replaces the log before start: root
    must not append to, chown or show what the link points at, nor hang on a FIFO."""
    victim, logs, params = world
    log = logs / "api.log"
    make, reason = PLANTS[plant]
    make(log, victim)
    before = snapshot(victim)
    rc, out, err = agent("start", {**params, "extra_args": "--exit-now"}, timeout=60)
    assert (rc, exit_reason(err)) == (4, f"log {log} {reason}")
    assert snapshot(victim) == before
    assert not (victim.parent / "victim.new").exists()
    assert "VICTIM-7f3a" not in out + err
    assert not Path(params["pid"]).exists()


def test_log_swapped_by_the_dying_daemon_is_not_shown(world, daemon_dir):
    """The daemon (the service account) swaps its log for a link to a root file and
    exits: the exit reason must not carry that file's lines."""
    victim, logs, params = world
    log = logs / "api.log"
    swapper = daemon_dir / "swapper-api"
    swapper.write_text("#!/usr/bin/python3\nimport os, sys\n"
                       "print('fatal: own line', flush=True)\n"
                       f"os.unlink({str(log)!r}); os.symlink({str(victim)!r}, {str(log)!r})\n"
                       "sys.exit(3)\n")
    swapper.chmod(0o755)
    before = snapshot(victim)
    rc, out, err = agent("start", {**params, "binary": str(swapper)}, timeout=60)
    assert rc == 1
    assert re.fullmatch(rf"{re.escape(str(swapper))} \(pid \d+\) exited during start",
                        exit_reason(err))
    assert "VICTIM-7f3a" not in out + err
    assert snapshot(victim) == before


def test_own_log_still_gives_its_tail_and_owner(world):
    """The honest case next to the hostile ones: a fresh log is created, owned by the
    service account, and its last lines are the exit reason."""
    _victim, logs, params = world
    rc, _, err = agent("start", {**params, "extra_args": "--exit-now"}, timeout=60)
    assert rc == 1
    assert exit_reason(err).endswith("exited during start: fatal: cannot read the database "
                                     "section")
    st = (logs / "api.log").stat()
    assert (st.st_uid, st.st_gid, stat.S_ISREG(st.st_mode)) == (NOBODY, NOBODY, True)


# ---- monitor_url: the sh front (curl) and Python judge the same URLs ---------------

HOSTILE_URLS = {
    # curl without --globoff expands these into several requests, one of them good
    "curl glob braces": ("http://127.0.0.1:{1,PORT}/healthcheck", 1),
    "curl glob range": ("http://127.0.0.1:[PORT-PORT]/healthcheck", 1),
    # curl sends them, Python dropped them: refused by both
    "credentials": ("http://admin:hunter2@127.0.0.1:PORT/healthcheck", 1),
    # a newline would add a header to Python's request
    "newline": ("http://127.0.0.1:PORT/healthcheck HTTP/1.0\r\nX-Injected: 1\r\n", 1),
    "space": ("http://127.0.0.1:PORT/health check", 1),
    "non-ASCII host": ("http://cöntroller:PORT/healthcheck", 1),
    "port out of range": ("http://127.0.0.1:99999/healthcheck", 1),
    "empty host": ("http://:PORT/healthcheck", 1),
    "option-looking": ("-Khttp://127.0.0.1:PORT/healthcheck", 1),
    # honest but unusual: Python answers, the sh front only hands over
    "upper-case scheme": ("HTTP://127.0.0.1:PORT/healthcheck", 0),
}


@pytest.fixture(scope="module")
def http_service(tmp_path_factory, ocf_provider):
    """One daemon with a health URL (answering 200), started by the real agent."""
    from tests.agents.test_sh_monitor import Fronts
    from tests.fixtures.mariadb import free_port
    from tests.fixtures.service_daemon import DAEMON

    base = tmp_path_factory.mktemp("hostile-url")
    base.chmod(0o755)
    (base / "fake-api").write_text(DAEMON)
    (base / "fake-api").chmod(0o755)
    (base / "svc.conf").write_text("[DEFAULT]\n")
    (base / "status").write_text("200")
    port = free_port()
    fronts = Fronts(base / "agents")
    params = {"binary": str(base / "fake-api"), "config": str(base / "svc.conf"),
              "pid": str(base / "run" / "api.pid"),
              "extra_args": f"--http {port} {base / 'status'}",
              "monitor_url": f"http://127.0.0.1:{port}/healthcheck", "monitor_timeout": 2}
    assert fronts.real_rc("start", params) == 0
    assert fronts.check(params, in_sh=True) == 0
    yield fronts, params, port
    pid = proc.read_pidfile(params["pid"])
    fronts.real_rc("stop", {**params, "stop_timeout": 1})
    if pid and proc.is_alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("case", sorted(HOSTILE_URLS))
def test_monitor_url_judged_alike_by_sh_and_python(http_service, case):
    fronts, params, port = http_service
    url, rc = HOSTILE_URLS[case]
    p = {**params, "monitor_url": url.replace("PORT", str(port))}
    assert fronts.check(p, in_sh=False) == rc
    if rc:
        res = fronts._run([str(fronts.real)], "validate-all", p)
        assert res.returncode == 6
        reason = exit_reason(res.stderr)
        assert reason.startswith("monitor_url") and "hunter2" not in reason
