"""Which agent parameters are secrets, and how they are kept out of what is shown.

A parameter is secret when its agent's meta-data marks it (``private="1"``, the
mark Pacemaker keeps out of its secure digests, or ``secret``) or when its name
says so (password, passwd, secret, token, key). Secrets are masked in every
plan, result and error pacestack prints, and never put in a command line: pcs
gets a placeholder and the value goes into the CIB file directly (pcsrun).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Mapping, Sequence

MASK = "****"
SECRET_WORDS = ("password", "passwd", "secret", "token", "key")
_TRUE = ("1", "true", "yes", "on")


def secret_by_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


@functools.lru_cache(maxsize=64)
def agent_secrets(agent: str) -> frozenset[str]:
    """Parameters the agent's meta-data marks secret (empty when it cannot be read:
    the names still decide)."""
    if not agent.startswith(("ocf:", "stonith:")):
        return frozenset()
    try:
        done = subprocess.run(["crm_resource", "--show-metadata", agent], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    if done.returncode != 0:
        return frozenset()
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(done.stdout)
    except ET.ParseError:
        return frozenset()
    return frozenset(p.get("name", "") for p in root.iter("parameter")
                     if any((p.get(mark) or "").lower() in _TRUE for mark in ("private", "secret")))


def secret_names(agent: str, params: Iterable[str]) -> frozenset[str]:
    marked = agent_secrets(agent)
    return frozenset(k for k in params if k in marked or secret_by_name(k))


def secret_values(params: Mapping[str, str], names: Iterable[str]) -> set[str]:
    return {params[k] for k in names if params.get(k)}


def mask_argv(argv: Sequence[str], names: Iterable[str]) -> tuple[str, ...]:
    """``key=value`` words of secret keys (or keys whose name says secret) as
    ``key=****``."""
    names = set(names)
    out = []
    for word in argv:
        key, sep, value = word.partition("=")
        if sep and value and (key in names or secret_by_name(key)):
            word = f"{key}={MASK}"
        out.append(word)
    return tuple(out)


def mask_text(text: str, values: Iterable[str]) -> str:
    """``text`` with every secret value replaced by the mask (longest first, so a
    value containing another is masked whole)."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
