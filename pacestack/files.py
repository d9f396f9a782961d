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


def read_ini(path: str) -> dict[str, dict[str, list[str]]]:
    """An oslo.config-style file, parsed as oslo.config parses it: {section: {option:
    [values]}}; ConfigError (one line naming the file) for anything unreadable."""
    from oslo_config import cfg

    check_readable(path, "configuration file")
    sections: dict[str, dict[str, list[str]]] = {}
    try:
        cfg.ConfigParser(path, sections).parse()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except cfg.ParseError as exc:
        raise ConfigError(f"{path}: {exc.msg} at line {exc.lineno}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return sections
