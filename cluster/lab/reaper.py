"""PID 1 of a lab host: builds the host's private mounts, then reaps orphans.

Run by ``unshare --pid --fork --mount-proc`` inside the host's network namespace,
as a plain script (``python -I -S reaper.py SPEC``) so that it imports nothing but
the standard library and starts in a few milliseconds. SPEC is a JSON file::

    {"hostname": "controller01",
     "binds": [["/run/pacestack-lab/ID/controller01/run", "/run"], ...],
     "tmpfs": ["/dev/shm"], "sysfs": true}

Once the mounts are in place it writes ``ready`` to stdout and closes it, so the
harness knows the host is "booted". Killing this process with SIGKILL kills
every process of the PID namespace at once: that is how the lab crashes a node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys


def _mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], stdin=subprocess.DEVNULL, capture_output=True,
                         text=True)
    if res.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {res.stderr.strip()}")


def build(spec: dict) -> None:
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
