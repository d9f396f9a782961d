"""Install the tiny executables Pacemaker runs: /usr/lib/ocf/resource.d/pacestack/<agent>.

Each is three lines (shebang with the Python that has pacestack installed, the
import of its agent class, run) so all logic stays in the package. The registry
below is the one place that says which agent name is which class.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

DEFAULT_PROVIDER_DIR = "/usr/lib/ocf/resource.d/pacestack"

# agent name (as in ocf:pacestack:<name>) -> "module:Class"
AGENTS: dict[str, str] = {
    "galera": "pacestack.agents.galera:GaleraAgent",
    "openstack-service": "pacestack.agents.openstack_service:OpenStackServiceAgent",
    "cinder-volume": "pacestack.agents.cinder_volume:CinderVolumeAgent",
}

_TEMPLATE = """#!{python} -I
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


def executable_text(name: str, python: str | None = None) -> str:
    module, cls = AGENTS[name].split(":", 1)
    return _TEMPLATE.format(python=python or sys.executable, module=module, cls=cls)


def install_agents(provider_dir: str = DEFAULT_PROVIDER_DIR, python: str | None = None,
                   names: list[str] | None = None) -> list[str]:
    """Write the executables (mode 0755) and return their paths."""
    os.makedirs(provider_dir, mode=0o755, exist_ok=True)
    written = []
    for name in (names if names is not None else sorted(available_agents())):
        path = os.path.join(provider_dir, name)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(executable_text(name, python))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)  # atomic: Pacemaker may be running the old one
        written.append(path)
    return written

