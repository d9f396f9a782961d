"""pacestack's OpenStack agents under a real Pacemaker: the 2-node cluster in
namespaces (lab_cluster). ocf:pacestack:cinder-volume as one resource: the
controller running it crashes, Pacemaker starts it on the other, and cinder's
services table still holds exactly one set of ``controller@<backend>`` rows,
heartbeating, and none for controller01/02. ocf:pacestack:openstack-service as
a clone: the real Keystone API under gunicorn on every controller (each node's
own loopback), still serving on the survivor.

Each node keeps its own cinder.conf naming itself as host (as the seed's
operator had it) in its private /run; enforce_host makes both report as
``controller``. The nodes reach the session MariaDB through its unix socket
(/tmp is shared with the host, loopback TCP is not); the transport is
oslo.messaging's in-process fake:// (the RabbitMQ run is in test_cinder_volume).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from pacestack import proc, wsgi_apps
from tests.fixtures.openstack import Cloud

BACKENDS = ("fake1", "fake2")
FAKE_DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"
CONF_DIR = "/run/cinder"  # private per node in the lab


@pytest.fixture(scope="module")
def cloud(ocf_cloud):
    return ocf_cloud


def socket_url(cloud: Cloud, service: str = "cinder") -> str:
    server = cloud.server
    return (f"mysql+pymysql://root:{quote(server.root_password, safe='')}@localhost/"
            f"{cloud.db_names[service]}?charset=utf8&unix_socket={server.socket}")


def node_conf(cloud: Cloud, node: str) -> str:
    base = (cloud.config_dir / "cinder.conf").read_text()
    base = base.replace(cloud.url("cinder"), socket_url(cloud))
    text = base.replace("[DEFAULT]\n", f"[DEFAULT]\nhost = {node}\n"
                        f"enabled_backends = {','.join(BACKENDS)}\nreport_interval = 2\n"
                        "service_down_time = 6\n", 1)
    for backend in BACKENDS:
        text += f"\n[{backend}]\nvolume_driver = {FAKE_DRIVER}\nvolume_backend_name = {backend}\n"
    return text


def service_rows(cloud: Cloud) -> dict[str, tuple[int, int]]:
    return {host: (rid, age) for rid, host, age in cloud.execute(
        "cinder", "SELECT id, host, TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), "
        "UTC_TIMESTAMP()) FROM services WHERE `binary` = 'cinder-volume' AND deleted = 0")}


def active_node(lab, observer: str) -> str | None:
    res = lab.node(observer).run(["crm_resource", "--resource", "cinder-volume", "--locate",
                                  "--quiet"], check=False, timeout=30)
    names = res.stdout.split()
    return names[0] if res.returncode == 0 and names else None


def db_now(cloud: Cloud):
    return cloud.execute("cinder", "SELECT UTC_TIMESTAMP()")[0][0]


def rows_fresh(cloud: Cloud, after) -> bool:
    """Every controller@backend row heartbeated more than a second after ``after``
    (DB time): the second's margin covers DATETIME's whole seconds."""
    rows = cloud.execute(
        "cinder", "SELECT host FROM services WHERE `binary` = 'cinder-volume' AND deleted = 0 "
        "AND updated_at > DATE_ADD(%s, INTERVAL 1 SECOND)", (after,))
    return {r[0] for r in rows} >= {f"controller@{b}" for b in BACKENDS}


def keystone_clone_args(cloud: Cloud) -> list[str]:
    """Keystone under gunicorn on each node's 127.0.0.1:5000, its DB over the socket."""
    ks_dir = cloud.base_dir / "lab-keystone"
    ks_dir.mkdir(mode=0o700, exist_ok=True)
    conf = (cloud.config_dir / "keystone.conf").read_text()
    (ks_dir / "keystone.conf").write_text(conf.replace(cloud.url("keystone"),
                                                       socket_url(cloud, "keystone")))
    (ks_dir / "keystone.conf").chmod(0o600)
    (ks_dir / "lab_keystone_wsgi.py").write_text(wsgi_apps.app(cloud.release, "keystone").shim())
    venv = cloud.venv
    return [
        "pcs", "resource", "create", "keystone", "ocf:pacestack:openstack-service",
        f"binary={venv / 'bin' / 'gunicorn'}",
        f"extra_args=--no-control-socket --bind 127.0.0.1:5000 --workers 1 --timeout 120 "
        f"--chdir {ks_dir} lab_keystone_wsgi:application",
        f"environment=PATH={venv}/bin:/usr/bin:/bin OS_KEYSTONE_CONFIG_DIR={ks_dir} "
        "OS_KEYSTONE_CONFIG_FILES=keystone.conf",
        "monitor_url=http://127.0.0.1:5000/v3", "log=/run/keystone-api.log",
        "op", "monitor", "interval=10s", "timeout=30s", "op", "start", "timeout=120s",
        "clone"]


def keystone_answers(node) -> bool:
    res = node.run(["curl", "-sf", "http://127.0.0.1:5000/v3"], check=False, timeout=20)
    return res.returncode == 0 and '"id": "v3.' in res.stdout


def test_pacemaker_failover_keeps_one_set_of_rows(lab_cluster, cloud, ocf_provider):
    lab = lab_cluster
    cloud.execute("cinder", "DELETE FROM services")  # the schema is shared: start clean
    for name in ("controller01", "controller02"):
        node = lab.node(name)
        conf_dir = node.root.host_path(CONF_DIR)
        conf_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = conf_dir / "cinder.conf"
        path.write_text(node_conf(cloud, name))
        path.chmod(0o600)
    c1 = lab.node("controller01")
    create = c1.run([
        "pcs", "resource", "create", "cinder-volume", "ocf:pacestack:cinder-volume",
        f"binary={cloud.venv / 'bin' / 'cinder-volume'}", f"config={CONF_DIR}/cinder.conf",
        f"log={CONF_DIR}/cinder-volume.log", "enforce_host=true",
        "op", "monitor", "interval=5s", "timeout=60s",
        "op", "start", "timeout=180s", "op", "stop", "timeout=120s",
        "meta", "migration-threshold=1"], check=False, timeout=120)
    assert create.returncode == 0, create.stderr
    created, created_db = time.monotonic(), db_now(cloud)
    keystone = c1.run(keystone_clone_args(cloud), check=False, timeout=120)
    assert keystone.returncode == 0, keystone.stderr
    assert proc.wait_for(lambda: active_node(lab, "controller01") is not None, 180,
                         interval=1.0), c1.log_tail()
    first_node = active_node(lab, "controller01")
    assert proc.wait_for(lambda: rows_fresh(cloud, created_db), 60, interval=1.0)
    print(f"cinder-volume active on {first_node} "
          f"{time.monotonic() - created:.1f}s after pcs resource create")
    first = service_rows(cloud)
    assert set(first) == {"controller@fake1", "controller@fake2"}
    # the Keystone clone: started by Pacemaker on both controllers, each serving
    assert proc.wait_for(lambda: all(keystone_answers(lab.node(n))
                                     for n in ("controller01", "controller02")), 120,
                         interval=1.0), c1.log_tail(40)

    survivor = "controller02" if first_node == "controller01" else "controller01"
    crashed_at, crashed_db = time.monotonic(), db_now(cloud)
    lab.crash(first_node)
    assert proc.wait_for(lambda: active_node(lab, survivor) == survivor, 180,
                         interval=1.0), lab.node(survivor).log_tail(40)
    assert proc.wait_for(lambda: rows_fresh(cloud, crashed_db), 60, interval=1.0), \
        service_rows(cloud)
    print(f"failover to {survivor}: rows heartbeating again "
          f"{time.monotonic() - crashed_at:.1f}s after the crash")
    after = service_rows(cloud)
    survivor_log = lab.node(survivor).root.host_path(f"{CONF_DIR}/cinder-volume.log")
    assert "Starting cinder-volume node" in survivor_log.read_text()
    # the same rows keep reporting; no second set, nothing under a node's own name
    assert {h: r for h, (r, _) in after.items()} == {h: r for h, (r, _) in first.items()}
    assert not any(h.startswith(("controller01", "controller02")) for h in after)
    res = lab.node(survivor).run(["crm_resource", "--resource", "cinder-volume",
                                  "--force-check"], check=False, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    # the survivor's Keystone instance kept serving through the crash
    assert keystone_answers(lab.node(survivor))
    located = lab.node(survivor).run(["crm_resource", "--resource", "keystone-clone",
                                      "--locate", "--quiet"], check=False, timeout=30)
    assert located.stdout.split() == [survivor], located.stdout + located.stderr
