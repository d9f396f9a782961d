"""The operator's way into a running lab: a command inside a node's namespaces
(``pacestack lab exec``), and the pacestack configuration that points ``pacestack
migrate`` at the lab's databases through the VIP.

The lab's Galera and VIP live inside its network namespaces, so both go together:
the config names ``controller.domain`` (the VIP's name, resolvable only inside the
nodes) and ``lab exec`` is where that name resolves. The config file holds the lab's
database password (mode 0600); commands name the file, never the password.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pacestack.db import SERVICE_SOURCES
from pacestack.errors import RuntimeFailure

from . import netns, services
from .nodes import MOUNTS, Node

MIGRATE_CONF = "migrate/pacestack.conf"  # under the lab's directory
# the [openstack] option -> the lab's config file of that service
SERVICE_FILES = {"keystone_config": "keystone.conf", "neutron_config": "neutron.conf",
                 "ml2_config": "ml2_conf.ini", "cinder_config": "cinder.conf",
                 "nova_config": "nova.conf", "placement_config": "placement.conf"}


def migrate_config_text(vip_name: str, password: str, config_dir: Path, venv: Path) -> str:
    """pacestack.conf for ``pacestack migrate`` inside the lab: every service database
    through the VIP with the lab's database user; the services' own config files (the
    upstream ``*-status`` checks read them) and the lab's OpenStack venv."""
    lines = ["# written by pacestack lab: `pacestack migrate` against this lab's databases",
             "# through the VIP. Use it inside the lab (the VIP's name resolves there only):",
             "#   pacestack lab exec NODE -- pacestack --config-file THIS_FILE \\",
             "#       migrate plan --mapping MAPPING",
             "# A second --config-file after this one overrides any option (your new",
             "# cloud's ml2_config, a journal_database).",
             "[openstack]"]
    lines += [f"{opt} = {config_dir / name}" for opt, name in SERVICE_FILES.items()]
    lines.append("[database]")  # the lab's databases carry the services' own names
    lines += [f"{db}_connection = {services.db_url(password, db, vip_name)}"
              for db in SERVICE_SOURCES]
    lines += ["[migrate]", "journal_database = pacestack",
              f"openstack_bin_dir = {venv / 'bin'}",
              f"openstack_python = {venv / 'bin' / 'python'}"]
    return "\n".join(lines) + "\n"


def write_migrate_config(lab_dir: Path, vip_name: str, password: str, config_dir: Path,
                         venv: Path) -> Path:
    path = lab_dir / MIGRATE_CONF
    path.parent.mkdir(mode=0o700, exist_ok=True)
    services.write_secret(path, migrate_config_text(vip_name, password, config_dir, venv))
    return path


def workdir_inside(cwd: str) -> str:
    """The caller's directory where the node sees the same one, else /: a node mounts
    its own /run, /etc/mysql, /var/log... over the machine's."""
    for target in MOUNTS.values():
        if cwd == target or cwd.startswith(target.rstrip("/") + "/"):
            return "/"
    return cwd


def exec_in(node: Node, argv: list[str], cwd: str | None = None) -> int:
    """Run argv inside the node (its network, mount, UTS, IPC and PID namespaces) with
    this terminal's stdin/stdout/stderr; returns its exit code (128+N for signal N,
    as a shell reports it)."""
    if not node.booted or node.reaper_pid is None:
        raise RuntimeFailure(f"{node.name} is down (crashed or not started): "
                             f"`pacestack lab restart {node.name}` boots it")
    wd = workdir_inside(cwd if cwd is not None else os.getcwd())
    prefix = netns.nsenter_argv(node.reaper_pid, wd)
    # same process group as this one: ^C reaches the command; this process waits for
    # it to end instead of dying first
    p = subprocess.Popen(prefix + argv, env=node._env(None))
    while True:
        try:
            code = p.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - code if code < 0 else code


def exec_hint(node: str, config: str) -> str:
    """The command line that runs migrate inside the lab (printed by lab up/status)."""
    return f"pacestack lab exec {node} -- pacestack --config-file {config} migrate plan " \
           "--mapping MAPPING"
