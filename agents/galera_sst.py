"""Which state transfer method a joiner may ask for.

The donor runs the script of the method the joiner asks for, found on the PATH of
the donor's mariadbd. A mariadbd started by another agent or an older pacestack
has no wsrep_sst_pacestack_rsync there, so every node advertises (a node
attribute, written before its mariadbd starts) the methods its mariadbd can
donate, and a joiner asks for pacestack_rsync only when every Primary peer
advertises it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from pacestack.agents.galera_mysqld import SST_METHOD

# what a joiner asks for when a Primary peer cannot donate SST_METHOD: the stock
# script SST_METHOD runs on both sides, so any donor that could serve it serves this
FALLBACK = "rsync"
_SCRIPT = "wsrep_sst_"


def donor_methods(path: str, bindir: str) -> list[str]:
    """The methods a mariadbd with this PATH (and its own ``bindir``, which it puts
    first) finds a script for, sorted; SST_METHOD only with the stock script it runs."""
    found = set()
    for d in [bindir, *path.split(":")]:
        if not os.path.isabs(d):
            continue  # mariadbd runs its scripts from the datadir: not ours to resolve
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if name.startswith(_SCRIPT) and len(name) > len(_SCRIPT) \
                    and os.access(os.path.join(d, name), os.X_OK):
                found.add(name[len(_SCRIPT):])
    # wsrep_sst_common and friends are helpers, not methods
    found.discard("common")
    if FALLBACK not in found:
        found.discard(SST_METHOD)
    return sorted(found)


def process_path(pid: int) -> str | None:
    """PATH of a running process as it was started (None: unreadable or unset)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    for entry in raw.split(b"\0"):
        if entry.startswith(b"PATH="):
            return entry[5:].decode(errors="replace")
    return None


def format_methods(methods: Sequence[str]) -> str:
    return ",".join(methods)


def advertises(value: str | None, method: str) -> bool:
    return method in (value or "").split(",")


def join_method(configured: str, explicit: bool,
                donors: Mapping[str, str | None]) -> tuple[str, str]:
    """The method a joiner starts mariadbd with, given what each Primary peer (a
    possible donor) advertises (None: nothing), and why it is not ``configured``
    ("" when it is). An operator's explicit method is used as given."""
    if explicit or configured != SST_METHOD:
        return configured, ""
    silent = sorted(n for n, value in donors.items() if not advertises(value, SST_METHOD))
    if not silent:
        return configured, ""
    verb = "does" if len(silent) == 1 else "do"
    return FALLBACK, f"Primary {', '.join(silent)} {verb} not advertise {SST_METHOD}"
