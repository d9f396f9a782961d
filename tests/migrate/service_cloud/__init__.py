"""The old cloud for the cutover tests, written by the OpenStack projects' own code.

``ensure_dump(venv, make_server)`` returns a cached directory with one
<database>.sql per service database (those of openstack_build.SERVICES plus
``nova_cell2``, the second cell), built once per pin set beside the schema
dump: it loads the synced schemas into a private MariaDB, runs generate.py
with the OpenStack venv's python (keystone, neutron and placement REST under
gunicorn, nova/cinder objects and DB APIs, nova-manage), and dumps the result.
``ServiceCloud`` loads that dump into fresh databases like tests.fixtures.
openstack.Cloud does with the schema dump. MAPPING is the cutover's mapping
file, ML2_CONF the new cloud's ml2 ranges.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pacestack import wsgi_apps
from tests.fixtures import openstack_build as build
from tests.fixtures.openstack import Cloud

HERE = Path(__file__).resolve().parent
GENERATOR = HERE / "generate.py"
MAPPING = HERE / "mapping.conf"
ML2_CONF = HERE / "ml2_conf.ini"
CELL2 = "nova_cell2"
DATABASES = (*build.SERVICES, CELL2)
# the APIs generate.py writes through
GENERATED_APIS = ("keystone", "neutron", "placement")


def recipe_key() -> str:
    """The generator's own files: editing them builds a new dump beside the old one."""
    digest = hashlib.sha256()
    for path in sorted([GENERATOR, *(HERE / "lbshim").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def dump_dir(python: str = build.PYTHON, release: str = build.NEWEST) -> Path:
    return build.cache_root(python, release) / f"service-cloud-{recipe_key()}"


def ready(directory: Path) -> bool:
    return (directory / "timings.txt").is_file() and all(
        (directory / f"{name}.sql").is_file() for name in DATABASES)


def ensure_dump(venv: Path, schemas: Path, make_server: Callable[[], object],
                python: str = build.PYTHON,
                log: Callable[[str], None] = lambda _m: None,
                release: str = build.NEWEST) -> Path:
    """The cached service-written cloud, built if missing; returns its directory.

    ``schemas`` is the schema dump's directory (openstack_build.ensure_dump's
    parent): the cloud starts from those synced databases, keys and password.
    """
    target = dump_dir(python, release)
    if ready(target):
        return target
    with build._locked(target.parent / ".service-cloud.lock"):
        if ready(target):
            return target
        for stale in target.parent.glob(".service-cloud-*"):  # a build that died
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".service-cloud-", dir=target.parent))
        os.chmod(work, 0o700)
        # a failed build's work dir keeps its phase logs; the next build removes it
        _build(venv, Path(schemas), make_server, work, release)
        os.rename(work, target)
        log(f"service-written cloud built: {target}")
    return target


def _build(venv: Path, schemas: Path, make_server: Callable[[], object], work: Path,
           release: str) -> None:
    started = time.monotonic()
    server = make_server()
    timings = {}
    try:
        for name in DATABASES:
            server.create_database(name)
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            jobs = [pool.submit(server.load_sql, schemas / f"{'nova' if n == CELL2 else n}.sql",
                                database=n) for n in DATABASES]
            for job in jobs:
                job.result()
        urls = {name: server.url(name) + "?charset=utf8" for name in DATABASES}
        for row_id, url in server.execute("SELECT id, database_connection FROM cell_mappings",
                                          database="nova_api"):
            database = url.rsplit("/", 1)[1].split("?")[0]
            server.execute("UPDATE cell_mappings SET database_connection = %s WHERE id = %s",
                           (urls[database], row_id), database="nova_api")
        etc = work / "etc"
        build.write_configs(etc, urls, work / "state", venv)
        # the agents generate.py reports once must stay alive until it binds the last
        # port: on a busy machine that took longer than neutron's 75 s default
        with open(etc / "neutron.conf", "a") as fh:
            fh.write("\n[DEFAULT]\nagent_down_time = 86400\n")
        for sub in ("fernet-keys", "credential-keys"):
            shutil.copytree(schemas / "keystone-keys" / sub, etc / sub)
        build._write_secret(work / "admin-password",
                            (schemas / "admin-password").read_text())
        build._write_secret(work / "cell2-url", urls[CELL2] + "\n")
        (work / "api-shims.json").write_text(json.dumps(
            {api: wsgi_apps.app(release, api).shim() for api in GENERATED_APIS}))
        timings["prepare"] = time.monotonic() - started
        gen_started = time.monotonic()
        result = subprocess.run(
            [str(venv / "bin" / "python"), str(GENERATOR), "all", str(work)],
            env=build.tool_env(venv), capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=1800)
        (work / "generate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            lines = [ln for ln in result.stderr.splitlines() if "eventlet" not in ln.lower()]
            raise RuntimeError(f"generate.py failed (exit {result.returncode}), "
                               f"logs in {work}: " + " | ".join(lines[-6:]))
        timings["generate"] = time.monotonic() - gen_started
        build.mask_cell_mappings(server, "nova_api")
        for name in DATABASES:
            server.dump([name], work / f"{name}.sql")
            build._strip_database_statements(work / f"{name}.sql")
    finally:
        server.cleanup()
    for line in (work / "generate.log").read_text().splitlines():
        if line.startswith("[generate] ") and ": " in line and line.endswith("s"):
            key, value = line[len("[generate] "):].rsplit(": ", 1)
            timings[key.replace(" ", "_")] = float(value.rstrip("s"))
    shutil.copytree(schemas / "keystone-keys", work / "keystone-keys")
    shutil.rmtree(etc)
    shutil.rmtree(work / "state", ignore_errors=True)
    for leftover in work.glob("wsgi-*"):
        shutil.rmtree(leftover)
    (work / "cell2-url").unlink()
    (work / "api-shims.json").unlink()
    timings["total"] = time.monotonic() - started
    (work / "timings.txt").write_text(
        "".join(f"{key} {value:.1f}\n" for key, value in timings.items()))


class ServiceCloud(Cloud):
    """Fresh copies of the service-written cloud's databases (with the second
    cell's), config files pointing at them."""

    def __init__(self, server, venv: Path, directory: Path, **kw):
        super().__init__(server, venv, directory / "dump.sql", **kw)
        self.db_names[CELL2] = f"{self.prefix}_{CELL2}"

    def load(self) -> ServiceCloud:
        started = time.monotonic()
        for name in DATABASES:
            self.server.create_database(self.db_names[name])
            self._loaded.append(name)
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            jobs = [pool.submit(self.server.load_sql, self.schemas / f"{n}.sql",
                                database=self.db_names[n]) for n in DATABASES]
            for job in jobs:
                job.result()
        self._point_cells_here()
        build.write_configs(self.config_dir, {n: self.url(n) for n in build.SERVICES},
                            self.state_dir, self.venv)
        for sub in ("fernet-keys", "credential-keys"):
            shutil.copytree(self.schemas / "keystone-keys" / sub, self.config_dir / sub)
        self.load_seconds = time.monotonic() - started
        return self


def read_timings(directory: Path) -> dict[str, float]:
    return {key: float(value) for key, value in
            (line.split() for line in (directory / "timings.txt").read_text().splitlines())}
