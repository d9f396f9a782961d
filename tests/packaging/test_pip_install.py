"""pacestack outside its source tree: a plain `pip install .` (not editable) into a
fresh virtualenv, then the commands that need files beside the code.

`pacestack lab up` derives the lab from the sample description shipped as package
data, and `python -m pacestack.agents.install` run from the checkout's root (where
Python imports the bare pacestack/ directory first) writes agents that run. The
install builds from a copy of the working tree, so no build/ lands in the checkout.
A real `lab up` from this install is not made here: its agents would replace the
ones other test sessions on this machine run from /usr/lib/ocf/resource.d.

Time budget: ~15-30 s (the install, its dependencies from pip's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a virtualenv and a pip install

ROOT = Path(__file__).resolve().parents[2]
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
             **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(venv, source copy): the working tree's files copied, then pip-installed."""
    base = tmp_path_factory.mktemp("pip-install")
    src = base / "src"
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=CLEAN_ENV)
    res = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(src)],
                         capture_output=True, text=True, env=CLEAN_ENV, cwd=str(base),
                         timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return venv, src


def test_lab_up_finds_the_sample_description_outside_the_tree(installed, tmp_path):
    venv, _src = installed
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import pacestack, os; print(os.path.dirname(pacestack.__file__))"],
                          capture_output=True, text=True, check=True, env=CLEAN_ENV,
                          cwd="/").stdout.strip()
    assert site.startswith(str(venv)), site  # the install, not the checkout
    assert (Path(site) / "examples" / "seed-cluster.conf").is_file()
    # past the sample: the description is loaded and checked (two controllers), and the
    # next thing lab up needs, the OpenStack venv, is what it names; nothing is built
    res = subprocess.run([str(venv / "bin" / "pacestack"), "lab", "up", "--openstack-venv",
                          str(tmp_path / "no-venv")], capture_output=True, text=True,
                         env={**CLEAN_ENV, "PACESTACK_LAB_REGISTRY": str(tmp_path / "reg")},
                         cwd="/", timeout=60, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"pacestack: error: no OpenStack venv with keystone and "
                                  f"gunicorn ({tmp_path / 'no-venv'}): build it with "
                                  "scripts/build-openstack-cache.py or pass --openstack-venv")
    assert not (tmp_path / "reg").exists()


def test_agents_install_from_the_checkout_root(installed, tmp_path):
    venv, src = installed
    provider = tmp_path / "provider"
    res = subprocess.run([str(venv / "bin" / "python"), "-m", "pacestack.agents.install",
                          "--provider-dir", str(provider)], capture_output=True, text=True,
                         env=CLEAN_ENV, cwd=str(src), timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(Path(p).name for p in res.stdout.split()) == \
        ["cinder-volume", "galera", "openstack-service"]
    for agent in sorted(provider.iterdir()):
        text = agent.read_text()
        # they import the installed package, never the checkout they were written from
        assert str(src) not in text and str(venv) in text, agent
        meta = subprocess.run([str(agent), "meta-data"], capture_output=True, text=True,
                              env={**CLEAN_ENV, "OCF_ROOT": "/usr/lib/ocf"}, cwd="/",
                              timeout=60, check=False)
        assert meta.returncode == 0, meta.stderr
        assert f'<resource-agent name="{agent.name}"' in meta.stdout
