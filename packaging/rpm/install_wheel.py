#!/usr/bin/python3
"""Install a wheel into BUILDROOT with Fedora's layout (/usr, SITELIB), for rpmbuild
hosts without Fedora's %pyproject_install (e.g. Debian, whose own python3 would
choose /usr/local/lib/python3.X/dist-packages).

Usage: install_wheel.py BUILDROOT SITELIB WHEEL
"""

from __future__ import annotations

import sys
import sysconfig

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: install_wheel.py BUILDROOT SITELIB WHEEL", file=sys.stderr)
        return 2
    buildroot, sitelib, wheel = argv
    scheme = sysconfig.get_paths("posix_prefix", vars={"base": "/usr", "platbase": "/usr"})
    scheme["purelib"] = scheme["platlib"] = sitelib
    destination = SchemeDictionaryDestination(
        scheme, interpreter=sys.executable, script_kind="posix", destdir=buildroot,
        # level 0 only: opt-1 files would be byte-identical copies without hardlinking
        bytecode_optimization_levels=(0,),
    )
    with WheelFile.open(wheel) as source:
        install(source, destination, {"INSTALLER": b"rpm\n"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
