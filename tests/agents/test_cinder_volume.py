"""ocf:pacestack:cinder-volume with the real cinder-volume from the project's
OpenStack venv, on cinder's real schema in MariaDB, with cinder's own
FakeLoggingVolumeDriver (the driver its functional tests use: no storage
needed). The failover test talks to a real RabbitMQ from Debian on loopback;
the rest use oslo.messaging's in-process ``fake://`` transport.

Each "controller" is a separate agent environment (its node name, its own pid
file and per-node cinder.conf naming itself as host, as in the seed), so a
failover is stop on controller01, start on controller02."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pacestack import proc
from tests.fixtures import openstack_build as build
from tests.fixtures.nova import RabbitMQ
from tests.fixtures.ocf import exit_reason, run_agent
from tests.fixtures.openstack import Cloud

BACKENDS = ("fake1", "fake2")
# the agent keeps its host override in /run/pacestack/<resource>-host.conf:
# unique per test run, so parallel runs never share one
RESOURCE = f"cinder-volume-{os.getpid()}"
FAKE_DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"


# every release of the matrix: the host rule and the service rows hold for each
# release's own cinder-volume
EVERY_VOLUME_RELEASE = pytest.mark.parametrize(
    "volume_release", list(build.RELEASES), indirect=True, scope="module")


@pytest.fixture(scope="module")
def volume_release(request) -> str:
    """The OpenStack release whose cinder-volume the module's tests run."""
    return getattr(request, "param", build.NEWEST)


@pytest.fixture(scope="module")
def cloud_and_rabbit(mariadb, volume_release, tmp_path_factory, request):
    """The cinder schema (shared with the other agent tests for the newest release)
    and a RabbitMQ, started while the schema loads: each takes seconds."""
    rabbit = RabbitMQ(tmp_path_factory.mktemp("cinder-rabbit"))
    own = None
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        booting = pool.submit(rabbit.start)
        try:
            if volume_release == build.NEWEST:
                loaded = request.getfixturevalue("ocf_cloud")
            else:
                venv, dump = request.getfixturevalue("openstack_builds")(volume_release)
                loaded = own = Cloud(mariadb, venv, dump, release=volume_release).load()
            started = time.monotonic()
            booting.result()
            print(f"RabbitMQ ready {time.monotonic() - started:.1f}s after the schema load")
            yield loaded, rabbit
        finally:
            with contextlib.suppress(Exception):
                booting.result()
            rabbit.stop()
            if own is not None:
                own.drop()


@pytest.fixture(scope="module")
def cloud(cloud_and_rabbit):
    return cloud_and_rabbit[0]


@pytest.fixture(scope="module")
def rabbit(cloud_and_rabbit):
    return cloud_and_rabbit[1]


def cinder_conf(cloud: Cloud, path: Path, *, host: str | None, backends=BACKENDS,
                backend_hosts: dict[str, str] | None = None, extra: str = "",
                transport_url: str | None = None) -> Path:
    """cinder.conf for one controller: the cloud's DB, the fake transport (or
    the given one), the fake backends, a fast heartbeat (report_interval 2 s,
    down after 6 s)."""
    base = (cloud.config_dir / "cinder.conf").read_text()
    if transport_url:
        base = base.replace("transport_url = fake://", f"transport_url = {transport_url}")
    default = [f"host = {host}"] if host else []
    default += [f"enabled_backends = {','.join(backends)}", "report_interval = 2",
                "service_down_time = 6"]
    text = base.replace("[DEFAULT]\n", "[DEFAULT]\n" + "\n".join(default) + "\n", 1)
    for backend in backends:
        text += f"\n[{backend}]\nvolume_driver = {FAKE_DRIVER}\nvolume_backend_name = {backend}\n"
        if backend_hosts and backend in backend_hosts:
            text += f"backend_host = {backend_hosts[backend]}\n"
    path.write_text(text + extra)
    path.chmod(0o600)  # it holds the DB password
    return path


def rows(cloud: Cloud) -> dict[str, tuple[int, int]]:
    """host -> (id, seconds since its last heartbeat) of cinder-volume services."""
    return {host: (rid, age) for rid, host, age in cloud.execute(
        "cinder", "SELECT id, host, TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), "
        "UTC_TIMESTAMP()) FROM services WHERE `binary` = 'cinder-volume' AND deleted = 0")}


@pytest.fixture
def controllers(cloud, rabbit, tmp_path, agent_executables):
    """Per-node parameters for controller01 and controller02 (RabbitMQ
    transport); stops both after."""
    made = {}
    for node in ("controller01", "controller02"):
        node_dir = tmp_path / node
        node_dir.mkdir()
        conf = cinder_conf(cloud, node_dir / "cinder.conf", host=node,
                           transport_url=rabbit.transport_url)
        made[node] = {
            "binary": str(cloud.venv / "bin" / "cinder-volume"),
            "config": str(conf),
            "pid": str(node_dir / "cinder-volume.pid"),
            "log": str(node_dir / "cinder-volume.log"),
            "enforce_host": "true",
            "stop_timeout": "20",
        }
    yield made
    for node, params in made.items():
        run_agent("cinder-volume", "stop", params, node=node, resource=RESOURCE)
        pid = proc.read_pidfile(params["pid"])
        if pid and proc.is_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def on(node, action, params, **kw):
    return run_agent("cinder-volume", action, params, node=node, resource=RESOURCE,
                     timeout_ms=kw.pop("timeout_ms", 180000), **kw)


def amqp_connections(port: int) -> int:
    """Established TCP connections to the broker's port (/proc/net/tcp and tcp6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
                count += 1
    return count


@EVERY_VOLUME_RELEASE
def test_failover_keeps_one_set_of_controller_rows(cloud, rabbit, controllers):
    cloud.execute("cinder", "DELETE FROM services")  # the schema is shared: start clean
    c1, c2 = controllers["controller01"], controllers["controller02"]
    assert on("controller01", "monitor", c1, interval_ms=0)[0] == 7
    started = time.monotonic()
    rc, _, err = on("controller01", "start", c1)
    print(f"cinder-volume started (rows heartbeating) in {time.monotonic() - started:.1f}s")
    assert rc == 0, f"{err}\n{Path(c1['log']).read_text()[-3000:]}"
    first = rows(cloud)
    assert set(first) == {"controller@fake1", "controller@fake2"}
    # the service row is written before the RPC server connects: give it time
    assert proc.wait_for(lambda: amqp_connections(rabbit.port) > 0, 30), \
        "cinder-volume must talk to the real RabbitMQ"
    assert on("controller01", "monitor", c1)[0] == 0
    # the probe on the other node sees nothing running there
    assert on("controller02", "monitor", c2, interval_ms=0)[0] == 7

    # failover: stop here, start there
    assert on("controller01", "stop", c1)[0] == 0
    assert on("controller01", "monitor", c1)[0] == 7
    rc, _, err = on("controller02", "start", c2)
    started_here = time.monotonic()
    assert rc == 0, err
    assert on("controller02", "monitor", c2)[0] == 0
    after = rows(cloud)
    # the same rows (same ids) keep reporting; no controller01/controller02 rows
    assert {h: rid for h, (rid, _) in after.items()} == {h: rid for h, (rid, _) in first.items()}
    assert all(age <= 6 for _, age in after.values())

    # something on controller02 reports under its own name (as the seed's
    # cinder-volume did before its host was fixed): a misconfiguration
    cloud.execute("cinder", "INSERT INTO services (created_at, updated_at, deleted, host, "
                  "`binary`, topic, report_count, disabled) VALUES (UTC_TIMESTAMP(), "
                  "UTC_TIMESTAMP(), 0, 'controller02@fake1', 'cinder-volume', "
                  "'cinder-volume', 1, 0)")
    # it heartbeats like the real one would while the monitor runs (a monitor slower
    # than service_down_time on a loaded machine must not see a stale row)
    beating = threading.Event()

    def heartbeat() -> None:
        while not beating.wait(0.5):
            cloud.execute("cinder", "UPDATE services SET updated_at = UTC_TIMESTAMP() "
                          "WHERE host = 'controller02@fake1'")
    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    # the agent blames a row only once it has provably reported after its own process
    # started (DATETIME has whole seconds): a process younger than that gets the benefit
    # of the doubt, so let it be older
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started_here)))
    try:
        rc, _, err = on("controller02", "monitor", c2)
        assert rc == 6
        assert exit_reason(err) == ("cinder-volume reports as controller02@fake1 from this "
                                    "node while it should report as controller: "
                                    "misconfiguration")
    finally:
        beating.set()
        beat.join(5)
        cloud.execute("cinder", "DELETE FROM services WHERE host = 'controller02@fake1'")
    assert on("controller02", "monitor", c2)[0] == 0
    # an unreachable DB is not a cinder failure: the process check stands
    conf = Path(c2["config"])
    good = conf.read_text()
    conf.write_text(good.replace(f":{cloud.server.port}/", ":1/"))
    try:
        assert on("controller02", "monitor", c2)[0] == 0
    finally:
        conf.write_text(good)

    # killed: the next monitor reports it; a hung service: its rows go down
    pid = proc.read_pidfile(c2["pid"])
    os.killpg(pid, signal.SIGSTOP)
    try:
        assert proc.wait_for(lambda: min(a for _, a in rows(cloud).values()) > 6, 15,
                             interval=0.5)
        rc, _, err = on("controller02", "monitor", c2)
        assert rc == 1
        assert "last reported" in exit_reason(err) and "service_down_time 6s" in exit_reason(err)
    finally:
        os.killpg(pid, signal.SIGCONT)
    os.killpg(pid, signal.SIGKILL)
    assert proc.wait_for(lambda: not proc.is_alive(pid), 5)
    rc, _, err = on("controller02", "monitor", c2)
    assert rc == 7 and f"pid {pid}" in exit_reason(err)
    assert on("controller02", "stop", c2)[0] == 0


@EVERY_VOLUME_RELEASE
@pytest.mark.parametrize("case", ["default_host", "host_unset", "backend_host", "backends",
                                  "unparseable", "clone", "enforced", "good"])
def test_validate_all_host_rules(case, cloud, tmp_path, agent_executables):
    conf = tmp_path / "cinder.conf"
    extra_conf = tmp_path / "backend-host.conf"
    params = {"binary": str(cloud.venv / "bin" / "cinder-volume"), "config": str(conf)}
    env = None
    expect_rc, reason = 0, None
    if case == "default_host":
        cinder_conf(cloud, conf, host="controller01")
        expect_rc, reason = 6, (f"{conf}: [DEFAULT] host = controller01, but this resource "
                                "reports as 'controller' (fix it, or set enforce_host=true)")
    elif case == "host_unset":
        cinder_conf(cloud, conf, host=None)
        expect_rc = 6
        reason = f"{conf}: [DEFAULT] host is not set (cinder would report as "
    elif case == "backend_host":
        cinder_conf(cloud, conf, host="controller")
        extra_conf.write_text("[fake2]\nbackend_host = controller02\n")
        params["config"] = f"{conf},{extra_conf}"
        expect_rc, reason = 6, (f"{extra_conf}: [fake2] backend_host = controller02, but this "
                                "resource reports as 'controller' (fix it, or set "
                                "enforce_host=true)")
    elif case == "backends":
        cinder_conf(cloud, conf, host="controller")
        params["backends"] = "fake1 rbd"
        expect_rc, reason = 6, (f"{conf}: [DEFAULT] enabled_backends (fake1,fake2) lacks "
                                "backend 'rbd' named in backends")
    elif case == "unparseable":
        conf.write_text("[DEFAULT\nhost = controller\n")
        expect_rc = 6
        reason = f"{conf}: cannot parse"
    elif case == "clone":
        cinder_conf(cloud, conf, host="controller")
        env = {"OCF_RESKEY_CRM_meta_clone_max": "2", "OCF_RESKEY_CRM_meta_clone": "0"}
        expect_rc, reason = 6, ("cinder-volume must run as exactly one instance: do not "
                                "clone it (two would report the same host)")
    elif case == "enforced":
        cinder_conf(cloud, conf, host="controller01", backend_hosts={"fake1": "c1"})
        params["enforce_host"] = "yes"
    else:
        cinder_conf(cloud, conf, host="controller", backend_hosts={"fake2": "controller"})
    rc, _, err = run_agent("cinder-volume", "validate-all", params, env=env)
    assert rc == expect_rc, err
    if reason:
        assert exit_reason(err).startswith(reason), exit_reason(err)


def test_ocf_tester_passes(cloud, controllers, ocf_provider):
    """ocf-tester's full run against the real cinder-volume. The services-row
    wait is off here (check_services=false): ocf-tester starts it three times
    and the row checks have their own tests above."""
    params = {**controllers["controller01"], "check_services": "false"}
    os.makedirs("/run/resource-agents", exist_ok=True)
    argv = ["ocf-tester", "-n", RESOURCE]
    for key, value in params.items():
        argv += ["-o", f"{key}={value}"]
    done = subprocess.run([*argv, str(ocf_provider / "cinder-volume")], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "OCF_ROOT": "/usr/lib/ocf",
                               "OCF_RESKEY_CRM_meta_on_node": "controller01"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout
