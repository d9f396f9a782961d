"""Files the Galera agent handles as root in directories the mysql user owns.

The pid directory and the datadir are writable by mysql, so any name in them can
become a symlink, a FIFO or another directory between two calls by path (the
CVE-2016-6664 class: root following it would write, chown or read any file).
So root resolves such paths one component at a time and follows a symlink only
where it sits in a directory root alone can write; opens the last component with
O_NOFOLLOW and accepts only a regular file; creates files under fresh random
names with O_EXCL; changes owner and mode on the open descriptor; and renames
within the directory descriptor it resolved. Standard library only (the monitor
reads the pid file through here).
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 40  # the kernel's own limit on symlinks in one lookup
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted where a file belongs must not hang root
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(OSError):
    """One line: a path root refuses to use, and why."""


def _root_only(dir_fd: int) -> bool:
    """Nobody but root can add, remove or swap a name in this directory."""
    st = os.fstat(dir_fd)
    return st.st_uid == 0 and not st.st_mode & 0o022


def _readlink(name: str, dir_fd: int) -> str | None:
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # not a symlink
            return None
        raise


def open_dir(path: str) -> int:
    """A descriptor of the directory path; the caller closes it.

    Symlinks root-only directories hold (/var/run -> /run) are resolved component
    by component as well; a symlink anywhere else is refused (UnsafePath).
    """
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    todo = path.split("/")[::-1]  # a stack: next component last
    stack = [os.open("/", _DIR)]  # the directories walked, for ".."
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            try:
                stack.append(os.open(name, _DIR, dir_fd=stack[-1]))
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
            target = _readlink(name, stack[-1])
            if target is None:
                raise UnsafePath(f"{path}: {name} is not a directory")
            if not _root_only(stack[-1]):
                raise UnsafePath(f"{path}: {name} is a symlink in a directory other users "
                                 "can write; refusing to follow it as root")
            links += 1
            if links > MAX_LINKS:
                raise UnsafePath(f"{path}: more than {MAX_LINKS} symlinks")
            if target.startswith("/"):
                for fd in stack[1:]:
                    os.close(fd)
                del stack[1:]
            todo.extend(target.split("/")[::-1])
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def split(path: str) -> tuple[str, str]:
    """(directory, file name) of a path that must name a file."""
    head, name = os.path.split(path)
    if name in ("", ".", ".."):
        raise UnsafePath(f"{path}: does not name a file")
    return head or ".", name


def open_regular(name: str, dir_fd: int, shown: str | None = None) -> int:
    """Read-only descriptor of the regular file name in dir_fd: a symlink, FIFO,
    device or directory there is refused (UnsafePath)."""
    shown = shown or name
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{shown}: is a symlink; refusing to follow it as root") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{shown}: not a regular file")
    return fd


def open_file(path: str) -> int:
    """Read-only descriptor of the regular file path (see open_dir, open_regular)."""
    head, name = split(path)
    dir_fd = open_dir(head)
    try:
        return open_regular(name, dir_fd, path)
    finally:
        os.close(dir_fd)


def read_file(path: str, limit: int) -> bytes:
    """At most limit + 1 bytes of the regular file path (callers judge the size)."""
    with os.fdopen(open_file(path), "rb") as fh:
        return fh.read(limit + 1)


def create_temp(dir_fd: int, prefix: str, suffix: str, uid: int, gid: int,
                mode: int) -> tuple[str, int]:
    """A new empty file with a random name in dir_fd, owned uid:gid with mode:
    (name, read-write descriptor). Nobody can have prepared the name."""
    for _ in range(100):
        name = f"{prefix}{os.urandom(8).hex()}{suffix}"
        try:
            fd = os.open(name, _CREATE, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        try:
            os.fchown(fd, uid, gid)  # before fchmod: chown clears set-id bits
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            remove(name, dir_fd)
            raise
        return name, fd
    raise UnsafePath(f"no free temporary name {prefix}*{suffix}")


def remove(name: str, dir_fd: int) -> None:
    """Unlink name in dir_fd (the entry itself, never what a symlink points to)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def install(dir_fd: int, name: str, data: bytes, uid: int, gid: int, mode: int, *,
            replace: bool) -> None:
    """Write data to a synced random temporary file in dir_fd, owned uid:gid with mode,
    then rename it over name (replace) or link it to a name that must not exist yet.
    Either way an existing symlink at name is replaced or refused, never followed."""
    tmp, fd = create_temp(dir_fd, f".{name}.", ".agent", uid, gid, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        remove(tmp, dir_fd)


def make_dir(path: str, uid: int, gid: int, mode: int = 0o755) -> None:
    """Create the directory path when it is missing: the last level owned uid:gid,
    any missing level above it root's. An existing directory is left as it is."""
    try:
        os.close(open_dir(path))
        return
    except FileNotFoundError:
        pass
    head, name = split(path)
    make_dir(head, 0, 0, mode)
    dir_fd = open_dir(head)
    try:
        try:
            os.mkdir(name, mode, dir_fd=dir_fd)
        except FileExistsError:
            os.close(open_dir(path))  # made meanwhile: fine when a real directory
            return
        try:
            fd = os.open(name, _DIR, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{path}: replaced while it was being created") from None
            raise
    finally:
        os.close(dir_fd)
    try:
        # the directory just made is empty and root's; anything else was swapped in
        if os.fstat(fd).st_uid != 0 or os.listdir(fd):
            raise UnsafePath(f"{path}: replaced while it was being created")
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
