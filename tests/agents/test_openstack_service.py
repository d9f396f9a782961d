"""ocf:pacestack:openstack-service, installed and called as Pacemaker calls it,
managing the small real daemon of tests/fixtures/service_daemon.py. The real
OpenStack APIs are in test_openstack_service_apis.py; the sh front that answers
a healthy monitor without Python is pinned down in test_sh_monitor.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pacestack.agents.openstack_service import split_list, systemd_command
from pacestack.agents.service_process import split_http_url

from pacestack import proc
from tests.fixtures.mariadb import free_port
from tests.fixtures.ocf import exit_reason, run_agent


@pytest.fixture
def svc(daemon_dir, ocf_provider):
    """Parameters for one resource; stops whatever the test left running."""
    params = {
        "binary": str(daemon_dir / "fake-api"),
        "config": str(daemon_dir / "svc.conf"),
        "pid": str(daemon_dir / "run" / "fake-api.pid"),
        "log": str(daemon_dir / "fake-api.log"),
    }
    yield params
    pid = proc.read_pidfile(params["pid"])
    run_agent("openstack-service", "stop", {**params, "stop_timeout": 1}, resource="svc")
    if pid and proc.is_alive(pid):  # the agent failed us: still never leave it running
        os.kill(pid, signal.SIGKILL)


def agent(action, params, **kw):
    kw.setdefault("resource", "svc")
    return run_agent("openstack-service", action, params, **kw)


def fds(pid: int) -> list[int]:
    return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))


def test_start_daemonizes_monitor_stop(svc, daemon_dir):
    params = {**svc, "user": "nobody", "group": "nogroup", "umask": "0027",
              "workdir": str(daemon_dir), "environment": "SVC_NAME='fake api'"}
    assert agent("monitor", params, interval_ms=0)[0] == 7  # probe: not running
    rc, _, err = agent("start", params)
    assert rc == 0, err
    pid = proc.read_pidfile(svc["pid"])
    assert pid and proc.is_alive(pid)
    assert proc.cmdline(pid)[1:4] == [svc["binary"], "--config-file", svc["config"]]
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{65534}" in status
    # detached: own session and process group, not our child, only stdio open
    assert os.getsid(pid) != os.getsid(0) and os.getpgid(pid) == pid
    assert fds(pid) == [0, 1, 2]
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert proc.wait_for(lambda: "ready" in Path(svc["log"]).read_text(), 5)
    log = Path(svc["log"]).read_text()
    assert f"uid=65534 cwd={daemon_dir} umask=27 svc=fake api ocf=0" in log
    assert agent("monitor", params)[0] == 0
    assert agent("monitor", params, interval_ms=0)[0] == 0
    # start is idempotent: the same process stays
    assert agent("start", params)[0] == 0
    assert proc.read_pidfile(svc["pid"]) == pid
    rc, _, err = agent("stop", params)
    assert rc == 0, err
    assert not proc.is_alive(pid)
    assert not os.path.exists(svc["pid"]) and not os.path.exists(svc["pid"] + ".start")
    assert agent("stop", params)[0] == 0
    assert agent("monitor", params)[0] == 7


def test_killed_service_is_detected_and_stale_pid_file_replaced(svc):
    assert agent("start", svc)[0] == 0
    pid = proc.read_pidfile(svc["pid"])
    os.kill(pid, signal.SIGKILL)
    assert proc.wait_for(lambda: not proc.is_alive(pid), 5)
    rc, _, err = agent("monitor", svc)
    assert rc == 7
    assert f"pid {pid} from {svc['pid']} is not running" in exit_reason(err)
    rc, _, err = agent("start", svc)
    assert rc == 0, err
    new_pid = proc.read_pidfile(svc["pid"])
    assert new_pid != pid and proc.is_alive(new_pid)


def test_recycled_pid_of_another_process_is_not_the_service(svc, tmp_path):
    other = subprocess.Popen(["sleep", "60"])
    try:
        Path(svc["pid"]).parent.mkdir(parents=True, exist_ok=True)
        Path(svc["pid"]).write_text(f"{other.pid}\n")
        rc, _, err = agent("monitor", svc)
        assert rc == 7
        assert "is another process (sleep 60)" in exit_reason(err)
        assert agent("stop", svc)[0] == 0
        assert proc.is_alive(other.pid), "stop must never signal a process that is not ours"
        assert not Path(svc["pid"]).exists()
    finally:
        other.kill()
        other.wait()


def test_same_binary_other_start_time_is_foreign(svc):
    """A pid recycled by another instance of the same program: the start time
    recorded at spawn tells them apart even though the command line matches."""
    assert agent("start", svc)[0] == 0
    Path(svc["pid"] + ".start").write_text("12345\n")
    rc, _, err = agent("monitor", svc)
    assert rc == 7 and "is another process" in exit_reason(err)
    Path(svc["pid"] + ".start").unlink()  # no record: the command line decides
    assert agent("monitor", svc)[0] == 0


def test_stop_escalates_to_kill(svc, tmp_path):
    log = tmp_path / "ha.log"
    params = {**svc, "extra_args": "--ignore-term", "stop_timeout": 1}
    assert agent("start", params)[0] == 0
    pid = proc.read_pidfile(svc["pid"])
    started = time.monotonic()
    rc, _, err = agent("stop", params, env={"HA_LOGFILE": str(log)})
    assert rc == 0, err
    assert 1.0 <= time.monotonic() - started < 5
    assert not proc.is_alive(pid)
    assert "ignored TERM for 1s: killed" in log.read_text()


def test_stop_lets_the_service_finish_within_its_graceful_shutdown_timeout(svc, tmp_path):
    """An oslo.service daemon TERMed finishes the RPCs it holds (nova-conductor a
    server's build) for up to [DEFAULT] graceful_shutdown_timeout: the stop waits
    that long plus its exit, not only stop_timeout, else the build is lost."""
    Path(svc["config"]).write_text("[DEFAULT]\ngraceful_shutdown_timeout = 6\n")
    params = {**svc, "extra_args": "--term-after 3", "stop_timeout": 1}
    assert agent("start", params)[0] == 0
    pid = proc.read_pidfile(svc["pid"])
    started = time.monotonic()
    rc, _, err = agent("stop", params, env={"HA_LOGFILE": str(tmp_path / "ha.log")})
    assert rc == 0, err
    assert 3.0 <= time.monotonic() - started < 6
    assert not proc.is_alive(pid)
    assert "finished the work in hand" in Path(svc["log"]).read_text()
    assert "killed" not in (tmp_path / "ha.log").read_text()


def test_exit_during_start_fails_with_the_log_tail(svc):
    rc, _, err = agent("start", {**svc, "extra_args": "--exit-now"})
    assert rc == 1
    reason = exit_reason(err)
    assert "exited during start" in reason
    assert "fatal: cannot read the database section" in reason
    assert not Path(svc["pid"]).exists()


def test_exec_failure_is_reported(svc, tmp_path):
    private = tmp_path / "private-api"  # under a 0700 dir: nobody cannot exec it
    shutil.copy(svc["binary"], private)
    rc, _, err = agent("start", {**svc, "binary": str(private), "user": "nobody",
                                 "config": ""})
    assert rc == 1
    assert "could not start" in exit_reason(err) and "Permission" in exit_reason(err)


def test_health_url_gates_start_and_monitor(svc, daemon_dir):
    port = free_port()
    status = daemon_dir / "status"
    status.write_text("503")
    url = f"http://127.0.0.1:{port}/healthcheck"
    params = {**svc, "extra_args": f"--http {port} {status}", "monitor_url": url,
              "monitor_timeout": 2}
    status.write_text("200")
    assert agent("start", params)[0] == 0
    assert agent("monitor", params)[0] == 0
    status.write_text("302")
    assert agent("monitor", params)[0] == 0  # 3xx is healthy
    status.write_text("500")
    rc, _, err = agent("monitor", params)
    assert rc == 1
    assert exit_reason(err) == f"health check failed: {url}: HTTP 500"
    status.write_text("200")
    pid = proc.read_pidfile(svc["pid"])
    os.kill(pid, signal.SIGKILL)
    proc.wait_for(lambda: not proc.is_alive(pid), 5)
    assert agent("monitor", params)[0] == 7


def test_start_times_out_when_never_healthy(svc):
    port = free_port()  # nothing will listen here
    rc, _, err = agent("start", {**svc, "monitor_url": f"http://127.0.0.1:{port}/",
                                 "monitor_timeout": 1}, timeout_ms=4000)
    assert rc == 1
    assert "started but is not healthy" in exit_reason(err)
    assert "Connection refused" in exit_reason(err)


def test_clone_instances_keep_their_own_pid_files(svc, daemon_dir):
    params = {k: v for k, v in svc.items() if k != "pid"}
    name = f"api{os.getpid()}"  # /run/pacestack is shared by parallel test runs
    instances = (f"{name}:0", f"{name}:1")
    try:
        for instance in instances:
            assert agent("start", params, resource=instance)[0] == 0
        pids = {p.name: proc.read_pidfile(str(p))
                for p in Path("/run/pacestack").glob(f"{name}-*.pid")}
        assert set(pids) == {f"{name}-0.pid", f"{name}-1.pid"} and len(set(pids.values())) == 2
    finally:
        for instance in instances:
            assert agent("stop", params, resource=instance)[0] == 0
    assert not list(Path("/run/pacestack").glob(f"{name}-*"))


@pytest.mark.parametrize("change, rc, reason", [
    ({"binary": "/usr/bin/nonexistent-api"}, 5,
     "binary '/usr/bin/nonexistent-api' is not installed or not executable"),
    ({"binary": ""}, 6, "required parameter 'binary' is not set (or set systemd_unit)"),
    ({"config": "/etc/nonexistent/api.conf"}, 5,
     "config file /etc/nonexistent/api.conf does not exist"),
    ({"config": "/etc"}, 6, "config file /etc is not a readable file"),
    ({"user": "no-such-user-x"}, 6, "user 'no-such-user-x' does not exist"),
    ({"umask": "9"}, 6, "umask '9' is not an octal number"),
    ({"monitor_url": "ftp://127.0.0.1/"}, 6, "monitor_url ftp://127.0.0.1/ is not an http(s) URL"),
    ({"monitor_url": "http://controller.invalid:5000/v3"}, 6,
     "monitor_url http://controller.invalid:5000/v3: host controller.invalid does not resolve"),
    ({"environment": "NOEQUALS"}, 6, "environment: 'NOEQUALS' is not KEY=VALUE"),
    ({"extra_args": "--name 'unterminated"}, 6, "extra_args: No closing quotation"),
    ({"stop_timeout": "soon"}, 6, "parameter 'stop_timeout': 'soon' is not an integer"),
])
def test_validate_all_rejects_bad_parameters(svc, change, rc, reason):
    got, _, err = agent("validate-all", {**svc, **change})
    assert (got, exit_reason(err)) == (rc, reason)


def test_config_not_readable_by_the_service_user(svc, daemon_dir):
    os.chmod(svc["config"], 0o600)  # root-only: the agent could read it, nobody cannot
    rc, _, err = agent("validate-all", {**svc, "user": "nobody"})
    assert (rc, exit_reason(err)) == (
        6, f"config file {svc['config']} is not readable by user nobody")
    assert agent("validate-all", svc)[0] == 0


def test_config_list_and_systemd_commands():
    assert split_list("/etc/nova/nova.conf, /etc/nova/cell.conf  x.conf") == [
        "/etc/nova/nova.conf", "/etc/nova/cell.conf", "x.conf"]
    # systemd mode cannot run here (no systemd as PID 1): the commands it would run
    assert systemd_command("start", "nova-api.service") == [
        "systemctl", "start", "--", "nova-api.service"]
    assert systemd_command("stop", "nova-api.service") == [
        "systemctl", "stop", "--", "nova-api.service"]
    assert systemd_command("monitor", "nova-api.service") == [
        "systemctl", "is-active", "--quiet", "--", "nova-api.service"]
    with pytest.raises(ValueError):
        systemd_command("promote", "x")


def test_probe_adopts_a_service_started_by_hand(svc):
    """Started outside Pacemaker with the same command line: the probe reports
    it running (so Pacemaker never starts a twin) and stop can end it."""
    argv = [svc["binary"], "--config-file", svc["config"]]
    with open(os.devnull, "wb") as null:
        by_hand = subprocess.Popen(argv, stdout=null, stderr=null, start_new_session=True)
    try:
        assert proc.wait_for(lambda: proc.cmdline(by_hand.pid)[1:2] == [svc["binary"]], 5)
        rc, _, err = agent("monitor", svc, interval_ms=0)
        assert rc == 0, err
        assert proc.read_pidfile(svc["pid"]) == by_hand.pid
        assert agent("monitor", svc)[0] == 0
        assert agent("stop", svc)[0] == 0
        assert by_hand.wait(timeout=10) == -signal.SIGTERM
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait()


def test_health_url_parsing_without_urllib():
    assert split_http_url("http://127.0.0.1:5000/v3") == (
        "http", "127.0.0.1", 5000, "/v3", "127.0.0.1:5000")
    assert split_http_url("HTTPS://controller.domain/healthcheck?detail=1#x") == (
        "https", "controller.domain", 443, "/healthcheck?detail=1", "controller.domain")
    assert split_http_url("http://[::1]:8776") == ("http", "::1", 8776, "/", "[::1]:8776")
    for bad in ("ftp://x/", "http://:80/", "http://h:x/", "http://h:70000/", "controller:5000"):
        assert split_http_url(bad) is None, bad
