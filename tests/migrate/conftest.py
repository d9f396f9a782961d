"""Fixtures for pacestack migrate: the seed's cloud in the real schemas, a 0600
pacestack.conf pointing at it, and helpers to run the real command."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pacestack.migrate import cloud as cloudmod
from pacestack.migrate import mapping as mappingmod
from pacestack.migrate import tables

from tests.migrate import seed_cloud

PACESTACK = str(Path(sys.executable).parent / "pacestack")


@dataclasses.dataclass
class Seeded:
    os: object  # tests.fixtures.openstack.Cloud
    seed: seed_cloud.Seed
    conf_path: Path
    mapping_path: Path
    ml2_path: Path
    journal_db: str

    def urls(self) -> dict[str, str]:
        return {s: self.os.url(s) for s in tables.SERVICE_DATABASES}

    def cloud(self) -> cloudmod.Cloud:
        return cloudmod.open_cloud(self.urls(), ml2_config=str(self.ml2_path),
                                   journal_db=self.journal_db)

    def mapping(self, text: str | None = None) -> mappingmod.Mapping:
        if text is not None:
            self.mapping_path.write_text(text)
        return mappingmod.load(str(self.mapping_path))

    def cli(self, *args: str, conf: Path | None = None, timeout: float = 300,
            popen: bool = False):
        argv = [PACESTACK, "--config-file", str(conf or self.conf_path), "migrate", *args]
        if popen:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def sql(self, service: str, query: str, args=None) -> tuple[tuple, ...]:
        return tuple(tuple(r) for r in self.os.execute(service, query, args))

    def checksums(self) -> dict[str, object]:
        """CHECKSUM TABLE of every table migrate may write."""
        out = {}
        for db, table in tables.TABLES:
            rows = self.os.server.execute(
                f"CHECKSUM TABLE `{self.os.db_names[db]}`.`{table}`")
            out[f"{db}.{table}"] = rows[0][1]
        return out


def write_conf(path: Path, os_cloud, ml2: Path, journal_db: str, **migrate) -> Path:
    cfg = os_cloud.config_dir
    lines = ["[openstack]"]
    for key, name in (("keystone", "keystone.conf"), ("neutron", "neutron.conf"),
                      ("cinder", "cinder.conf"), ("nova", "nova.conf"),
                      ("placement", "placement.conf")):
        lines.append(f"{key}_config = {cfg / name}")
    lines.append(f"ml2_config = {ml2}")
    lines += ["[migrate]", f"journal_database = {journal_db}",
              f"openstack_bin_dir = {os_cloud.venv / 'bin'}",
              f"openstack_python = {os_cloud.venv / 'bin' / 'python'}"]
    lines += [f"{k} = {v}" for k, v in migrate.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def seed_into(openstack_cloud, tmp_path: Path) -> Seeded:
    """The seed's linuxbridge-era cloud in openstack_cloud's fresh real schemas."""
    ml2 = tmp_path / "ml2_conf.ini"
    ml2.write_text(seed_cloud.ML2_CONF)
    # the new cloud's neutron-status reads the same ml2 ranges migrate enforces
    openstack_cloud.config_file("ml2_conf.ini").write_text(seed_cloud.ML2_CONF)
    with open(openstack_cloud.config_file("nova.conf"), "a") as fh:
        fh.write("\n[service_user]\nsend_service_user_token = true\n")
    conn = openstack_cloud.server.connect()
    try:
        seed = seed_cloud.build_seed(conn, openstack_cloud.db_names)
    finally:
        conn.close()
    journal_db = f"{openstack_cloud.prefix}_pacestack"
    mp = tmp_path / "mapping.conf"
    mp.write_text(seed_cloud.SEED_MAPPING)
    conf = write_conf(tmp_path / "pacestack.conf", openstack_cloud, ml2, journal_db)
    return Seeded(openstack_cloud, seed, conf, mp, ml2, journal_db)


@pytest.fixture
def seeded(openstack_cloud, tmp_path) -> Seeded:
    """The seed's linuxbridge-era cloud in fresh real schemas, ready to migrate."""
    s = seed_into(openstack_cloud, tmp_path)
    yield s
    openstack_cloud.server.execute(f"DROP DATABASE IF EXISTS `{s.journal_db}`")
