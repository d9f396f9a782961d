"""Every registered agent, installed where Pacemaker looks for it, as Pacemaker's
own tools see it: meta-data valid against resource-agents' DTD and RNG,
`pcs resource describe`, `crm_resource --validate`, and a monitor path that
imports nothing heavy."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pacestack.agents import install

from tests.fixtures.ocf import PROVIDER_DIR, RA_DTD, RA_RNG, exit_reason, run_agent

AGENTS = sorted(install.available_agents())


def test_registry_holds_the_issue_agents():
    assert set(install.AGENTS) == {"galera", "openstack-service", "cinder-volume"}
    assert "openstack-service" in AGENTS


@pytest.mark.parametrize("agent", AGENTS)
def test_meta_data_of_installed_agent_validates(agent, ocf_provider, tmp_path):
    rc, out, err = run_agent(agent, "meta-data")
    assert rc == 0, err
    path = tmp_path / f"{agent}.xml"
    path.write_text(out)
    for args in (["--dtdvalid", RA_DTD], ["--relaxng", RA_RNG]):
        lint = subprocess.run(["xmllint", "--noout", *args, str(path)], capture_output=True,
                              text=True, check=False)
        assert lint.returncode == 0, lint.stderr
    # and the way ocf-tester checks it: the DOCTYPE resolved next to the DTD
    lint = subprocess.run("xmllint --noout --valid -", shell=True, input=out, text=True,
                          cwd="/usr/share/resource-agents", capture_output=True, check=False)
    assert lint.returncode == 0, lint.stderr


@pytest.mark.parametrize("agent", AGENTS)
def test_pcs_describes_installed_agent(agent, ocf_provider):
    done = subprocess.run(["pcs", "resource", "describe", f"ocf:pacestack:{agent}"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"ocf:pacestack:{agent}" in done.stdout
    cls = install.load_agent_class(agent)
    for param in cls.parameters:
        assert param.name in done.stdout


def test_agent_runs_as_nobody_like_ocf_tester_checks(ocf_provider):
    # ocf-tester runs meta-data as nobody: the interpreter and the tree must be readable
    done = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c",
                           f"{PROVIDER_DIR}/openstack-service meta-data"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_crm_resource_validate_runs_validate_all(ocf_provider, tmp_path):
    conf = tmp_path / "svc.conf"
    conf.write_text("[DEFAULT]\n")
    base = ["crm_resource", "--validate", "--class", "ocf", "--provider", "pacestack",
            "--agent", "openstack-service"]
    ok = subprocess.run([*base, "--option", "binary=/bin/sleep", "--option", f"config={conf}"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run([*base, "--option", "binary=/nonexistent/keystone"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "binary '/nonexistent/keystone' is not installed" in bad.stdout + bad.stderr


def test_installed_agent_exit_reason_and_logfile(ocf_provider, tmp_path):
    log = tmp_path / "pacemaker.log"
    rc, _, err = run_agent("openstack-service", "validate-all", {"binary": "sleep",
                                                                  "monitor_timeout": "ten"},
                           env={"HA_LOGFILE": str(log)}, resource="api")
    assert rc == 6
    assert exit_reason(err) == "parameter 'monitor_timeout': 'ten' is not an integer"
    assert "openstack-service(api)[" in log.read_text()
    assert "ERROR: parameter 'monitor_timeout'" in log.read_text()


@pytest.mark.parametrize("monitor_url", [None, "http://127.0.0.1:9/healthcheck"])
def test_monitor_path_imports_only_the_standard_library(monitor_url, ocf_provider, tmp_path):
    """A monitor runs every few seconds on every node: no oslo.config, pymysql,
    python-daemon, urllib, re or logging on its path (with or without a health URL)."""
    env = {"OCF_RESKEY_binary": "/bin/sleep", "OCF_RESKEY_pid": str(tmp_path / "x.pid"),
           "OCF_RESKEY_CRM_meta_interval": "10000", "OCF_ROOT": "/usr/lib/ocf"}
    sleeper = None
    if monitor_url:
        # a running service, so the monitor goes on to the health check
        sleeper = subprocess.Popen(["/bin/sleep", "60"])
        (tmp_path / "x.pid").write_text(f"{sleeper.pid}\n")
        env["OCF_RESKEY_monitor_url"] = monitor_url
    try:
        # the Python the sh front hands a monitor to (with a sleeper that has no
        # start-time record, the front never answers this one itself)
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-X", "importtime", "-c",
             install.python_program("openstack-service"), "monitor"],
            env=env, capture_output=True, text=True, check=False)
    finally:
        if sleeper:
            sleeper.kill()
            sleeper.wait()
    # not running, or running with nothing listening on the health URL
    assert done.returncode == (1 if monitor_url else 7), done.stderr
    if monitor_url:
        assert "health check failed" in done.stderr
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
               if line.startswith("import time:")}
    assert "pacestack.agents.openstack_service" in modules
    # socket.py (enum, selectors, functools) and collections cost more than the check
    # itself on a busy node: plain http goes through _socket
    heavy = {m for m in modules if m.split(".")[0] in
             ("oslo_config", "pymysql", "daemon", "logging", "subprocess", "xml", "email",
              "http", "ssl", "stevedore", "sqlalchemy", "urllib", "re", "typing",
              "dataclasses", "inspect", "socket", "enum", "selectors", "collections",
              "functools")}
    assert not heavy, heavy


def test_install_module_writes_tiny_executables(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pacestack.agents.install", "--provider-dir",
                           str(tmp_path)], capture_output=True, text=True, check=True)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == AGENTS and done.stdout.split() == [str(tmp_path / n) for n in AGENTS]
    for name in written:
        path = tmp_path / name
        assert path.stat().st_mode & 0o777 == 0o755
        text = path.read_text()
        if install.load_agent_class(name).sh_monitor or name in install.SH_FRONTS:
            # a sh front, then the same Python
            assert text.startswith("#!/bin/sh\n")
            assert f"exec {sys.executable} -IS -c '{install.python_program(name)}' \"$@\"\n" \
                in text
        else:
            assert text.startswith(f"#!{sys.executable} -IS\n") and len(text.splitlines()) <= 5
        meta = subprocess.run([str(path), "meta-data"], capture_output=True, text=True,
                              check=False)
        assert meta.returncode == 0 and f'<resource-agent name="{name}"' in meta.stdout


def test_ha_logfacility_logs_to_syslog(ocf_provider):
    """HA_LOGFACILITY sends messages to syslog with that facility. This machine
    runs no syslog daemon: the agent runs in a private mount namespace whose
    /dev/log is a datagram socket this test listens on."""
    work = Path(tempfile.mkdtemp(prefix="pacestack-syslog-", dir="/tmp"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        work.chmod(0o755)
        listener.bind(str(work / "log"))
        listener.settimeout(10)
        script = (f"set -e; mkdir {work}/olddev; mount --rbind /dev {work}/olddev; "
                  "mount -t tmpfs -o mode=755 tmpfs /dev; "
                  f"touch /dev/null; mount --bind {work}/olddev/null /dev/null; "
                  f"touch /dev/log; mount --bind {work}/log /dev/log; "
                  f"exec {PROVIDER_DIR}/openstack-service validate-all")
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
                 "OCF_RESOURCE_INSTANCE": "api", "HA_LOGFACILITY": "local5",
                 "OCF_RESKEY_binary": "/nonexistent/nova-api"},
            capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 5, done.stderr
        message = listener.recv(4096).decode()
    finally:
        listener.close()
        shutil.rmtree(work, ignore_errors=True)
    # <PRI> = facility local5 (21) * 8 + err (3)
    assert message.startswith("<171>")
    assert re.search(r"openstack-service\(api\)\[\d+\]: ERROR: binary '/nonexistent/nova-api' "
                     "is not installed or not executable$", message), message


def test_executable_for_a_package_build_names_the_target_paths():
    """A package build cannot ask the target python (pacestack is only under
    DESTDIR): the site directories are given and written in as they are."""
    text = install.executable_text("cinder-volume", "/usr/bin/python3",
                                   ["/usr/lib/python3/dist-packages"])
    assert text == (
        "#!/usr/bin/python3 -IS\n"
        'import sys; sys.path += ["/usr/lib/python3/dist-packages"]\n'
        "from pacestack.agents.cinder_volume import CinderVolumeAgent\n"
        "from pacestack.agents.ocf import run; raise SystemExit(run(CinderVolumeAgent))\n")
    galera = install.executable_text("galera", "/usr/bin/python3",
                                     ["/usr/lib/python3/dist-packages"])
    assert galera.startswith("#!/bin/sh\n") and galera.endswith(
        "exec /usr/bin/python3 -IS -c '"
        'import sys; sys.path += ["/usr/lib/python3/dist-packages"]\n'
        "from pacestack.agents.galera import GaleraAgent\n"
        "from pacestack.agents.ocf import run; raise SystemExit(run(GaleraAgent))\n"
        "' \"$@\"\n")
    front = install.executable_text("openstack-service", "/usr/bin/python3",
                                    ["/usr/lib/python3/dist-packages"])
    assert front.endswith(
        "exec /usr/bin/python3 -IS -c '"
        'import sys; sys.path += ["/usr/lib/python3/dist-packages"]\n'
        "from pacestack.agents.openstack_service import OpenStackServiceAgent\n"
        "from pacestack.agents.ocf import run; raise SystemExit(run(OpenStackServiceAgent))\n"
        "' \"$@\"\n")
