"""The releases migrate handles: each database's release is read from its alembic
heads; the table of heads is each release's own; any other release is refused with
one line, exit 2, nothing changed."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest
from pacestack.migrate import releases

from tests.fixtures import openstack_build as build
from tests.fixtures.openstack import every_release

# Run by a release venv's python: the heads of one project's own migration files
# (keystone and neutron name theirs in versions/EXPAND_HEAD and CONTRACT_HEAD).
_HEADS_SCRIPT = r"""
import importlib.util, json, os, sys
from alembic.script import ScriptDirectory
package, sub = sys.argv[1:3]
base = os.path.join(list(importlib.util.find_spec(package).submodule_search_locations)[0], sub)
marks = [os.path.join(base, "versions", f) for f in ("EXPAND_HEAD", "CONTRACT_HEAD")]
if all(os.path.exists(m) for m in marks):
    heads = [open(m).read().strip() for m in marks]
else:
    heads = ScriptDirectory(base).get_heads()
print(json.dumps(sorted(heads)))
"""
MIGRATIONS = {"keystone": ("keystone", "common/sql/migrations"),
              "neutron": ("neutron", "db/migration/alembic_migrations"),
              "cinder": ("cinder", "db/migrations"),
              "nova": ("nova", "db/main/migrations"),
              "nova_api": ("nova", "db/api/migrations"),
              "placement": ("placement", "db/sqlalchemy/alembic")}


def test_matrix_is_the_supported_releases():
    assert set(build.RELEASES) == set(releases.SUPPORTED)
    assert build.NEWEST == releases.NEWEST


@every_release
def test_heads_are_the_release_own(openstack_cloud, seeded):
    """The table's heads are those of the release's migration files, the synced
    databases hold exactly them, and migrate detects the release."""
    release = openstack_cloud.release
    for service, (package, sub) in MIGRATIONS.items():
        out = subprocess.run([str(openstack_cloud.venv / "bin" / "python"), "-c",
                              _HEADS_SCRIPT, package, sub], capture_output=True, text=True,
                             env=build.tool_env(openstack_cloud.venv), timeout=120)
        assert out.returncode == 0, out.stderr[-500:]
        files = frozenset(json.loads(out.stdout.strip().splitlines()[-1]))
        assert files == releases.HEADS[service][release], (service, release)
        synced = {r[0] for r in openstack_cloud.execute(service,
                                                        "SELECT version_num FROM alembic_version")}
        assert synced == files, (service, release)
    with contextlib.closing(seeded.cloud()) as c:
        assert c.release.release == release
    r = seeded.cli("plan", "--mapping", str(seeded.mapping_path))
    assert r.returncode == 0, r.stderr
    assert f"planned for OpenStack {release};" in r.stdout


def _refused(seeded, before, *needles: str) -> None:
    for verb in ("plan", "apply", "verify"):
        r = seeded.cli(verb, "--mapping", str(seeded.mapping_path))
        assert r.returncode == 2, (verb, r.returncode, r.stdout, r.stderr)
        err = [ln for ln in r.stderr.splitlines() if ln.startswith("pacestack: error:")]
        assert len(err) == 1 and r.stdout == "", (verb, r.stdout, r.stderr)
        for needle in (*needles, "supported: 2024.1, 2025.1, 2026.2", "nothing changed"):
            assert needle in err[0], (verb, needle, err[0])
        assert seeded.checksums() == before, verb
    dbs = {row[0] for row in seeded.os.server.execute("SHOW DATABASES")}
    assert seeded.journal_db not in dbs


def _set_heads(seeded, service: str, heads) -> None:
    seeded.os.execute(service, "DELETE FROM alembic_version")
    for head in heads:
        seeded.os.execute(service, "INSERT INTO alembic_version VALUES (%s)", [head])


CASES = {
    # a release neutron's heads name, between two supported ones
    "2024.2": ("neutron", ("5bcb7b31ec7d", "5c85685d616d"),
               ("OpenStack 2024.2", "a release migrate does not handle")),
    # older than the matrix: 2023.2
    "2023.2": ("neutron", ("5c85685d616d", "89c58a70ceba"), ("OpenStack 2023.2",)),
    # newer than the newest: a nova head no supported release has
    "newer": ("nova", ("0123456789ab",),
              ("the nova database is at alembic head 0123456789ab",)),
    # one project synced to another release than the rest
    "mixed": ("nova", tuple(releases.HEADS["nova"]["2025.1"]),
              ("different OpenStack releases", "nova 2025.1", "neutron 2026.2")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unsupported_release_refused(seeded, case):
    service, heads, needles = CASES[case]
    _set_heads(seeded, service, heads)
    _refused(seeded, seeded.checksums(), *needles)


def test_pre_alembic_database_refused(seeded):
    """A database sqlalchemy-migrate last synced has migrate_version, no alembic_version."""
    seeded.os.execute("cinder", "RENAME TABLE alembic_version TO migrate_version")
    _refused(seeded, seeded.checksums(), "cinder database", "no alembic_version table")
