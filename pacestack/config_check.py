"""Validate a pacestack configuration file against every registered option.

Returns findings; unknown groups and options, and values their option type
rejects, are errors naming the file, the group and the option.
"""

from __future__ import annotations

import fnmatch
from importlib import metadata

from oslo_config import cfg

from pacestack import codes, files
from pacestack.findings import Finding
from pacestack.options import TEMPLATE_SUFFIX

NAMESPACE_PREFIX = "pacestack"


def pacestack_namespaces() -> list[str]:
    eps = metadata.entry_points(group="oslo.config.opts")
    names = {ep.name for ep in eps
             if ep.name == NAMESPACE_PREFIX or ep.name.startswith(NAMESPACE_PREFIX + ".")}
    return sorted(names)


def known_options() -> dict[str, dict[str, cfg.Opt]]:
    """Group name (or template such as ``resource:NAME``) -> option name -> Opt."""
    known: dict[str, dict[str, cfg.Opt]] = {"DEFAULT": {}}
    for ep in metadata.entry_points(group="oslo.config.opts"):
        if ep.name not in pacestack_namespaces():
            continue
        for group, opts in ep.load()():
            gname = "DEFAULT" if group is None else getattr(group, "name", group)
            slot = known.setdefault(gname, {})
            for opt in opts:
                slot[opt.dest] = opt
                for dep in getattr(opt, "deprecated_opts", []) or []:
                    if dep.name and (dep.group in (None, gname)):
                        slot[dep.name.replace("-", "_")] = opt
    return known


def _group_options(known, section: str) -> dict[str, cfg.Opt] | None:
    if section in known:
        return known[section]
    for gname, opts in known.items():
        if gname.endswith(TEMPLATE_SUFFIX):
            pattern = gname[: -len(TEMPLATE_SUFFIX)] + ":*"
            if fnmatch.fnmatchcase(section, pattern) and section != pattern[:-1]:
                return opts
    return None


def _shown(text: str) -> str:
    """A name or value for a message: printable, one line, never huge."""
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


def check_file(path: str) -> list[Finding]:
    sections = files.read_ini(path)
    known = known_options()
    out: list[Finding] = []
    for section, values in sections.items():
        opts = _group_options(known, section)
        if opts is None:
            shown = _shown(section)
            out.append(codes.CONFIG_UNKNOWN_GROUP(f"{path} [{shown}]", group=shown))
            continue
        for name, raw_values in values.items():
            opt = opts.get(name)
            if opt is None:
                shown = _shown(name)
                out.append(codes.CONFIG_UNKNOWN_OPTION(f"{path} [{section}] {shown}",
                                                       option=shown, group=section))
                continue
            for raw in raw_values:
                try:
                    opt.type(raw)
                except (ValueError, TypeError) as exc:
                    shown = "****" if opt.secret else repr(_shown(raw))
                    reason = "" if opt.secret else f": {' '.join(str(exc).split())[:200]}"
                    out.append(codes.CONFIG_BAD_VALUE(f"{path} [{section}] {name}",
                                                      value=shown, option=name, reason=reason))
    return out
