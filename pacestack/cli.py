"""The ``pacestack`` command: oslo.config parses, parts' groups come from entry points."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from pacestack import __version__, commands, files, options
from pacestack.errors import EXIT_RUNTIME, EXIT_USAGE, PacestackError

DESCRIPTION = """\
pacestack makes a one-controller OpenStack cloud highly available on a two-node
Pacemaker cluster (controller01, controller02, VIP controller.domain, Galera) and
moves the old cloud's state onto it. Every command that changes something can
show its plan first. Configuration is read from --config-file/--config-dir
(default: /etc/pacestack/pacestack.conf if present); `pacestack config sample`
prints every option with its documentation.
"""


def _add_command_parsers(subparsers) -> None:
    for ep in commands.command_groups():
        register = ep.load()
        register(subparsers)


def _config_files(argv: list[str]) -> list[str]:
    """The files oslo.config is about to read: --config-file, *.conf of --config-dir, or
    the default ones."""
    import argparse
    import glob
    import os

    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--config-file", action="append", default=[])
    p.add_argument("--config-dir", action="append", default=[])
    known, _ = p.parse_known_args(argv)
    paths = list(known.config_file)
    for d in known.config_dir:
        if os.path.isdir(d):
            paths += sorted(glob.glob(os.path.join(glob.escape(d), "*.conf")))
    if not paths and not known.config_dir:
        paths = cfg.find_config_files(project="pacestack", prog="pacestack")
    return paths


def build_conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_cli_opt(
        cfg.SubCommandOpt(
            "command", title="commands", handler=_add_command_parsers,
            help="run `pacestack COMMAND --help` for each command's verbs",
        )
    )
    options.register_opts(conf)
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    conf = build_conf()
    try:
        for path in _config_files(argv):
            files.check_readable(path, "configuration file")
    except PacestackError as exc:
        print(f"pacestack: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        conf(
            argv, project="pacestack", prog="pacestack", version=__version__,
            description=DESCRIPTION,
        )
    except (cfg.ConfigFilesNotFoundError, cfg.ConfigFileParseError,
            cfg.ConfigDirNotFoundError, cfg.ConfigFilesPermissionDeniedError) as exc:
        print(f"pacestack: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    args = conf.command
    try:
        return int(args.func(conf, args) or 0)
    except PacestackError as exc:
        print(f"pacestack: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (cfg.ConfigFileValueError, cfg.RequiredOptError, cfg.NoSuchOptError,
            cfg.ConfigFileParseError) as exc:
        print(f"pacestack: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pacestack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
