"""pacestack.wsgi_apps against what each release's cached venv really installs:
every API's entry exists there (the module, and the application or the function
building it), the venv's release is read back from it, and an unknown venv is
refused in one line. The applications themselves are served by the API tests
(tests/migrate/test_rehome.py, tests/agents/test_openstack_service_apis.py)."""

from __future__ import annotations

import concurrent.futures
import subprocess

import pytest

from pacestack import wsgi_apps
from pacestack.errors import ConfigError
from tests.fixtures import openstack_build as build

# Run by the release's venv python, one entry a process (the projects' oslo.config
# globals cannot share one): where the entry is, without building the application
# (that needs a configured cloud). A module whose application is made on import is
# checked by its source.
_PROBE = r"""
import importlib, importlib.util, sys
module, attribute, factory = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
spec = importlib.util.find_spec(module)
if spec is None:
    print("no module " + module)
elif factory:
    ok = callable(getattr(importlib.import_module(module), attribute, None))
    print("ok" if ok else "no function " + attribute)
else:
    with open(spec.origin) as fh:
        print("ok" if attribute + " = " in fh.read() else "no " + attribute + " in " + spec.origin)
"""


def _probe(venv, app: wsgi_apps.WsgiApp) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", _PROBE, app.module,
                           app.attribute, "1" if app.factory else "0"],
                          capture_output=True, text=True, env=build.tool_env(venv),
                          timeout=300, check=False)
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines else done.stderr[-1500:]


@pytest.mark.parametrize("release", list(build.RELEASES))
def test_every_entry_is_what_the_release_installs(release, openstack_builds):
    venv, _dump = openstack_builds(release)
    assert wsgi_apps.release_of_venv(venv) == release
    apps = wsgi_apps.APPS[release]
    assert set(apps) == set(wsgi_apps.SERVICES)
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(apps)) as pool:
        found = dict(zip(apps, pool.map(lambda app: _probe(venv, app), apps.values()), strict=True))
    assert found == {name: "ok" for name in apps}


def test_shim_builds_the_application_or_imports_it():
    made = wsgi_apps.app("2024.1", "cinder-api").shim(("--config-file", "/etc/c.conf"))
    assert "sys.argv = sys.argv[:1] + ['--config-file', '/etc/c.conf']" in made
    assert made.endswith("application = initialize_application()\n")
    imported = wsgi_apps.app("2026.2", "keystone").shim()
    assert "from keystone.wsgi.api import application" in imported
    compile(made, "shim", "exec")
    compile(imported, "shim", "exec")


def test_unknown_release_and_venv_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"OpenStack 2023\.1; known: 2024\.1, 2025\.1, 2026\.2"):
        wsgi_apps.app("2023.1", "keystone")
    with pytest.raises(ConfigError, match="no keystone installed"):
        wsgi_apps.release_of_venv(tmp_path)
    (tmp_path / "lib/python3.11/site-packages/keystone-24.0.0.dist-info").mkdir(parents=True)
    with pytest.raises(ConfigError, match="keystone 24.0.0 is not a release"):
        wsgi_apps.release_of_venv(tmp_path)
