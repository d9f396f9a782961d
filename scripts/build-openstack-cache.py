#!/usr/bin/env python3
"""Prewarm the OpenStack test cache: the pinned venv, the synced-schema dump and
the old cloud the services wrote for the cutover tests (tests/migrate/service_cloud),
and Glance's venv with the memcache client the whole-profile lab runs.

`make` calls it before pytest so the first test does not pay for the build;
the fixtures build the same thing on demand when it was not run. Prints the
cache paths and the cold build times (JSON) it measured or found.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures import openstack_build as build  # noqa: E402
from tests.fixtures.openstack import start_tmpfs_server  # noqa: E402
from tests.migrate import service_cloud  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default=build.NEWEST, choices=list(build.RELEASES),
                        help=f"the OpenStack release to build (default: {build.NEWEST})")
    release = parser.parse_args().release

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    venv = build.ensure_venv(log=log, name=release)
    venv_seconds = time.monotonic() - started
    started = time.monotonic()
    dump = build.ensure_dump(venv, lambda: start_tmpfs_server("build"), log=log, name=release)
    dump_seconds = time.monotonic() - started
    started = time.monotonic()
    cloud = service_cloud.ensure_dump(venv, dump.parent,
                                      lambda: start_tmpfs_server("svcbuild"), log=log,
                                      release=release)
    cloud_seconds = time.monotonic() - started
    started = time.monotonic()
    glance = build.ensure_glance_venv(log=log)
    glance_seconds = time.monotonic() - started
    print(json.dumps({
        "release": release,
        "venv": str(venv),
        "dump": str(dump),
        "venv_ready_seconds": round(venv_seconds, 1),
        "venv_cold_build_seconds": build.venv_build_seconds(venv),
        "dump_ready_seconds": round(dump_seconds, 1),
        "dump_cold_build": build.read_timings(dump.parent),
        "service_cloud": str(cloud),
        "service_cloud_ready_seconds": round(cloud_seconds, 1),
        "service_cloud_cold_build": service_cloud.read_timings(cloud),
        "glance_venv": str(glance),
        "glance_ready_seconds": round(glance_seconds, 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
