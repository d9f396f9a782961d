"""The contract between the ``pacestack`` command and the parts' command groups.

A part declares ``NAME = module:register`` under the ``pacestack.commands``
entry point group. ``register(subparsers)`` adds one argparse parser for its
group and sets ``func`` on every leaf parser to ``handler(conf, args) -> int``.
The core finds groups by entry point only, so it never imports a part.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import metadata
from typing import Any

from oslo_config import cfg

from pacestack.errors import RuntimeFailure

ENTRY_POINT_GROUP = "pacestack.commands"
# What the lab offers the --lab options of commands that run on real controllers:
# found by name here, so those commands' modules never import the lab.
LAB_ENTRY_POINT_GROUP = "pacestack.lab"

Handler = Callable[[cfg.ConfigOpts, argparse.Namespace], int]


def command_groups() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return sorted(eps, key=lambda ep: ep.name)


def lab_entry(name: str) -> Callable[..., Any]:
    """The lab's ``name`` (LAB_ENTRY_POINT_GROUP), loaded; RuntimeFailure without a lab."""
    for ep in metadata.entry_points(group=LAB_ENTRY_POINT_GROUP, name=name):
        return ep.load()
    raise RuntimeFailure(f"this installation has no lab ({LAB_ENTRY_POINT_GROUP}: {name})")


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="text for people (default), json for scripts",
    )


def add_group(subparsers, name: str, help_text: str, description: str | None = None):
    """Add a command group parser whose verbs are its own subparsers."""
    parser = subparsers.add_parser(
        name, help=help_text, description=description or help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest=f"{name}_verb", metavar="VERB")
    verbs.required = True
    return parser, verbs
