"""The lab's cloud seen as a user sees it: the real APIs through the VIP, from the
arbitrator (outside the pair), by cloud_probe.py under the OpenStack venv."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from pacestack import proc
from pacestack.errors import PacestackError, RuntimeFailure

from . import controller

PROBE = str(Path(__file__).with_name("cloud_probe.py"))


def _env(lab) -> dict[str, str]:
    info = lab.info
    if not info.whole_profile or not info.admin_password_file:
        raise PacestackError("this lab runs no whole controller (lab up --whole-profile)")
    import configparser

    password = Path(info.admin_password_file).read_text(encoding="utf-8").strip()
    nova = configparser.ConfigParser(interpolation=None)
    nova.read(Path(info.config_dir or "") / "nova.conf")
    # the services' URL names every member; the probe's queue is reached through the VIP
    # (kombu separates alternates with ";", not ","): the first member's credentials
    userinfo = nova.get("DEFAULT", "transport_url").split("://", 1)[1].split(",")[0]
    userinfo = userinfo.rpartition("@")[0]
    # the environment, never argv: the admin password, the broker's
    return {"PROBE_TRANSPORT_URL": f"rabbit://{userinfo}@{info.vip_name}:5672/",
            "OS_AUTH_URL": f"http://{info.vip_name}:5000/v3", "OS_USERNAME": controller.ADMIN,
            "OS_PASSWORD": password, "OS_PROJECT_NAME": controller.ADMIN,
            "PROBE_COMPUTE": info.compute or info.arbitrator}


def _python(lab) -> str:
    return str(Path(lab.info.venv) / "bin" / "python")


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeFailure(f"cloud probe printed no result: {text.strip()[-300:]}")


def _run(lab, args: list[str], timeout: float, what: str) -> dict:
    """cloud_probe.py ``args`` on the arbitrator; the JSON object it printed last.
    ``what`` names the call in the error."""
    res = lab.cluster.arbitrator.run([_python(lab), PROBE, *args], env=_env(lab),
                                     check=False, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeFailure(f"{what} failed: {(res.stderr or res.stdout)[-400:]}")
    return _last_json(res.stdout)


def sequence(lab, timeout: float = 300, clean: bool = True) -> dict:
    """Create a network and port, upload and list an image, boot a server on the lab
    compute, create a volume, attach it to the server and detach it, then delete what
    was made (``clean=False``: leave that to cleanup()); returns the probe's report
    (``ok``, per-step seconds, ``cleanup``)."""
    return _run(lab, ["sequence", *([] if clean else ["--keep"])], timeout, "cloud probe")


def cleanup(lab, timeout: float = 180) -> dict:
    """Delete what every sequence made; what was deleted and what is left."""
    return _run(lab, ["cleanup"], timeout, "cloud clean-up")


def inventory(lab) -> dict[str, int]:
    """How many servers, volumes, ports, subnets, networks and images the cloud
    holds (through the APIs): the same before and after a sequence."""
    return _run(lab, ["inventory"], 120, "cloud inventory")


def agents(lab) -> list[dict]:
    """Neutron's agents through its API (type, host, alive), as `openstack network
    agent list` shows them."""
    return _run(lab, ["agents"], 120, "agent list")["agents"]


def start_watch(lab, out: Path, timeout: float = 60) -> int:
    """cloud_probe.py ``watch`` on the arbitrator: every API's answers as JSON lines
    in ``out`` until SIGTERM; returns its host PID once its token is taken."""
    pid = lab.cluster.arbitrator.start_daemon([_python(lab), PROBE, "watch", str(out)],
                                              "cloud-watch.out", env=_env(lab))

    def started() -> bool:
        return out.exists() and '"kind": "started"' in out.read_text(encoding="utf-8")

    if not proc.wait_for(started, timeout, interval=0.2):
        proc.terminate(pid, timeout=10)
        raise RuntimeFailure(f"the cloud API watch did not start in {timeout:.0f}s "
                             f"(see {lab.cluster.arbitrator.root.boot_dir / 'cloud-watch.out'})")
    return pid


def queue(lab, put: int = 0, name: str | None = None, drop: bool = False) -> int | None:
    """Publish ``put`` messages to the probe's quorum queue through the VIP (0: only
    look; drop: look, then delete the queue); returns what the cluster holds there
    (None: no such queue)."""
    action = ["mq-put", str(put)] if put else ["mq-drop" if drop else "mq-count"]
    return _run(lab, [*action, *([name] if name else [])], 60, "queue probe")["messages"]


class ApiWatch:
    """Polls every API from before a fault until each answers an authenticated read."""

    def __init__(self, lab, limit: float = 120):
        self.proc = lab.cluster.arbitrator.popen(
            [_python(lab), PROBE, "apis", str(limit)], env=_env(lab), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith('{"ready"'):
            self.proc.kill()
            raise RuntimeFailure(f"API probe did not start: {line.strip()} "
                                 f"{self.proc.stderr.read()[-400:]}")
        self.last_error: dict[str, str] = {}  # of the APIs that never answered

    def result(self, since: float, timeout: float = 200) -> dict[str, float | None]:
        """Seconds from ``since`` (time.time() of the fault) until each API answered."""
        out, err = self.proc.communicate(timeout=timeout)
        data = _last_json(out or err)
        self.last_error = {n: e for n, e in data.get("last_error", {}).items()
                           if data["answered"].get(n) is None}
        return {name: (round(at - since, 1) if at is not None else None)
                for name, at in data["answered"].items()}


def wait_answering(lab, timeout: float = 120) -> dict[str, float | None]:
    """Until every API answers (a fresh token each try)."""
    t0 = time.time()
    watch = ApiWatch(lab, timeout)
    return watch.result(t0, timeout + 30)
