"""Where each supported OpenStack release keeps its APIs' WSGI applications.

A WSGI server (gunicorn in the lab and the tests, mod_wsgi or uwsgi on a
controller) needs a module and a name in it. The releases differ: from 2025.1 on
every project ships ``<project>.wsgi.*`` modules whose ``application`` is built on
import; 2024.1 has none of them, only the functions its pbr ``wsgi_scripts``
(``keystone-wsgi-public``, ``nova-api-wsgi``, ``placement-api``, ``neutron-api``,
``cinder-wsgi``) call to build one. Each entry below names what that release's
installed packages provide (checked against their ``entry_points.txt`` and
modules in each release's venv).

Which release a venv holds is read from its installed keystone: its major
version moves by one every release.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pacestack.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class WsgiApp:
    """One API's WSGI application in one release."""

    module: str
    attribute: str = "application"
    # attribute is a function that builds the application (2024.1's wsgi_scripts)
    factory: bool = False
    # importing it monkey-patches the process with eventlet: a threaded worker
    # deadlocks (the first response is never written), one thread serves it
    eventlet: bool = False

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attribute}" + ("()" if self.factory else "")

    def shim(self, args: tuple[str, ...] = ()) -> str:
        """Source of a module whose ``application`` is this API's, importable by any
        WSGI server. The service parses sys.argv with oslo.config: the server's own
        options are replaced by ``args`` (``--config-file``, say) first."""
        argv = "sys.argv[:1]" + (f" + {list(args)!r}" if args else "")
        head = f"import sys\n\nsys.argv = {argv}\n"
        if self.factory:
            return (head + f"from {self.module} import {self.attribute}  # noqa: E402\n\n"
                    f"application = {self.attribute}()\n")
        named = "" if self.attribute == "application" else f"{self.attribute} as "
        return head + f"from {self.module} import {named}application  # noqa: E402,F401\n"


# the APIs the lab and the tests serve, by the names the table uses
SERVICES = ("keystone", "neutron", "placement", "nova-api", "cinder-api")

_WSGI_MODULES = {
    "keystone": WsgiApp("keystone.wsgi.api"),
    "neutron": WsgiApp("neutron.wsgi.api"),
    "placement": WsgiApp("placement.wsgi.api"),
    "nova-api": WsgiApp("nova.wsgi.osapi_compute"),
    "cinder-api": WsgiApp("cinder.wsgi.api"),
}

# release -> API -> its WSGI application
APPS: dict[str, dict[str, WsgiApp]] = {
    "2026.2": _WSGI_MODULES,
    # nova 31's API still imports nova.monkey_patch
    "2025.1": {**_WSGI_MODULES, "nova-api": WsgiApp("nova.wsgi.osapi_compute", eventlet=True)},
    "2024.1": {
        "keystone": WsgiApp("keystone.server.wsgi", "initialize_public_application",
                            factory=True),
        # neutron-api's wsgi_script: the paste app, loaded under neutron.cmd.eventlet
        "neutron": WsgiApp("neutron.cmd.eventlet.server", "main_api_eventlet", factory=True,
                           eventlet=True),
        "placement": WsgiApp("placement.wsgi", "init_application", factory=True),
        "nova-api": WsgiApp("nova.api.openstack.compute.wsgi", "init_application",
                            factory=True, eventlet=True),
        "cinder-api": WsgiApp("cinder.wsgi.wsgi", "initialize_application", factory=True),
    },
}

# keystone's major version -> the release it belongs to
_KEYSTONE_MAJOR = {25: "2024.1", 27: "2025.1", 30: "2026.2"}


def _supported() -> str:
    return ", ".join(sorted(APPS))


def app(release: str, service: str) -> WsgiApp:
    """The WSGI application of ``service`` in ``release``; ConfigError naming the
    known ones otherwise."""
    if release not in APPS:
        raise ConfigError(f"no WSGI entry points known for OpenStack {release}; "
                          f"known: {_supported()}")
    if service not in APPS[release]:
        raise ConfigError(f"no WSGI entry point for {service!r}; known: {', '.join(SERVICES)}")
    return APPS[release][service]


def release_of_venv(venv: Path) -> str:
    """The release of the OpenStack projects installed in ``venv`` (by keystone's
    version); ConfigError when none or an unknown one is installed."""
    found = sorted(Path(venv).glob("lib/python3*/site-packages/keystone-*.dist-info"))
    if not found:
        raise ConfigError(f"{venv}: no keystone installed in this venv")
    match = re.match(r"keystone-(\d+)\.", found[-1].name)
    major = int(match.group(1)) if match else None
    if major not in _KEYSTONE_MAJOR:
        raise ConfigError(f"{venv}: keystone {found[-1].name[len('keystone-'):-len('.dist-info')]} "
                          f"is not a release pacestack knows the WSGI entry points of; "
                          f"known: {_supported()}")
    return _KEYSTONE_MAJOR[major]
