#!/usr/bin/python3
"""Install what the wheel does not carry, from the code just installed under DESTDIR.

debian/rules and the RPM spec both call this, so both packages hold the same files:

- the OCF agents /usr/lib/ocf/resource.d/pacestack/<name>, written by
  ``pacestack.agents.install`` (its registry and template) for /usr/bin/python3;
- /etc/pacestack/pacestack.conf from ``pacestack config sample``, mode 0600 because
  operators may put database URLs with passwords in it;
- mode 0755 on the galera agent's SST method scripts (pacestack/agents/sst/, in
  the wheel as package data): mariadbd runs them, as the mysql user;
- man pages pacestack(1) and pacestack-GROUP(1) for each command group, made by
  help2man from the --help the code prints, so they cannot drift from it.

Running the code here is also the build's check that it works with the
distribution's own Python libraries (Debian 12 ships oslo.config 9.0).

Usage: install_extras.py DESTDIR SITELIB --agent-path DIR [--agent-path DIR]...

SITELIB is where the wheel was installed under DESTDIR (e.g. /usr/lib/python3.11/
dist-packages). The agents run ``python3 -IS`` (no site processing, for speed) and
carry the directories where the target distribution installs pacestack and its
dependencies: --agent-path names them (Debian: /usr/lib/python3/dist-packages;
Fedora: sitelib and sitearch). Explicit, so the build host's own layout never
leaks into the package.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
import tempfile

AGENT_PYTHON = "/usr/bin/python3"
PROVIDER_DIR = "/usr/lib/ocf/resource.d/pacestack"
CONFIG = "/etc/pacestack/pacestack.conf"
MAN1 = "/usr/share/man/man1"


# Every child runs from / : `python3 -m` puts the working directory first on
# sys.path, and the source tree's pacestack/ (without the mapped parts) must never
# shadow the installed package.
def _run_env(site: str) -> dict[str, str]:
    # argparse wraps --help to the terminal width and splits words at hyphens, which
    # help2man then glues back together ("two-node" -> "twonode"): one fixed, wide
    # width keeps the pages reproducible and leaves the wrapping to man.
    return dict(os.environ, PYTHONPATH=site, PYTHONDONTWRITEBYTECODE="1", LC_ALL="C.UTF-8",
                COLUMNS="1000")


def _summary(text: str | None, fallback: str) -> str:
    first = (text or fallback).strip().split(". ")[0].rstrip(".")
    return " ".join(first.split())


def command_groups() -> dict[str, str]:
    """Command group name -> one-line summary, as the installed entry points declare them."""
    from pacestack import commands

    parser = argparse.ArgumentParser(prog="pacestack")
    sub = parser.add_subparsers()
    for ep in commands.command_groups():
        ep.load()(sub)
    # the group's help= line is only kept on argparse's listing entries
    helps = {a.dest: a.help for a in getattr(sub, "_choices_actions", [])}
    return {name: _summary(helps.get(name) or p.description, f"pacestack {name} commands")
            for name, p in sorted(sub.choices.items())}


def help2man(executable: str, name: str, version: str, out: str, env: dict[str, str],
             see_also: list[str]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".h2m", encoding="utf-8") as inc:
        inc.write("[SEE ALSO]\n" + ",\n".join(f".BR {p} (1)" for p in see_also) + "\n")
        inc.flush()
        subprocess.run(
            ["help2man", "--no-info", "--no-discard-stderr", "--section=1",
             f"--version-string={version}", f"--name={name}", f"--include={inc.name}",
             f"--output={out}", executable],
            check=True, env=env, cwd="/",
        )


def install_man_pages(destdir: str, env: dict[str, str], version: str) -> list[str]:
    man1 = destdir + MAN1
    os.makedirs(man1, exist_ok=True)
    groups = command_groups()
    pages = [os.path.join(man1, "pacestack.1")]
    help2man(destdir + "/usr/bin/pacestack",
             "highly available OpenStack controllers on Pacemaker", version, pages[0], env,
             [f"pacestack-{g}" for g in groups])
    with tempfile.TemporaryDirectory() as tmp:
        for group, summary in groups.items():
            # help2man names the page after the program: a wrapper named pacestack-GROUP
            wrapper = os.path.join(tmp, f"pacestack-{group}")
            with open(wrapper, "w", encoding="utf-8") as fh:
                fh.write(f'#!/bin/sh\nexec {sys.executable} -m pacestack.cli {group} "$@"\n')
            os.chmod(wrapper, 0o755)
            page = os.path.join(man1, f"pacestack-{group}.1")
            help2man(wrapper, summary, version, page, env, ["pacestack"])
            pages.append(page)
    return pages


def install_config(destdir: str, env: dict[str, str]) -> str:
    path = destdir + CONFIG
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run([sys.executable, "-m", "pacestack.cli", "config", "sample", "--output", path],
                   check=True, env=env, cwd="/")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


def install_agents(destdir: str, agent_paths: list[str]) -> list[str]:
    """The executables from pacestack.agents.install (its registry and template).

    Its ``import_paths`` asks the target python where pacestack is installed; at
    build time it is only under DESTDIR, so the answer is given instead: the
    target system's site directories."""
    from pacestack.agents import install

    paths = list(dict.fromkeys(agent_paths))  # sitelib and sitearch may be one directory
    install.import_paths = lambda python: (paths, None)
    return install.install_agents(destdir + PROVIDER_DIR, python=AGENT_PYTHON)


def fix_sst_modes(site: str) -> list[str]:
    """wsrep_sst_pacestack_rsync and its shims, executable whatever mode the wheel
    installer left (mariadbd finds them on its PATH and runs them)."""
    top = os.path.join(site, "pacestack", "agents", "sst")
    fixed = []
    for root, _, files in os.walk(top):
        for name in files:
            path = os.path.join(root, name)
            os.chmod(path, 0o755)
            fixed.append(path)
    if not fixed:
        raise SystemExit(f"install_extras: error: no SST scripts under {top}")
    return fixed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="install_extras.py")
    parser.add_argument("destdir")
    parser.add_argument("sitelib")
    parser.add_argument("--agent-path", action="append", required=True, metavar="DIR")
    args = parser.parse_args(argv)
    destdir, sitelib = os.path.abspath(args.destdir), args.sitelib
    site = destdir + sitelib
    if not os.path.isdir(os.path.join(site, "pacestack")):
        print(f"install_extras: error: no pacestack package under {site}", file=sys.stderr)
        return 2
    sys.path.insert(0, site)  # the just-installed code, never a checkout or a venv
    env = _run_env(site)
    from pacestack import __version__

    agents = install_agents(destdir, args.agent_path)
    written = [*agents, *fix_sst_modes(site), install_config(destdir, env),
               *install_man_pages(destdir, env, __version__)]
    for path in written:
        print(f"install_extras: {path[len(destdir):]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
