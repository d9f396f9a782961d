"""ocf:pacestack:openstack-service managing the real Keystone and Neutron APIs
(from the project's OpenStack venv, on their real schemas in MariaDB) under
gunicorn on loopback: started, monitored through their version documents,
killed (the next monitor sees it), restarted and stopped, and ocf-tester's
full conformance run against Keystone. Each on the newest release and the
oldest of the matrix, whose APIs are other modules (pacestack.wsgi_apps) and,
in 2024.1, eventlet-patched on import."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pacestack import proc, wsgi_apps
from tests.fixtures import openstack_build as build
from tests.fixtures.mariadb import free_port
from tests.fixtures.ocf import PROVIDER_DIR, exit_reason, run_agent
from tests.fixtures.openstack import EVERY_SERVICE_RELEASE, Cloud

# service -> (environment naming its config files, health path); the WSGI
# application each release provides is in pacestack.wsgi_apps
APIS = {
    "keystone": (lambda d: f"OS_KEYSTONE_CONFIG_DIR={d} OS_KEYSTONE_CONFIG_FILES=keystone.conf",
                 "/v3"),
    "neutron": (lambda d: (f"OS_NEUTRON_CONFIG_DIR={d} "
                           "OS_NEUTRON_CONFIG_FILES='neutron.conf;ml2_conf.ini'"),
                "/"),
}

# every test on the newest release and the oldest of the matrix, each with its
# own APIs on its own schema
pytestmark = EVERY_SERVICE_RELEASE


def api_params(cloud, service: str) -> dict[str, str]:
    """The resource an operator would create for this API under gunicorn."""
    env_for, health = APIS[service]
    shim_dir = cloud.base_dir / f"ocf-wsgi-{service}"
    shim_dir.mkdir(exist_ok=True)
    (shim_dir / f"{service}_ocf_wsgi.py").write_text(
        wsgi_apps.app(cloud.release, service).shim())
    port = free_port()
    venv = cloud.venv
    if service == "neutron":
        # neutron finds api-paste.ini through its config dir (none in /etc here)
        shutil.copy(venv / "etc" / "neutron" / "api-paste.ini", cloud.config_dir)
    return {
        "binary": str(venv / "bin" / "gunicorn"),
        "extra_args": (f"--no-control-socket --bind 127.0.0.1:{port} --workers 1 "
                       f"--timeout 120 --chdir {shim_dir} {service}_ocf_wsgi:application"),
        "environment": f"PATH={venv}/bin:/usr/bin:/bin {env_for(cloud.config_dir)}",
        "pid": str(cloud.base_dir / f"{service}.pid"),
        "log": str(cloud.base_dir / f"{service}-ocf.log"),
        "monitor_url": f"http://127.0.0.1:{port}{health}",
        "monitor_timeout": "5",
        "stop_timeout": "15",
    }


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def service_release(request) -> str:
    """The OpenStack release whose APIs the module's tests run."""
    return request.param


@pytest.fixture(scope="module")
def cloud(service_release, mariadb, openstack_builds, request):
    """The agents' shared cloud on the newest release; its own on an older one."""
    if service_release == build.NEWEST:
        yield request.getfixturevalue("ocf_cloud")
        return
    venv, dump = openstack_builds(service_release)
    own = Cloud(mariadb, venv, dump, release=service_release).load()
    try:
        yield own
    finally:
        own.drop()


@pytest.fixture
def stop_after():
    """Stops every resource the test started, whatever happened."""
    started: list[tuple[dict, str]] = []
    yield lambda params, resource: started.append((params, resource))
    for params, resource in started:
        run_agent("openstack-service", "stop", params, resource=resource, timeout_ms=60000)
        pid = proc.read_pidfile(params["pid"])
        if pid and proc.is_alive(pid):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize("service", ["keystone", "neutron"])
def test_real_api_start_monitor_kill_restart_stop(service, cloud, ocf_provider,
                                                  stop_after):
    params = api_params(cloud, service)
    resource = f"{service}-api"
    stop_after(params, resource)

    def agent(action, **kw):
        return run_agent("openstack-service", action, params, resource=resource,
                         timeout_ms=120000, **kw)

    assert agent("validate-all")[:1] == (0,)
    assert agent("monitor", interval_ms=0)[0] == 7
    started = time.monotonic()
    rc, _, err = agent("start")
    start_seconds = time.monotonic() - started
    assert rc == 0, f"{err}\n{Path(params['log']).read_text()[-2000:]}"
    print(f"{service} API started by the agent in {start_seconds:.1f}s")
    # the real service answers: its version document
    body = get_json(params["monitor_url"])
    assert ("version" in body) if service == "keystone" else ("versions" in body)
    if service == "keystone":
        assert body["version"]["id"].startswith("v3")
    assert agent("monitor")[0] == 0
    master = proc.read_pidfile(params["pid"])
    assert Path(f"/proc/{master}/cmdline").read_bytes().startswith(b"gunicorn: master"), \
        "gunicorn renames itself: identity must not rely on argv alone"

    if service == "keystone":
        # alive but unhealthy: a health URL that answers 404
        broken = {**params, "monitor_url": params["monitor_url"].replace("/v3", "/nope")}
        rc, _, err = run_agent("openstack-service", "monitor", broken, resource=resource)
        assert rc == 1
        assert exit_reason(err) == f"health check failed: {broken['monitor_url']}: HTTP 404"

    # killed: the very next monitor (one interval later) reports it
    os.kill(master, signal.SIGKILL)
    assert proc.wait_for(lambda: not proc.is_alive(master), 5)
    rc, _, err = agent("monitor")
    assert rc == 7
    assert f"pid {master}" in exit_reason(err)
    # Pacemaker's recovery is stop then start; stop ends the orphaned worker
    # that still holds the port
    assert agent("stop")[0] == 0
    assert proc.wait_for(lambda: not _port_open(params["monitor_url"]), 10)
    if service == "keystone":  # (neutron starts slowly; once is enough there)
        rc, _, err = agent("start")
        assert rc == 0, err
        assert agent("monitor")[0] == 0
        assert proc.read_pidfile(params["pid"]) != master
        rc, _, err = agent("stop")
        assert rc == 0, err
        assert agent("monitor")[0] == 7
        assert not _port_open(params["monitor_url"])


def _port_open(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def test_ocf_tester_passes_with_keystone(cloud, ocf_provider, stop_after):
    params = api_params(cloud, "keystone")
    stop_after(params, "keystone-ocft")
    os.makedirs("/run/resource-agents", exist_ok=True)
    argv = ["ocf-tester", "-n", "keystone-ocft"]
    for key, value in params.items():
        argv += ["-o", f"{key}={value}"]
    done = subprocess.run([*argv, str(PROVIDER_DIR / "openstack-service")],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OCF_ROOT": "/usr/lib/ocf"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout
