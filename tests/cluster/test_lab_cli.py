"""`pacestack lab up|status|crash|restart|down` as an operator runs it (the installed
command, as root), against the real stack: Corosync/Pacemaker in namespaces,
Galera under ocf:pacestack:galera with garbd, Keystone and the Neutron API from
the OpenStack venv under ocf:pacestack:openstack-service, configured by
`pacestack cluster apply`, the databases loaded with --from-dump (the real
mysqldump of the projects' synced schemas).

Every test uses a private lab registry (PACESTACK_LAB_REGISTRY), so a lab someone
else runs on this machine is neither seen nor touched. Time budget: ~100 s
(lab up ~55 s, crash/restart ~20 s, down ~2 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pacestack.cluster.lab import controller

from pacestack import proc

PACESTACK = str(Path(sys.executable).with_name("pacestack"))


def run(args: list[str], env: dict[str, str], timeout: float = 400,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), PACESTACK, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False, cwd="/")


@pytest.fixture
def registry() -> Path:
    path = Path("/run") / f"pacestack-lab-test-{os.getpid()}-{os.urandom(3).hex()}"
    yield path
    # whatever a failing test left: remove it through the lab's own teardown
    from pacestack.cluster.lab import LabCluster

    for rec in LabCluster.list_runs(path):
        LabCluster.attach(rec["run_id"], registry=path).destroy()
    for leftover in path.iterdir() if path.exists() else []:
        leftover.unlink()
    if path.exists():
        path.rmdir()


@pytest.fixture
def env(registry) -> dict[str, str]:
    return {**os.environ, "PACESTACK_LAB_REGISTRY": str(registry)}


def _snapshot_mounts() -> str:
    return Path("/proc/mounts").read_text()


def _netns() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def test_bad_input_refused_and_nothing_changed(env, registry, openstack_venv, openstack_dump,
                                               tmp_path):
    mounts = _snapshot_mounts()
    netns = _netns()
    # not root: setpriv drops to nobody, as an operator who forgot sudo
    res = run(["lab", "up"], env, prefix=["setpriv", "--reuid=nobody", "--regid=nogroup",
                                          "--clear-groups"])
    assert res.returncode == 1, res
    assert "pacestack: error: lab up needs root" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run(["lab", "up", "--from-dump", str(tmp_path / "missing.sql")], env)
    assert res.returncode == 2
    assert f"--from-dump {tmp_path / 'missing.sql'}: no such file" in res.stderr
    res = run(["lab", "up", "--description", str(tmp_path / "nope.conf")], env)
    assert res.returncode == 2 and "nope.conf: no such file" in res.stderr
    # a venv of a release whose WSGI entry points pacestack does not know
    venv = tmp_path / "venv"
    (venv / "lib/python3.11/site-packages/keystone-24.0.0.dist-info").mkdir(parents=True)
    (venv / "bin").mkdir()
    for tool in ("gunicorn", "keystone-manage"):
        (venv / "bin" / tool).touch()
    res = run(["lab", "up", "--from-dump", str(openstack_dump), "--openstack-venv", str(venv)],
              env)
    assert res.returncode == 2, res
    assert res.stderr == (f"pacestack: error: {venv}: keystone 24.0.0 is not a release "
                          "pacestack knows the WSGI entry points of; known: 2024.1, 2025.1, "
                          "2026.2\n")
    # the whole profile on a machine whose cache lacks Glance's venv or the memcache
    # client: one line naming what is missing and what builds it
    cache = tmp_path / "cache"
    cache.mkdir()
    whole = ["lab", "up", "--whole-profile", "--openstack-venv", str(openstack_venv),
             "--sample-schemas", str(openstack_dump.parent)]
    hint = "build them with `make openstack-cache` (scripts/build-openstack-cache.py)\n"
    res = run(whole, {**env, "PACESTACK_CACHE": str(cache)})
    assert res.returncode == 2, res
    assert res.stderr == ("pacestack: error: --whole-profile needs the Glance venv "
                          "(glance-manage, gunicorn) and the memcache client, not found at "
                          f"{cache}/glance-*/venv: {hint}")
    glance_bin = cache / "glance-2025.1" / "venv" / "bin"
    glance_bin.mkdir(parents=True)
    for tool in ("glance-manage", "gunicorn"):
        (glance_bin / tool).touch()
    # a build that died midway (no completion marker) is not taken from the cache
    res = run(whole, {**env, "PACESTACK_CACHE": str(cache)})
    assert res.returncode == 2 and "needs the Glance venv" in res.stderr, res
    (glance_bin.parent / controller.GLANCE_COMPLETE).write_text("built\n")
    res = run(whole, {**env, "PACESTACK_CACHE": str(cache)})
    assert res.returncode == 2, res
    assert res.stderr == ("pacestack: error: --whole-profile needs the memcache client "
                          "(python-memcached in extras/ beside it), not found at "
                          f"{glance_bin.parent}: {hint}")
    res = run(["lab", "status"], env)
    assert res.returncode == 1 and "no lab is running here" in res.stderr
    res = run(["lab", "crash", "controller01"], env)
    assert res.returncode == 1 and "no lab is running here" in res.stderr
    # nothing was made: no run registered, no namespace, no mount
    assert not list(registry.glob("*.json")) if registry.exists() else True
    extra = _netns() - netns
    assert not extra, {ns: [proc.cmdline(int(pid)) for pid in subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]
        for ns in extra}
    assert _snapshot_mounts() == mounts


def test_up_status_crash_restart_down_leaves_nothing(env, registry, ocf_provider,
                                                      openstack_venv, openstack_dump):
    res = run(["lab", "up", "--from-dump", str(openstack_dump), "--openstack-venv",
               str(openstack_venv), "--sample-schemas", str(openstack_dump.parent)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "pacestack cluster apply" in res.stderr  # progress went to stderr
    assert "is up in" in res.stdout

    status = json.loads(run(["lab", "status", "--format", "json"], env).stdout)
    run_id, vip = status["run_id"], status["vip"]
    lab_dir = Path(status["dir"])
    names = [h["name"] for h in status["hosts"]]
    assert names == ["controller01", "controller02", "arbitrator"]
    assert all(h["booted"] for h in status["hosts"])
    placed = {rid: sorted((p["node"], p["role"]) for p in where)
              for rid, where in status["resources"].items()}
    both = ["controller01", "controller02"]
    assert placed["galera"] == [(n, "Promoted") for n in both]
    assert placed["keystone"] == [(n, "Started") for n in both]
    assert placed["neutron-server"] == [(n, "Started") for n in both]
    assert len(placed["vip"]) == 1 and status["garbd"]
    assert len(placed["cinder-volume"]) == 1  # single instance, ocf:pacestack:cinder-volume

    from pacestack.cluster.lab import LabCluster
    from pacestack.cluster.lab.stack import Lab

    lab = Lab.find(registry)
    # the Pacemaker configuration is the description `cluster apply` wrote: a second
    # apply changes nothing
    c1 = lab.cluster.node("controller01")
    again = c1.run([PACESTACK, "cluster", "apply", "-d", lab.info.description], check=False,
                   timeout=120)
    assert "already matches the description, nothing written" in again.stdout, again.stderr
    # the VIP's name resolves inside the lab, and Keystone answers through it
    arb = lab.cluster.arbitrator
    probe = arb.run([sys.executable, "-c",
                     "import json, urllib.request; print(json.load(urllib.request.urlopen("
                     "'http://controller.domain:5000/v3', timeout=5))['version']['id'])"],
                    check=False)
    assert probe.stdout.strip() == "v3.14", probe.stderr
    assert vip in arb.run(["getent", "hosts", "controller.domain"]).stdout
    # the dump's data is what the services serve
    rows = lab.sql("SELECT COUNT(*) FROM keystone.endpoint;")
    assert int(rows.strip()) > 0

    # a second up says so and changes nothing
    # the daemons: what lives through two looks a second apart (monitor operations
    # come and go between any two looks and say nothing about a restart)
    first = set(lab.cluster.pids())
    time.sleep(1.0)
    daemons = first & set(lab.cluster.pids())
    assert len(daemons) > 10  # holders, corosync, pacemaker's daemons, mariadbd, services
    second = run(["lab", "up"], env)
    assert second.returncode == 1
    assert f"a lab is already running here (run {run_id}): nothing changed" in second.stderr
    assert [r["run_id"] for r in LabCluster.list_runs(registry)] == [run_id]
    gone = daemons - set(lab.cluster.pids())
    assert not gone, {p: proc.cmdline(p) for p in gone}

    bad = run(["lab", "crash", "controller03"], env)
    assert bad.returncode == 2
    assert "no lab node named 'controller03' (nodes: controller01, controller02, " \
           "arbitrator)" in bad.stderr

    holder = placed["vip"][0][0]
    assert run(["lab", "crash", holder], env).returncode == 0
    survivor = next(n for n in both if n != holder)
    assert proc.wait_for(lambda: _vip_on(env, survivor), 60, interval=0.5), \
        run(["lab", "status"], env).stdout
    down = json.loads(run(["lab", "status", "--format", "json"], env).stdout)
    assert not next(h for h in down["hosts"] if h["name"] == holder)["booted"]

    back = run(["lab", "restart", holder], env, timeout=200)
    assert back.returncode == 0, back.stderr
    assert proc.wait_for(lambda: _all_running(env), 120, interval=1), \
        run(["lab", "status"], env).stdout

    all_pids = lab.cluster.pids()
    assert all_pids
    gone = run(["lab", "down"], env)
    assert gone.returncode == 0 and f"lab {run_id} removed" in gone.stdout
    # nothing left behind: processes, namespaces, mounts, directories, registry
    assert not [p for p in all_pids if proc.is_alive(p)]
    assert not [n for n in os.listdir("/run/netns") if run_id in n]
    assert run_id not in _snapshot_mounts() and str(lab_dir) not in _snapshot_mounts()
    assert not lab_dir.exists()
    assert LabCluster.list_runs(registry) == []
    assert run(["lab", "status"], env).returncode == 1
    assert vip not in subprocess.run(["ip", "-o", "addr", "show"], capture_output=True,
                                     text=True, check=True).stdout  # only ever inside


def _status(env) -> dict:
    return json.loads(run(["lab", "status", "--format", "json"], env).stdout)


def _vip_on(env, node: str) -> bool:
    res = _status(env)["resources"]
    return [p["node"] for p in res.get("vip", [])] == [node] and \
        [p["node"] for p in res.get("keystone", [])] == [node]


def _all_running(env) -> bool:
    res = _status(env)["resources"]
    both = {"controller01", "controller02"}
    return ({p["node"] for p in res.get("galera", []) if p["role"] == "Promoted"} == both
            and {p["node"] for p in res.get("keystone", [])} == both
            and {p["node"] for p in res.get("neutron-server", [])} == both
            and len(res.get("vip", [])) == 1 and len(res.get("cinder-volume", [])) == 1)


# ---- rehearsing an operator's own cutover in the lab ------------------------------

def _operator_dump(service_cloud_dir: Path, path: Path) -> Path:
    """One `mysqldump --databases`-shaped file of the cloud the OpenStack services wrote
    (tests/migrate/service_cloud/): each database's own dump behind its CREATE
    DATABASE and USE, as an operator's dump of the old controller holds them."""
    from tests.migrate import service_cloud

    with open(path, "w", encoding="utf-8") as out:
        for name in service_cloud.DATABASES:
            out.write(f"CREATE DATABASE IF NOT EXISTS `{name}`;\nUSE `{name}`;\n")
            out.write((service_cloud_dir / f"{name}.sql").read_text(encoding="utf-8"))
    return path


def _lab_checksums(lab, node: str | None = None) -> dict[str, str]:
    """CHECKSUM TABLE of every base table of the cloud's databases, on one member."""
    from tests.migrate import service_cloud

    names = ", ".join(f"'{n}'" for n in service_cloud.DATABASES)
    tables = lab.sql("SELECT CONCAT(table_schema, '.', table_name) FROM "  # noqa: S608
                     f"information_schema.tables WHERE table_schema IN ({names}) AND "
                     "table_type = 'BASE TABLE' ORDER BY 1;", node=node).split()
    # the lab's cinder-volume heartbeats in cinder.services: its rows without the beat
    out = lab.sql("".join(f"CHECKSUM TABLE {t};\n" for t in tables
                          if t != "cinder.services"), node=node)
    sums = dict(line.split("\t") for line in out.splitlines())
    sums["cinder.services"] = lab.sql("SELECT id, host, `binary`, topic, deleted FROM "
                                      "cinder.services ORDER BY id;", node=node)
    return sums


def test_rehearse_a_cutover_of_a_service_written_dump(env, registry, ocf_provider,
                                                      openstack_venv, service_cloud_dir,
                                                      tmp_path):
    """`lab up --from-dump` of a dump the OpenStack services wrote, then the cutover
    through `lab exec` and the migrate config `lab up` printed: plan, apply, verify,
    rollback, against the lab's Galera through the VIP."""
    from tests.migrate import service_cloud

    dump = _operator_dump(service_cloud_dir, tmp_path / "prod.sql")
    t0 = time.monotonic()
    res = run(["lab", "up", "--from-dump", str(dump), "--openstack-venv", str(openstack_venv),
               "--sample-schemas", str(service_cloud_dir)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    up_seconds = time.monotonic() - t0
    status = _status(env)
    conf = status["migrate_config"]
    assert f"migrate config (databases through the VIP): {conf}" in res.stdout
    assert f"pacestack lab exec controller01 -- pacestack --config-file {conf} migrate " \
           "plan --mapping MAPPING" in res.stdout
    assert status["migrate_command"] in run(["lab", "status"], env).stdout
    assert os.stat(conf).st_mode & 0o777 == 0o600

    from pacestack.cluster.lab.stack import Lab

    lab = Lab.find(registry)
    password = lab.db_password()
    text = Path(conf).read_text()
    assert f"keystone_connection = mysql+pymysql://pacestack_lab:{password}@" \
           f"{status['vip_name']}/keystone" in text
    outputs = [res.stdout, res.stderr]

    def lab_exec(node: str, *argv: str, timeout: float = 400) -> subprocess.CompletedProcess:
        r = run(["lab", "exec", node, "--", *argv], env, timeout=timeout)
        outputs.extend((r.stdout, r.stderr))
        return r

    # inside the node: its hostname, the VIP's name, its exit code
    assert lab_exec("controller02", "hostname").stdout.strip() == "controller02"
    assert lab_exec("controller01", "sh", "-c", "exit 7").returncode == 7
    assert status["vip"] in lab_exec("arbitrator", "getent", "hosts",
                                     status["vip_name"]).stdout
    # in the caller's directory, unless the node mounts its own there
    for cwd, inside in ((tmp_path, str(tmp_path)), (Path("/var/log"), "/")):
        pwd = subprocess.run([PACESTACK, "lab", "exec", "controller01", "--", "pwd"],
                             capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
                             check=False)
        assert pwd.stdout.strip() == inside, pwd
    bad = lab_exec("controller03", "true")
    assert bad.returncode == 2 and "no lab node named 'controller03'" in bad.stderr
    nothing = run(["lab", "exec", "controller01"], env)
    assert nothing.returncode == 2 and "lab exec: no command given" in nothing.stderr

    # the services run on the loaded dump: Keystone serves the dump's endpoints
    assert int(lab.sql("SELECT COUNT(*) FROM keystone.endpoint;").strip()) > 0
    probe = lab_exec("arbitrator", sys.executable, "-c",
                     "import json, urllib.request; print(json.load(urllib.request.urlopen("
                     "'http://controller.domain:5000/v3', timeout=5))['version']['id'])")
    assert probe.stdout.strip() == "v3.14", probe.stderr

    # the operator's own files: the mapping (nothing kept: every old name is rewritten
    # or kept by a named rule) and the new cloud's ml2 ranges
    mapping = tmp_path / "mapping.conf"
    mapping.write_text(service_cloud.MAPPING.read_text())
    ml2 = tmp_path / "ml2_conf.ini"
    ml2.write_text(service_cloud.ML2_CONF.read_text())
    mine = tmp_path / "mine.conf"
    mine.write_text(f"[openstack]\nml2_config = {ml2}\n")
    migrate = [PACESTACK, "--config-file", conf, "--config-file", str(mine), "migrate"]
    before = _lab_checksums(lab)

    t1 = time.monotonic()
    r = lab_exec("controller01", *migrate, "plan", "--mapping", str(mapping), "--format", "json")
    # the interrupted live migration left an instance active: refused, nothing written
    assert r.returncode == 2 and "INSTANCE_NOT_STOPPED" in r.stdout + r.stderr, r.stderr
    assert _lab_checksums(lab) == before
    r = lab_exec("controller02", *migrate, "apply", "--force", "--mapping", str(mapping),
                 "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    # written through the VIP, on both members
    for node in ("controller01", "controller02"):
        assert lab.sql("SELECT DISTINCT vif_type FROM neutron.ml2_port_bindings;",
                       node=node).split() == ["ovs"]
        assert "http://controller.domain:8776/v3/%(project_id)s" in lab.sql(
            "SELECT url FROM keystone.endpoint;", node=node).splitlines()
    r = lab_exec("controller01", *migrate, "verify", "--mapping", str(mapping),
                 "--format", "json")
    found = json.loads(r.stdout)["findings"]
    codes = {f["code"] for f in found if f["severity"] == "error"}
    assert not codes & {"ENDPOINT_OLD_HOST", "BINDING_LINUXBRIDGE", "SEGMENT_NOT_ALLOCATED",
                        "CELL_OLD_HOST"}, found
    assert not [f for f in found if f["code"] == "RESIDUE_UNCOVERED"], found
    r = lab_exec("controller01", *migrate, "rollback", run_id, "--format", "json")
    back = json.loads(r.stdout)
    assert back["refused"] is None and back["rows"] > 0, r.stdout + r.stderr
    # every row restored; the lab's cinder-volume kept heartbeating in cinder.services
    # after the apply, which rollback reports (exit 1) as a live cloud would
    assert {k for k, v in back["checksums"].items()
            if v["before_apply"] != v["now"]} == {"cinder.services"}, r.stdout
    assert r.returncode == 1 and "table checksums differ from before the apply" in r.stderr
    migrate_seconds = time.monotonic() - t1
    assert _lab_checksums(lab) == before
    assert _lab_checksums(lab, node="controller02") == before

    # the lab's password is only in the 0600 file, never in what the commands print
    assert not [o for o in outputs if password in o]
    print(f"lab up {up_seconds:.1f} s, plan+apply+verify+rollback via lab exec "
          f"{migrate_seconds:.1f} s")
    gone = run(["lab", "down"], env)
    assert gone.returncode == 0, gone.stderr
    assert not Path(conf).exists()


def test_service_debug_reaches_lab_up_and_lab_status(monkeypatch, capsys, tmp_path):
    """In-process, no lab built: `lab up --service-debug` asks stack.up for services at
    debug level (and without it not), and `lab status` of such a lab says so, in JSON
    and in text with the log directories."""
    from pacestack.cluster.lab import stack
    from pacestack.cluster.lab.nodes import NodeRoot

    from pacestack.cli import main
    from pacestack.errors import RuntimeFailure

    asked = []

    def up(opts, progress):
        asked.append(opts)
        raise RuntimeFailure("stopped before building anything")

    monkeypatch.setattr(stack, "up", up)
    no_conf = ["--config-dir", str(tmp_path)]  # not the machine's pacestack.conf
    assert main([*no_conf, "lab", "up", "--whole-profile", "--service-debug"]) == 1
    assert main([*no_conf, "lab", "up"]) == 1
    assert [(o.service_debug, o.whole_profile) for o in asked] == [(True, True),
                                                                   (False, False)]

    class Host:
        def __init__(self, name):
            self.name, self.booted, self.root = name, False, NodeRoot(tmp_path / name)

    class Cluster:
        nodes = [Host("controller01"), Host("controller02")]
        arbitrator = Host("arbitrator")
        node_names = ["controller01", "controller02"]

        def describe(self):
            return {"dir": str(tmp_path), "network": "10.99.1.0/24", "hosts": []}

    info = stack.LabInfo(run_id="r1", nodes=Cluster.node_names, arbitrator="arbitrator",
                         vip="10.99.1.9", vip_name="controller.domain", description="d",
                         source_description="s", venv="v", config_dir="c", power_dir=None,
                         db_password_file="p", services=[], single_instance=[], dump=None,
                         whole_profile=True, compute="arbitrator", service_debug=True)
    # what an older lab saved (no service_debug) still loads
    old = {k: v for k, v in info.to_dict().items() if k != "service_debug"}
    assert stack.LabInfo(**old).service_debug is False
    monkeypatch.setattr(stack.Lab, "find", classmethod(lambda cls: cls(Cluster(), info)))
    capsys.readouterr()
    assert main([*no_conf, "lab", "status", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["service_debug"] is True
    assert main([*no_conf, "lab", "status"]) == 0
    out = capsys.readouterr().out
    assert "services log at debug level" in out
    assert str(tmp_path / "controller02" / "var_log") in out
    assert str(tmp_path / "arbitrator" / "lab") + "/*.out" in out
    info.service_debug = False
    assert main([*no_conf, "lab", "status"]) == 0
    assert "debug" not in capsys.readouterr().out
