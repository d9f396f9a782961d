"""The sh front of ocf:pacestack:openstack-service (agents/sh_monitor.py).

Two copies of the installed executable are written into the test's directory:
the real one, and one whose Python is a stand-in script that only says "the sh
front handed this over" (exit 99). The daemon is started by the real agent, so
its pid file and start-time record are the agent's own. For every state the
test asserts which of the two answered, and that the real executable's answer
is the Python agent's answer: the front may only ever say "running" where
Python says so too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pacestack.agents import install
from pacestack.agents.openstack_service import PID_DIR

from pacestack import proc
from tests.fixtures.mariadb import free_port
from tests.fixtures.ocf import agent_env

HANDED_OVER = 99
PYTHON_ONLY = ("from pacestack.agents.ocf import run; from pacestack.agents.openstack_service "
               "import OpenStackServiceAgent as A; raise SystemExit(run(A))")


class Fronts:
    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.real = base / "openstack-service"
        self.real.write_text(install.executable_text("openstack-service", sys.executable))
        fake_python = base / "python-stand-in"
        fake_python.write_text(f"#!/bin/sh\necho handed-over >&2\nexit {HANDED_OVER}\n")
        fake_python.chmod(0o755)
        self.front_only = base / "front-only"
        self.front_only.write_text(install.executable_text(
            "openstack-service", str(fake_python), paths=[]))
        for path in (self.real, self.front_only):
            path.chmod(0o755)

    @staticmethod
    def _run(argv: list[str], action: str, params: dict, **kw) -> subprocess.CompletedProcess:
        env = agent_env("openstack-service", action, params,
                        **{k: v for k, v in kw.items() if k != "extra_env"})
        env.update(kw.get("extra_env", {}))
        return subprocess.run([*argv, action], env=env, capture_output=True, text=True,
                              timeout=60, check=False, cwd="/")

    def real_rc(self, action: str, params: dict, **kw) -> int:
        return self._run([str(self.real)], action, params, **kw).returncode

    def python_rc(self, action: str, params: dict, **kw) -> int:
        return self._run([sys.executable, "-c", PYTHON_ONLY], action, params, **kw).returncode

    def answered_in_sh(self, action: str, params: dict, **kw) -> bool:
        res = self._run([str(self.front_only)], action, params, **kw)
        assert res.returncode in (0, HANDED_OVER), res
        return res.returncode == 0

    def check(self, params: dict, *, in_sh: bool, action: str = "monitor", **kw) -> int:
        """Which one answered, and the real executable agrees with Python alone."""
        assert self.answered_in_sh(action, params, **kw) is in_sh
        real, python = self.real_rc(action, params, **kw), self.python_rc(action, params, **kw)
        assert real == python, f"sh front says {real}, the Python agent {python}"
        if in_sh:
            assert real == 0
        return real


@pytest.fixture
def fronts(tmp_path) -> Fronts:
    return Fronts(tmp_path / "agents")


@pytest.fixture
def service(fronts, daemon_dir):
    """A daemon started by the real agent; stopped (and never left running) after."""
    params = {"binary": str(daemon_dir / "fake-api"), "config": str(daemon_dir / "svc.conf"),
              "pid": str(daemon_dir / "run" / "fake-api.pid")}
    started: list[tuple[dict, dict]] = []

    def start(extra: dict | None = None, **kw) -> dict:
        p = {**params, **(extra or {})}
        assert fronts.real_rc("start", p, **kw) == 0
        started.append((p, kw))
        return p
    yield start
    for p, kw in started:
        pidfile = p.get("pid") or None
        pid = proc.read_pidfile(pidfile) if pidfile else None
        fronts.real_rc("stop", {**p, "stop_timeout": 1}, **kw)
        if pid and proc.is_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_script_is_posix_sh():
    text = install.executable_text("openstack-service", sys.executable)
    assert text.startswith("#!/bin/sh\n")
    assert subprocess.run(["dash", "-n"], input=text, text=True, check=False).returncode == 0
    # cinder-volume's monitor reads the services rows: always Python
    assert install.executable_text("cinder-volume", sys.executable).startswith(
        f"#!{sys.executable} -IS\n")


def test_healthy_daemon_is_answered_in_sh(fronts, service):
    p = service()
    assert fronts.check(p, in_sh=True) == 0
    assert fronts.check(p, in_sh=False, interval_ms=0) == 0  # probes are Python's
    assert fronts.check(p, in_sh=False, extra_env={"HA_debug": "1"}) == 0
    for action in ("validate-all", "meta-data"):
        assert fronts.check(p, in_sh=False, action=action) == 0


def test_anything_doubtful_goes_to_python(fronts, service):
    p = service()
    pidfile, start = Path(p["pid"]), Path(p["pid"] + ".start")
    assert fronts.check({**p, "monitor_timeout": "abc"}, in_sh=False) == 6
    assert fronts.check({**p, "stop_timeout": " 5"}, in_sh=False) == 0
    recorded = start.read_text()
    start.write_text("12345\n")  # another process under a recycled pid
    assert fronts.check(p, in_sh=False) == 7
    start.unlink()  # no record (an adopted daemon): the command line decides
    assert fronts.check(p, in_sh=False) == 0
    start.write_text(recorded)
    real_pid = pidfile.read_text()
    pidfile.write_text("not a pid\n")
    assert fronts.check(p, in_sh=False) == 7
    pidfile.write_text(real_pid)
    assert fronts.check(p, in_sh=True) == 0
    pid = int(real_pid)
    os.kill(pid, signal.SIGKILL)
    assert proc.wait_for(lambda: not proc.is_alive(pid), 5)
    assert fronts.check(p, in_sh=False) == 7


def test_pid_file_named_from_the_resource_as_python_names_it(fronts, service):
    params = {"pid": ""}
    name = f"sh{os.getpid()}/api"  # ':' and '/' both rewritten: sh<pid>_api-1.pid
    p = service(params, resource=f"{name}:1")
    assert Path(PID_DIR, f"sh{os.getpid()}_api-1.pid").exists()
    assert fronts.check(p, in_sh=True, resource=f"{name}:1") == 0
    assert fronts.check(p, in_sh=False, resource=f"{name}:0") == 7  # not this instance's


def test_health_url_by_curl_else_python(fronts, service, daemon_dir):
    port = free_port()
    status = daemon_dir / "status"
    status.write_text("200")
    url = f"http://127.0.0.1:{port}/healthcheck"
    p = service({"extra_args": f"--http {port} {status}", "monitor_url": url,
                 "monitor_timeout": 2})
    assert fronts.check(p, in_sh=True) == 0
    status.write_text("302")
    assert fronts.check(p, in_sh=True) == 0  # 3xx is healthy for both
    status.write_text("500")
    assert fronts.check(p, in_sh=False) == 1  # Python names the failure
    status.write_text("200")
    no_curl = {"PATH": "/nonexistent"}  # without curl the URL is Python's to check
    assert fronts.answered_in_sh("monitor", p, extra_env=no_curl) is False
    assert fronts.check({**p, "monitor_timeout": "0"}, in_sh=False) == 1
