"""Host names that reach ssh, remote shells and Pacemaker from the command line."""

from __future__ import annotations

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an ssh destination, or None. A name is letters, digits,
    dots, dashes, underscores (and colons of an IPv6 address), starting with a letter
    or digit: ssh would read a leading dash as an option (-oProxyCommand=...), and
    the name also reaches remote shells and Pacemaker."""
    if not name:
        return "empty host name"
    if len(name) > 253:
        return f"host name of {len(name)} characters (at most 253)"
    if not name[0].isascii() or not name[0].isalnum():
        return f"host name {name!r} does not start with a letter or digit"
    bad = sorted(set(name) - _HOST_CHARS)
    if bad:
        return f"host name {name!r} contains {bad[0]!r}"
    return None
