"""Network namespaces, the lab's switch, and the per-host namespace holders.

Everything here is created inside namespaces this run owns: the veth pairs are
created directly in two namespaces (never on the host), addresses live only
inside them, and the "switch" is a bridge in a namespace of its own, so taking
one port down partitions one host from the others.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from pacestack import proc

NETNS_DIR = Path("/run/netns")
REAPER = Path(__file__).with_name("reaper.py")


class LabError(RuntimeError):
    """A lab operation failed; the message says which host and what."""


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def netns_add(name: str) -> int:
    """Create a named network namespace; returns its inode."""
    _ip("netns", "add", name)
    return netns_inode(name)


def loopback_up(name: str) -> None:
    _ip("-n", name, "link", "set", "lo", "up")


def netns_delete(name: str) -> None:
    if (NETNS_DIR / name).exists():
        _ip("netns", "delete", name)


def netns_inode(name: str) -> int:
    return os.stat(NETNS_DIR / name).st_ino


def netns_list() -> list[str]:
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def _ip_batch(netns: str, commands: list[str]) -> None:
    """Several ip commands in one process (each ip call costs a few ms of CPU)."""
    res = subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(commands) + "\n",
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"ip -n {netns}: {res.stderr.strip()}")


def build_lan(switch_ns: str, hosts: list[tuple[str, str, str]], bridge: str = "br0",
              ifname: str = "eth0") -> None:
    """A bridge in switch_ns and, for each (port, host_ns, address/prefix), a veth from
    a switch port into host_ns (named ifname there) carrying the address."""
    # No STP: ports forward as soon as they are up (no 15 s listening delay).
    switch = [f"link add {bridge} type bridge stp_state 0", f"link set {bridge} up"]
    for port, host_ns, _ in hosts:
        switch += [f"link add {port} type veth peer name {ifname} netns {host_ns}",
                   f"link set {port} master {bridge}", f"link set {port} up"]
    _ip_batch(switch_ns, switch)
    for _, host_ns, address in hosts:
        _ip_batch(host_ns, [f"addr add {address} dev {ifname}", f"link set {ifname} up"])


def set_port(switch_ns: str, port: str, up: bool) -> None:
    # Like pulling the cable at the switch: the host keeps its address, loses carrier.
    _ip("-n", switch_ns, "link", "set", port, "up" if up else "down")


def ns_inode(pid: int, kind: str) -> int | None:
    """Inode of /proc/PID/ns/KIND ('net', 'pid', 'mnt'), None if the process is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def pids_in_namespaces(kind: str, inodes: set[int]) -> list[int]:
    """Every live process whose KIND namespace is one of inodes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ns_inode(int(entry), kind) in inodes and proc.is_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def nsenter_argv(pid: int, workdir: str = "/") -> list[str]:
    """argv prefix that runs a program inside the host held by PID
    (net+mnt+uts+ipc+pid+time: the boot's own clocks), in workdir as the host's
    mount namespace sees it."""
    return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "-i", "-p", "-T",
            f"--wdns={workdir}", "--"]


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        pass  # a kernel without CONFIG_PROC_CHILDREN: look at every parent PID
    except ProcessLookupError:
        return []
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                data = fh.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(data[data.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry))
    return found


def boot_holder(netns: str, spec_path: Path, log_path: Path,
                timeout: float = 15.0) -> tuple[subprocess.Popen, int]:
    """Start a host's mount+UTS+IPC+PID namespaces inside netns; return (unshare, reaper PID).

    The reaper (PID 1 inside) does the bind mounts and reports "ready". Its own
    session keeps a terminal's Ctrl-C away from the lab.
    """
    argv = ["nsenter", f"--net={NETNS_DIR / netns}", "--",
            "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
            # slave: the host's umounts (ip netns delete of another run) still reach
            # us, so our copy of its mount never pins that namespace alive.
            "--propagation", "slave", "--",
            sys.executable, "-I", "-S", str(REAPER), str(spec_path)]
    with open(log_path, "ab") as log:
        holder = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=log, start_new_session=True, close_fds=True)
    assert holder.stdout is not None
    try:
        ready, _, _ = select.select([holder.stdout], [], [], timeout)
        line = holder.stdout.readline().decode(errors="replace").strip() if ready else ""
    finally:
        holder.stdout.close()
    reapers = child_pids(holder.pid)
    if line != "ready" or len(reapers) != 1:
        for pid in reapers:  # PID 1 of the half-built namespace: takes the rest with it
            proc.signal_pid(pid, signal.SIGKILL)
        proc.terminate(holder.pid, 2.0)
        answer = line or f"no answer in {timeout:.0f}s"
        raise LabError(f"namespace holder for {netns} did not start: {answer} (see {log_path})")
    return holder, reapers[0]
