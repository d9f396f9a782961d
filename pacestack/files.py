"""Input files read whole (configuration, mapping, the services' config files).

Each is checked before it is opened: a device (``/dev/zero``), a FIFO (whose open
blocks until a writer appears) or a file of many megabytes given by mistake would
otherwise hang the command or exhaust its memory instead of ending in one line.
"""

from __future__ import annotations

import os
import stat

from pacestack.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024  # a generous bound: OpenStack's largest sample configs are ~0.3 MB


def check_readable(path: str, what: str = "file", limit: int = MAX_BYTES) -> None:
    """Refuse what is not a regular file of sane size; a missing file, a directory or
    an unreadable one is left for the caller's own message."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        if "\0" in str(path):
            raise ConfigError(f"{path!r}: a path with a NUL byte is not a {what}") from None
        return
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "a device")
        raise ConfigError(f"{path}: is {kind}, not a {what}; refusing to read it")
    if st.st_size > limit:
        raise ConfigError(f"{path}: {st.st_size} bytes, more than the {limit // 1048576} MiB "
                          f"a {what} may have")
