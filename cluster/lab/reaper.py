"""PID 1 of a lab host: builds the host's private mounts, then reaps orphans.

Run by ``unshare --pid --fork --mount-proc`` inside the host's network namespace,
as a plain script (``python -I -S reaper.py SPEC``) so that it imports nothing but
the standard library and starts in a few milliseconds. SPEC is a JSON file::

    {"hostname": "controller01",
     "binds": [["/run/pacestack-lab/ID/controller01/run", "/run"], ...],
     "tmpfs": ["/dev/shm"], "sysfs": true,
     "boot_id": "/run/pacestack-lab/ID/controller01/lab/boot_id"}

Each boot is a machine's boot to what runs inside: its own clocks (a time
namespace whose boot and monotonic clocks start at zero, so /proc/uptime is the
time since this boot) and its own boot_id (a new random one, written to the
"boot_id" file and bound over /proc/sys/kernel/random/boot_id). Without them
every node would share the host kernel's boot, and no program could tell that
a process it recorded died with the node's last "power cut".

Once the mounts are in place it writes ``ready`` to stdout and closes it, so the
harness knows the host is "booted". Killing this process with SIGKILL kills
every process of the PID namespace at once: that is how the lab crashes a node.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

CLONE_NEWTIME = 0x80  # linux/sched.h; os.unshare is Python 3.12+
# argv marker of the reaper re-executed inside its new time namespace
IN_BOOT_CLOCK = "--in-boot-clock"


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {res.stderr.strip()}")


def new_clocks(argv: list[str]) -> None:
    """Re-execute this reaper in a time namespace whose clocks read zero now (a
    process enters the namespace it unshared at its next exec). The offsets are
    taken just before they are set, so the node's uptime never overstates the time
    since this boot began: what died before it died at least that long ago."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWTIME) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWTIME) failed")
    lines = []
    for name, clock in (("monotonic", time.CLOCK_MONOTONIC),
                        ("boottime", time.CLOCK_BOOTTIME)):
        secs, nsecs = divmod(-time.clock_gettime_ns(clock), 10**9)
        lines.append(f"{name} {secs} {nsecs}\n")
    with open("/proc/self/timens_offsets", "w", encoding="ascii") as fh:
        fh.write("".join(lines))
    os.execv(sys.executable, [sys.executable, "-I", "-S", os.path.abspath(__file__),
                              argv[1], IN_BOOT_CLOCK])


def new_boot_id(path: str) -> None:
    """A boot_id of this boot's own, read-only as the kernel's is."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write(f"{uuid.uuid4()}\n")
    target = "/proc/sys/kernel/random/boot_id"
    _mount("--bind", path, target)
    _mount("-o", "remount,bind,ro", target)


def build(spec: dict) -> None:
    # first: the file lies below the host's /run, which a bind below may hide
    if spec.get("boot_id"):
        new_boot_id(spec["boot_id"])
    # The tmpfs and sysfs come first so a bind below /dev/shm or /sys would still work.
    for target in spec.get("tmpfs", []):
        _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", target)
    if spec.get("sysfs"):
        # /sys/class/net must show this network namespace's links, as `ip netns exec` does.
        _mount("-t", "sysfs", "-o", "nosuid,nodev,noexec", "sysfs", "/sys")
    binds = spec.get("binds", [])
    sources = [src for src, _ in binds]
    # A bind over /run would hide sources below /run (the lab's own directories):
    # targets that cover some source go last.
    binds = sorted(binds, key=lambda b: any(s.startswith(b[1].rstrip("/") + "/")
                                            for s in sources))
    for source, target in binds:
        _mount("--bind", source, target)
    socket.sethostname(spec["hostname"])


def reap_forever() -> None:
    # Orphans of the namespace (daemons started through nsenter + setsid -f) are
    # re-parented to us; collect them so they never linger as zombies.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    while True:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        signal.sigtimedwait({signal.SIGCHLD}, 5.0)


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    try:
        if spec.get("boot_clock") and IN_BOOT_CLOCK not in argv[2:]:
            new_clocks(argv)  # does not return
        build(spec)
    except OSError as exc:
        print(f"failed: {exc}", flush=True)
        return 1
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    # PID 1 of a namespace ignores signals it has no handler for (except SIGKILL
    # from outside), so SIGTERM from the harness needs an explicit exit.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    reap_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
