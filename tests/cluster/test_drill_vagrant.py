"""The Vagrantfile (tests/vagrant/) for controller01, controller02 and an arbitrator VM.

VMs cannot run here (no nested virtualisation, no provider installed), so this is
the check that can: Debian's vagrant validates the file offline with
``--ignore-provider``; a broken copy must fail the same check. ~3 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

VAGRANT_DIR = Path(__file__).resolve().parents[1] / "vagrant"


def _validate(directory: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "VAGRANT_HOME": str(home / ".vagrant.d"),
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    return subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=directory,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_vagrantfile_validates(tmp_path):
    # the same layout as the repository: the Vagrantfile syncs ../../dist (make deb)
    work = tmp_path / "tests" / "vagrant"
    (tmp_path / "dist").mkdir()
    shutil.copytree(VAGRANT_DIR, work, ignore=shutil.ignore_patterns(".vagrant"))
    res = _validate(work, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Vagrantfile validated successfully." in res.stdout
    text = (work / "Vagrantfile").read_text()
    for name in ("controller01", "controller02", "arbitrator"):
        assert f'"{name}"' in text
    assert "apt-get install -y -q /vagrant_dist/" in text  # installs the built .deb
    assert "pacestack cluster drill" in text

    broken = text.replace("node.vm.hostname = name", "node.vm.hostnam = name")
    (work / "Vagrantfile").write_text(broken)
    res = _validate(work, tmp_path)
    assert res.returncode != 0
    assert "hostnam" in res.stdout + res.stderr
