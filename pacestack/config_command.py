"""``pacestack config sample|check``."""

from __future__ import annotations

import io
import logging
import re
import sys

from oslo_config import cfg, generator

from pacestack import commands, config_check, findings, render
from pacestack.errors import ConfigError


def sample_text() -> str:
    """The commented sample configuration, from oslo.config's own generator."""
    conf = cfg.ConfigOpts()
    generator.register_cli_opts(conf)
    args = []
    for ns in config_check.pacestack_namespaces():
        args += ["--namespace", ns]
    conf(args, project="pacestack", default_config_files=[], default_config_dirs=[])
    buf = io.StringIO()
    # the generator lower-cases group names and warns about each; our templated
    # groups ([resource:NAME]) are written as the operator types them instead
    gen_log = logging.getLogger("oslo_config.generator")
    level = gen_log.level
    gen_log.setLevel(logging.ERROR)
    try:
        generator.generate(conf, output_file=buf)
    finally:
        gen_log.setLevel(level)
    return re.sub(r"^\[(\w+):name\]$", r"[\1:NAME]", buf.getvalue(), flags=re.MULTILINE)


def _sample(conf, args) -> int:
    text = sample_text()
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise ConfigError(f"{args.output}: cannot write the sample: "
                              f"{exc.strerror or type(exc).__name__}") from None
    else:
        sys.stdout.write(text)
    return 0


def _check(conf, args) -> int:
    result = config_check.check_file(args.file)
    if args.format == "json":
        render.print_json({"file": args.file, "findings": result, "ok": not result})
    elif result:
        for f in result:
            print(f"{f.subject}: {f.message}", file=sys.stderr)
    else:
        print(f"{args.file}: OK")
    return 2 if findings.has_errors(result) else 0


def register(subparsers) -> None:
    _, verbs = commands.add_group(
        subparsers, "config", "show and check pacestack's configuration",
        "Every option pacestack reads, documented, and a checker for your file.",
    )
    p = verbs.add_parser("sample", help="print a complete, commented sample configuration",
                         description="Print every pacestack option with its help text and "
                         "default, ready to copy to /etc/pacestack/pacestack.conf.")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=_sample)
    p = verbs.add_parser("check", help="validate a configuration file",
                         description="Report unknown groups, unknown options and bad values "
                         "in FILE; exit 2 when there is any.")
    p.add_argument("file", metavar="FILE")
    commands.add_format_argument(p)
    p.set_defaults(func=_check)
