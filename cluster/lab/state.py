"""The per-run state file: what a lab run created, so exactly that gets removed.

Every run registers ``REGISTRY/<run_id>.json`` (even when its data lives in
another base dir) naming its owner (PID + kernel start time), its namespaces
(with inodes), its namespace holders (PID + start time), its host-visible mounts
and its directory. ``teardown`` removes what a record lists and nothing else;
``cleanup_stale`` does that for every run whose owner is gone. A PID is only
ever signalled when its start time still matches the record, so a recycled PID
is never hit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from pacestack import proc

from . import netns

REGISTRY = Path(os.environ.get("PACESTACK_LAB_REGISTRY", "/run/pacestack-lab"))
MARKER = ".pacestack-lab-run"


@contextlib.contextmanager
def registry_lock(registry: Path = REGISTRY, name: str = ".lock") -> Iterator[None]:
    """Serialises run creation and stale cleanup between processes on this machine
    (another ``name``: another lock in the same registry)."""
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / name, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def state_path(run_id: str, registry: Path = REGISTRY) -> Path:
    return registry / f"{run_id}.json"


def save(record: dict, registry: Path = REGISTRY) -> None:
    path = state_path(record["run_id"], registry)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def load_all(registry: Path = REGISTRY) -> list[dict]:
    records = []
    if not registry.is_dir():
        return records
    for path in sorted(registry.glob("*.json")):
        try:
            with open(path, encoding="utf-8") as fh:
                records.append(json.load(fh))
        except (OSError, ValueError):
            continue
    return records


def pid_record(pid: int) -> list[int]:
    return [pid, proc.start_time(pid) or 0]


def same_process(rec: list[int] | None) -> bool:
    """True if the recorded [pid, start_time] is still that very process."""
    if not rec:
        return False
    pid, started = rec
    return proc.is_alive(pid) and proc.start_time(pid) == started


def owner_alive(record: dict) -> bool:
    """Is the run still wanted? A run belongs to its owner process, unless it was
    detached (kept, as ``pacestack lab up`` does): that one lives until destroyed
    or until its namespaces are gone (the machine rebooted)."""
    if record.get("kept"):
        return any(ino and (netns.NETNS_DIR / name).exists()
                   and netns.netns_inode(name) == ino
                   for name, ino in record.get("netns", {}).items())
    return same_process(record.get("owner"))


def kill_host(holder: dict) -> list[int]:
    """SIGKILL a host's PID 1 (the whole PID namespace dies with it) and its unshare."""
    killed = []
    for key in ("reaper", "holder"):
        rec = holder.get(key)
        if same_process(rec):
            proc.signal_pid(rec[0], signal.SIGKILL)
            killed.append(rec[0])
    return killed


def teardown(record: dict, registry: Path = REGISTRY, timeout: float = 10.0) -> list[str]:
    """Remove everything a run record lists; returns problems (empty when clean)."""
    problems: list[str] = []
    victims: list[int] = []
    for holder in record.get("holders", {}).values():
        victims += kill_host(holder)
    # Anything still inside our network namespaces was started through this run
    # (a popen whose PID namespace was not ours cannot exist, but be thorough).
    inodes = {ino for name, ino in record.get("netns", {}).items()
              if (netns.NETNS_DIR / name).exists() and netns.netns_inode(name) == ino}
    for pid in netns.pids_in_namespaces("net", inodes) if inodes else []:
        proc.signal_pid(pid, signal.SIGKILL)
        victims.append(pid)
    for pid in victims:
        proc.wait_for(lambda p=pid: not proc.is_alive(p), timeout)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if proc.is_alive(pid):
            problems.append(f"process {pid} did not end")
    for name, ino in record.get("netns", {}).items():
        path = netns.NETNS_DIR / name
        # ino None: the owner died between `ip netns add` and recording the inode;
        # the name carries the run's random id, so it is still this run's.
        if path.exists() and ino in (None, os.stat(path).st_ino):
            try:
                netns.netns_delete(name)
            except netns.LabError as exc:
                problems.append(str(exc))
    run_dir = Path(record.get("dir", ""))
    marker = run_dir / MARKER
    if record.get("dir") and marker.is_file() and \
            marker.read_text(encoding="utf-8").strip() == record["run_id"]:
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_dir.exists():
            problems.append(f"could not remove {run_dir}")
    if not problems:
        with contextlib.suppress(FileNotFoundError):
            state_path(record["run_id"], registry).unlink()
    return problems


def cleanup_stale(registry: Path = REGISTRY) -> list[str]:
    """Tear down every registered run whose owner process is gone; returns their run ids."""
    cleaned = []
    with registry_lock(registry):
        for record in load_all(registry):
            if owner_alive(record):
                continue
            teardown(record, registry)
            cleaned.append(record["run_id"])
    return cleaned
