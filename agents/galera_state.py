"""Galera's on-disk state: grastate.dat and the ``--wsrep-recover`` log.

A node's last committed position decides which node may bootstrap the cluster,
so these parsers never guess: anything that is not exactly what Galera writes
raises ``StateError`` naming the file and the line, and the agent fails that node
instead of ranking it on a made-up number. Standard library only (monitor path).
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

from pacestack.agents import galera_files

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SEQNO = re.compile(r"-1|0|[1-9][0-9]{0,18}")
# grastate.dat is ~150 bytes; anything far larger is not Galera's file
MAX_GRASTATE_BYTES = 4096
_RECOVERED = re.compile(r"WSREP: Recovered position:\s*(\S+)")

# "standalone": databases written without Galera (zero UUID, but not nothing to lose)
SOURCES = ("grastate", "recovered", "running", "empty", "standalone")


class StateError(ValueError):
    """Galera state that cannot be trusted; the message is one line naming why."""


# namedtuples, not dataclasses: the monitor imports this, and dataclasses pulls in
# inspect (tens of ms per monitor on a busy controller)
class Position(namedtuple("Position", "uuid seqno source", defaults=("grastate",))):
    """A node's last committed position, and where the agent learned it."""

    __slots__ = ()

    @property
    def empty(self) -> bool:
        """Nothing to lose: no Galera history and no databases of its own (a new,
        wiped or half-copied datadir, or only what mariadb-install-db creates)."""
        return self.uuid == ZERO_UUID and self.source != "standalone"

    @property
    def standalone(self) -> bool:
        """Databases written without Galera: data whose history Galera cannot place."""
        return self.source == "standalone"

    def __str__(self) -> str:
        return f"{self.uuid}:{self.seqno}"


class GraState(namedtuple("GraState", "version uuid seqno safe_to_bootstrap")):
    __slots__ = ()


def is_uuid(value: str) -> bool:
    return bool(_UUID.fullmatch(value))


def _uuid(value: str, where: str) -> str:
    if not _UUID.fullmatch(value):
        raise StateError(f"{where}: uuid {value[:60]!r} is not a UUID")
    return value


def _seqno(value: str, where: str) -> int:
    if not _SEQNO.fullmatch(value):
        raise StateError(f"{where}: seqno {value[:60]!r} is not an integer >= -1")
    number = int(value)
    if number >= 2**63:
        raise StateError(f"{where}: seqno {value[:60]!r} out of range")
    return number


def parse_position(text: str, where: str = "position", source: str = "recovered") -> Position:
    """``UUID:SEQNO`` exactly (as in --wsrep_start_position and the recover log)."""
    uuid, sep, seqno = text.strip().partition(":")
    if not sep:
        raise StateError(f"{where}: {text[:80]!r} is not UUID:SEQNO")
    return Position(_uuid(uuid, where), _seqno(seqno, where), source)


def parse_grastate(text: str, where: str = "grastate.dat") -> GraState:
    """Parse grastate.dat strictly: uuid and seqno must be present exactly once."""
    if "\0" in text:
        raise StateError(f"{where}: contains NUL bytes")
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise StateError(f"{where} line {number}: {raw[:60]!r} is not 'key: value'")
        if key in values:
            raise StateError(f"{where} line {number}: {key} given twice")
        values[key] = value
    for key in ("uuid", "seqno"):
        if key not in values:
            raise StateError(f"{where}: no {key} line")
    safe = values.get("safe_to_bootstrap", "0")  # older Galera did not write it
    if safe not in ("0", "1"):
        raise StateError(f"{where}: safe_to_bootstrap {safe[:20]!r} is not 0 or 1")
    return GraState(
        version=values.get("version", ""),
        uuid=_uuid(values["uuid"], where),
        seqno=_seqno(values["seqno"], where),
        safe_to_bootstrap=safe == "1",
    )


def read_grastate(path: str) -> GraState | None:
    """None when the file does not exist (a node with no Galera state yet)."""
    loaded = _load(path)
    return None if loaded is None else parse_grastate(loaded[0], path)


def _load(path: str) -> tuple[str, os.stat_result] | None:
    """The text of grastate.dat and the owner and mode of the very file read; None
    when it does not exist. The datadir is mysql's: a symlink, FIFO or device
    planted there is refused, never followed or echoed."""
    try:
        fd = galera_files.open_file(path)
    except FileNotFoundError:
        return None
    except galera_files.UnsafePath as exc:
        raise StateError(str(exc)) from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        data = fh.read(MAX_GRASTATE_BYTES + 1)
    if len(data) > MAX_GRASTATE_BYTES:
        raise StateError(f"{path}: larger than {MAX_GRASTATE_BYTES} bytes")
    try:
        return data.decode("ascii"), st
    except UnicodeDecodeError:
        raise StateError(f"{path}: not ASCII text") from None


def _load_existing(path: str) -> tuple[str, os.stat_result]:
    loaded = _load(path)
    if loaded is None:
        raise StateError(f"{path}: does not exist")
    return loaded


def parse_recover_log(text: str, where: str = "wsrep-recover log") -> Position:
    """The one ``WSREP: Recovered position: UUID:SEQNO`` of a --wsrep-recover run.

    None, two different ones, or a malformed one is an error: a wrong seqno here
    could make the agent bootstrap a node that is behind.
    """
    found = _RECOVERED.findall(text)
    if not found:
        errors = [ln.strip() for ln in text.splitlines() if "[ERROR]" in ln]
        hint = f" (last error: {errors[-1][:160]})" if errors else ""
        raise StateError(f"{where}: no 'Recovered position' line{hint}")
    if len(set(found)) > 1:
        raise StateError(f"{where}: {len(set(found))} different recovered positions")
    return parse_position(found[0], where, source="recovered")


def set_safe_to_bootstrap(path: str) -> None:
    """Write ``safe_to_bootstrap: 1``, keeping every other line (atomic rename).

    Called only by the bootstrap rule, after it proved this node most advanced.
    """
    text, st = _load_existing(path)
    parse_grastate(text, path)
    lines = [ln for ln in text.splitlines() if not ln.startswith("safe_to_bootstrap:")]
    _rewrite(path, "\n".join([*lines, "safe_to_bootstrap: 1"]) + "\n", st)


def lacks_uuid(state: GraState) -> bool:
    """What Galera leaves after an SST join until it writes the cluster UUID back."""
    return state.uuid == ZERO_UUID and state.seqno == -1


def restore_uuid(path: str, uuid: str) -> None:
    """Put the cluster UUID back into a grastate.dat that has the zero UUID.

    Galera leaves the zero UUID there after an SST join until it writes the real
    one back; a crash in between leaves InnoDB's recovered position as the only
    record, and Galera discards a start position whose UUID its file lacks.
    Refuses any other file: a real UUID is a history this must never replace.
    """
    text, st = _load_existing(path)
    state = parse_grastate(text, path)
    if not lacks_uuid(state):
        raise StateError(f"{path}: holds {state.uuid}:{state.seqno}, not the zero UUID")
    _uuid(uuid, "recovered UUID")
    lines = [f"uuid:    {uuid}" if ln.startswith("uuid:") else ln for ln in text.splitlines()]
    _rewrite(path, "\n".join(lines) + "\n", st)


def _rewrite(path: str, text: str, st: os.stat_result) -> None:
    """Replace the file that was read (st), keeping its owner and mode (mariadbd,
    running as mysql, rewrites it later)."""
    _install(path, text, st.st_uid, st.st_gid, st.st_mode & 0o7777, replace=True)


def write_grastate(path: str, position: Position, uid: int, gid: int, *,
                   safe_to_bootstrap: bool) -> None:
    """A grastate.dat for a recovered position when the file itself was lost, so the
    node's history is matched to its gcache and its start position is honoured
    (IST both ways). safe_to_bootstrap only when the bootstrap rule asks."""
    text = (f"# GALERA saved state\nversion: 2.1\nuuid:    {position.uuid}\n"
            f"seqno:   -1\nsafe_to_bootstrap: {int(safe_to_bootstrap)}\n")
    _install(path, text, uid, gid, 0o660, replace=False)


def _install(path: str, text: str, uid: int, gid: int, mode: int, *, replace: bool) -> None:
    """Write text to a synced temporary file beside path, then rename it over path
    (replace) or link it to a path that must not exist yet. The datadir is mysql's:
    every step works on descriptors of the datadir and the new file (galera_files)."""
    head, name = galera_files.split(path)
    dir_fd = galera_files.open_dir(head)
    try:
        galera_files.install(dir_fd, name, text.encode("ascii"), uid, gid, mode,
                             replace=replace)
    finally:
        os.close(dir_fd)


def format_report(position: Position) -> str:
    """The node attribute value a member publishes: ``UUID:SEQNO:SOURCE``."""
    return f"{position.uuid}:{position.seqno}:{position.source}"


def parse_report(text: str, where: str = "position attribute") -> Position:
    uuid_seqno, sep, source = text.strip().rpartition(":")
    if not sep or source not in SOURCES:
        raise StateError(f"{where}: {text[:80]!r} is not UUID:SEQNO:SOURCE")
    return parse_position(uuid_seqno, where, source)


def format_recorded(position: Position, at: float) -> str:
    """The persistent (lifetime=forever) "last committed" record of a member:
    ``UUID:SEQNO:EPOCH``. It survives a full crash, so the seqno a lost member
    last reported is still known when it never comes back."""
    return f"{position.uuid}:{position.seqno}:{int(at)}"


def parse_recorded(text: str, where: str = "last-committed attribute") -> tuple[Position, int]:
    """(Position with source "recorded", epoch seconds of the record)."""
    uuid_seqno, sep, at = text.strip().rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,12}", at):
        raise StateError(f"{where}: {text[:80]!r} is not UUID:SEQNO:EPOCH")
    return parse_position(uuid_seqno, where, source="recorded"), int(at)
