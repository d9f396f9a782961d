"""Install the tiny executables Pacemaker runs: /usr/lib/ocf/resource.d/pacestack/<agent>.

Each is three lines (shebang with the Python that has pacestack installed, the
import of its agent class, run) so all logic stays in the package; an agent with
``sh_monitor`` gets a sh front that answers its healthy monitor and hands
everything else to the same three lines (agents/sh_monitor.py; galera's own in
agents/galera_sh_monitor.py). The registry
below is the one place that says which agent name is which class.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys

DEFAULT_PROVIDER_DIR = "/usr/lib/ocf/resource.d/pacestack"

# agent name (as in ocf:pacestack:<name>) -> "module:Class"
AGENTS: dict[str, str] = {
    "galera": "pacestack.agents.galera:GaleraAgent",
    "openstack-service": "pacestack.agents.openstack_service:OpenStackServiceAgent",
    "cinder-volume": "pacestack.agents.cinder_volume:CinderVolumeAgent",
}
# agents whose healthy monitor has a sh front of its own (not sh_monitor.py's
# daemon check): agent name -> "module:function(agent, python, program)"
SH_FRONTS: dict[str, str] = {
    "galera": "pacestack.agents.galera_sh_monitor:script",
}

# -I: nothing from the caller's environment (PYTHONPATH...) leaks in; -S: no site
# processing, which costs ~25 ms per run (a monitor runs every few seconds on
# every node). The paths site would have added are written in instead (as JSON:
# a valid Python literal without single quotes, so the same program also fits
# inside the sh front's '...').
_PROGRAM = """import sys; sys.path += {paths}{package_path}
from {module} import {cls}
from pacestack.agents.ocf import run; raise SystemExit(run({cls}))
"""


def available_agents() -> dict[str, str]:
    """The registered agents whose module exists (agents land one at a time)."""
    found = {}
    for name, target in AGENTS.items():
        module = target.split(":", 1)[0]
        try:
            if importlib.util.find_spec(module) is not None:
                found[name] = target
        except ModuleNotFoundError:
            continue
    return found


def load_agent_class(name: str) -> type:
    """The Agent subclass registered as ``name`` (imports its module)."""
    module, cls = AGENTS[name].split(":", 1)
    return getattr(importlib.import_module(module), cls)


def import_paths(python: str) -> tuple[list[str], str | None]:
    """What ``python`` needs, without site, to import pacestack.agents and its
    dependencies: the sys.path entries site adds, plus (for an editable install,
    where pacestack.agents lives in ./agents, not ./pacestack/agents) the
    directory to append to pacestack.__path__."""
    import subprocess

    probe = ("import sys, os, json; full = sys.path[:]; "
             "import pacestack, pacestack.agents as a; "
             "print(json.dumps([full, os.path.dirname(pacestack.__path__[0]), "
             "os.path.dirname(a.__path__[0]), pacestack.__path__[0]]))")
    out = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    bare = subprocess.run([python, "-I", "-S", "-c",
                           "import sys, json; print(json.dumps(sys.path))"],
                          capture_output=True, text=True, check=True).stdout
    full, pkg_parent, agents_parent, pkg_dir = json.loads(out)
    without_site = set(json.loads(bare))
    paths = [p for p in full if p and p not in without_site]
    # last, so a same-named package in site-packages (sqlalchemy-migrate's
    # "migrate") still wins over the source tree's bare directory names
    if pkg_parent not in paths:
        paths.append(pkg_parent)
    return paths, (agents_parent if agents_parent != pkg_dir else None)


def python_program(name: str, python: str | None = None,
                   paths: list[str] | None = None) -> str:
    """The Python that runs agent ``name`` (``python -IS -c`` or after the shebang).
    ``paths``: the sys.path entries to write in, when they cannot be asked of
    ``python`` (a package build, where pacestack is only under DESTDIR yet)."""
    module, cls = AGENTS[name].split(":", 1)
    python = python or sys.executable
    if paths is not None:
        agents_parent = None
    else:
        paths, agents_parent = import_paths(python)
    package_path = ""
    if agents_parent:
        package_path = ("\nimport pacestack; pacestack.__path__.append("
                        f"{json.dumps(agents_parent)})")
    return _PROGRAM.format(module=module, cls=cls, paths=json.dumps(paths),
                           package_path=package_path)


def executable_text(name: str, python: str | None = None,
                    paths: list[str] | None = None) -> str:
    """The executable's text (``paths``: see python_program)."""
    python = python or sys.executable
    program = python_program(name, python, paths)
    agent = load_agent_class(name)
    if name in SH_FRONTS:
        module, func = SH_FRONTS[name].split(":", 1)
        return getattr(importlib.import_module(module), func)(agent, python, program)
    if agent.sh_monitor:
        from pacestack.agents import sh_monitor
        from pacestack.agents.openstack_service import PID_DIR

        return sh_monitor.script(agent, python, program, PID_DIR)
    return f"#!{python} -IS\n{program}"


def install_agents(provider_dir: str = DEFAULT_PROVIDER_DIR, python: str | None = None,
                   names: list[str] | None = None, paths: list[str] | None = None) -> list[str]:
    """Write the executables (mode 0755) and return their paths (``paths``: see
    executable_text)."""
    os.makedirs(provider_dir, mode=0o755, exist_ok=True)
    written = []
    for name in (names if names is not None else sorted(available_agents())):
        path = os.path.join(provider_dir, name)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(executable_text(name, python, paths))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)  # atomic: Pacemaker may be running the old one
        written.append(path)
    return written



def main(argv: list[str] | None = None) -> int:
    """``python3 -m pacestack.agents.install``: for packages' post-install steps."""
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m pacestack.agents.install",
                                 description="Install pacestack's OCF agent executables.")
    ap.add_argument("--provider-dir", default=DEFAULT_PROVIDER_DIR)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter with pacestack installed (default: this one)")
    args = ap.parse_args(argv)
    for path in install_agents(args.provider_dir, python=args.python):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
