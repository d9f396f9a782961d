"""`pacestack cluster drill --target ssh` against the lab, as against real controllers.

Each lab node runs an sshd of this test's own (own host key, port, config and
authorized_keys; a client key generated per run; nothing of the system's ssh
touched; ended by PID). The drill runs as the console script inside the
arbitrator host -- the operator's machine on the controllers' network -- and
reaches the nodes only through ssh: a crash is the node's fencing device
(fence_dummy; this test plays the hardware behind it: a node whose power file
reads off is powered off, one that reads on again boots and starts sshd and its
cluster stack, as an enabled node would), standby is pcs, a killed service is
kill -9 of its pid file. The writer and probes run in the arbitrator against the
VIP's name. Asserted as in test_drill.py: no acknowledged write lost, never two
VIPs or two cinder-volumes, everything recovered, the cluster restored.

Time budget: ~5-6 min (lab ~1 min when the machine is idle, four scenarios
~25-90 s each, refusals a few seconds).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from pacestack.cluster.lab import stack

from pacestack import proc

from .test_drill import drill_lab  # noqa: F401 - the module-scoped lab fixture

PACESTACK = str(Path(sys.executable).with_name("pacestack"))
SSHD = "/usr/sbin/sshd"


class LabSshd:
    """sshd inside every lab node (and its "hardware": the fence_dummy power files)."""

    def __init__(self, lab: stack.Lab):
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="pacestack-drill-sshd-"))
        self.port = random.randint(20000, 60000)  # each node has its own network namespace
        self.home = self.dir / "root-home"
        self.home.mkdir(mode=0o700)
        self.identity = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self.pids: dict[str, int] = {}
        self.power_events: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keygen(self.identity, "pacestack-drill-test")
        authorized = self.dir / "authorized_keys"
        authorized.write_text(self.identity.with_suffix(".pub").read_text(), encoding="utf-8")
        os.chmod(authorized, 0o600)
        known = []
        for node in lab.cluster.nodes + [lab.cluster.arbitrator]:
            key = self.dir / f"host_{node.name}"
            self._keygen(key, node.name)
            kind, blob = key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[{node.name}]:{self.port} {kind} {blob}\n")
            (self.dir / f"sshd_{node.name}.conf").write_text(
                f"Port {self.port}\nHostKey {key}\nAuthorizedKeysFile {authorized}\n"
                "PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                "AllowTcpForwarding no\nX11Forwarding no\n", encoding="utf-8")
        self.known_hosts.write_text("".join(known), encoding="utf-8")

    @staticmethod
    def _keygen(path: Path, comment: str) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True, capture_output=True, timeout=30)

    def start(self, name: str) -> None:
        node = self.lab.cluster.node(name)
        node.run(["mkdir", "-p", "-m", "0755", "/run/sshd"])  # a fresh /run after each boot
        # the node's own (empty) root home, in its own mount namespace: the host's
        # /root/.bashrc, which bash sources for every ssh command, is not the node's
        # (here it runs pyenv init: up to a minute per command on a busy machine)
        node.run(["sh", "-c", f"mountpoint -q /root || mount --bind {self.home} /root"])
        self.pids[name] = node.start_daemon(
            [SSHD, "-D", "-e", "-f", str(self.dir / f"sshd_{name}.conf")], "sshd.out")

    def start_all(self) -> None:
        for name in self.lab.cluster.node_names + [self.lab.info.arbitrator]:
            self.start(name)
        self._thread = threading.Thread(target=self._power, daemon=True)
        self._thread.start()

    def _power(self) -> None:
        """The hardware behind fence_dummy: off powers the node off at once; on boots
        it (sshd and the cluster stack start, as on an enabled node)."""
        power = Path(self.lab.info.power_dir)
        while not self._stop.is_set():
            for node in self.lab.cluster.nodes:
                try:
                    if stack.powered_off(power, node.name) and node.booted:
                        self.lab.crash(node.name)
                        self.power_events.append(("off", node.name))
                    elif not stack.powered_off(power, node.name) and not node.booted:
                        self.lab.cluster.restart(node.name, wait=False)
                        self.start(node.name)
                        self.power_events.append(("on", node.name))
                except Exception as exc:  # noqa: BLE001 - the test reports it
                    self.errors.append(f"{node.name}: {exc}")
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for pid in self.pids.values():
            if proc.is_alive(pid):
                proc.terminate(pid, timeout=5)
        for node in self.lab.cluster.nodes + [self.lab.cluster.arbitrator]:
            if node.booted:
                node.run(["sh", "-c", "! mountpoint -q /root || umount /root"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def ssh_args(self) -> list[str]:
        return ["--ssh-identity", str(self.identity), "--ssh-known-hosts", str(self.known_hosts),
                "--ssh-port", str(self.port), "--ssh-user", "root"]


@pytest.fixture(scope="module")
def lab_sshd(drill_lab):  # noqa: F811 - the imported fixture
    sshd = LabSshd(drill_lab)
    try:
        sshd.start_all()
        yield sshd
    finally:
        sshd.stop()


@pytest.fixture(scope="module")
def writer_defaults(drill_lab, lab_sshd):  # noqa: F811
    path = lab_sshd.dir / "writer.cnf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"[client]\nuser = pacestack_lab\npassword = {drill_lab.db_password()}\n")
    return path


def _drill_in_arbitrator(lab: stack.Lab, args: list[str], timeout: float = 600
                         ) -> subprocess.CompletedProcess:
    return lab.cluster.arbitrator.run([PACESTACK, "cluster", "drill", *args], check=False,
                                      timeout=timeout)


def test_ssh_target_scenarios(drill_lab, lab_sshd, writer_defaults, tmp_path):  # noqa: F811
    before = drill_lab.placement()
    nodes = ",".join(drill_lab.cluster.node_names)
    res = _drill_in_arbitrator(drill_lab, [
        "--target", "ssh", "--nodes", nodes, *lab_sshd.ssh_args(),
        "--db-defaults-file", str(writer_defaults), "--vip-name", drill_lab.info.vip_name,
        "--scenarios", "node-crash,standby,kill-service", "--work-dir", str(tmp_path),
        "--yes-i-mean-it", "--format", "json"])
    assert not lab_sshd.errors, lab_sshd.errors
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    report = json.loads(res.stdout)
    assert report["target"] == "ssh" and report["ok"] is True
    password = drill_lab.db_password()
    assert password not in res.stdout and password not in res.stderr
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert list(by_name) == ["node-crash", "standby", "kill-service"]
    for s in by_name.values():
        assert s["error"] is None, (s["name"], s["error"])
        assert s["writes_acked"] > 0, f"{s['name']}: the writer never committed"
        assert s["lost_writes"] == [], (s["name"], s["lost_writes"][:20])
        assert s["max_instances"] == {"vip": 1, "cinder-volume": 1}, (s["name"],
                                                                       s["max_instances"])
        for field in ("detection_s", "vip_s", "galera_s", "services_s", "rejoin_s"):
            assert s[field] is not None and 0 <= s[field] < 90, (s["name"], field, s[field])
    # the crash went through the victim's fencing device: powered off, then on
    victim = by_name["node-crash"]["victim"]
    assert ("off", victim) in lab_sshd.power_events, lab_sshd.power_events
    assert ("on", victim) in lab_sshd.power_events, lab_sshd.power_events
    assert "powered off by its fencing device" in res.stderr
    assert "put in standby (pcs node standby)" in res.stderr
    assert "keystone on" in res.stderr and "killed -9 (pid" in res.stderr
    # restored: every node back, everything running everywhere, no standby left
    after = drill_lab.placement()
    assert stack.all_running(drill_lab, after), after
    assert sorted(after) == sorted(before)
    standby = drill_lab.cluster.node(victim).run(
        ["crm_attribute", "--node", by_name["standby"]["victim"], "--name", "standby",
         "--query", "--lifetime", "forever", "--quiet"], check=False)
    assert standby.stdout.strip() in ("", "off"), standby.stdout
    # the shared ssh connections are gone with the drill
    leftovers = [p for p in Path(tempfile.gettempdir()).glob("pacestack-drill-ssh-*")]
    assert not [p for p in leftovers if any(p.iterdir())], leftovers


def test_ssh_target_refusals(drill_lab, lab_sshd, writer_defaults, tmp_path):  # noqa: F811
    nodes = ",".join(drill_lab.cluster.node_names)
    base = ["--target", "ssh", "--nodes", nodes, *lab_sshd.ssh_args(),
            "--scenarios", "standby"]

    def drill(*extra: str) -> subprocess.CompletedProcess:
        return _drill_in_arbitrator(drill_lab, [*base, *extra], timeout=120)

    res = drill("--yes-i-mean-it")
    assert res.returncode == 2
    assert res.stderr.strip() == ("pacestack: error: --target ssh needs --db-defaults-file "
                                  "FILE (a 0600 MySQL option file with the writer's [client] "
                                  "user and password)")
    loose = tmp_path / "loose.cnf"
    loose.write_text(writer_defaults.read_text(), encoding="utf-8")
    os.chmod(loose, 0o644)
    res = drill("--db-defaults-file", str(loose), "--yes-i-mean-it")
    assert res.returncode == 2
    assert res.stderr.strip() == (f"pacestack: error: --db-defaults-file {loose}: mode 0644; "
                                  "it holds a password: make it 0600")
    res = drill("--db-defaults-file", str(writer_defaults))  # stdin is no terminal
    assert res.returncode == 2
    assert "disrupts a live cluster" in res.stderr and "--yes-i-mean-it" in res.stderr
    res = _drill_in_arbitrator(drill_lab, ["--target", "ssh", "--db-defaults-file",
                                           str(writer_defaults), "--yes-i-mean-it"])
    assert res.returncode == 2 and "--target ssh needs --nodes" in res.stderr
    res = _drill_in_arbitrator(drill_lab, ["--target", "ssh", "--nodes",
                                           f"{drill_lab.cluster.node_names[0]},arbitrator",
                                           *lab_sshd.ssh_args(), "--db-defaults-file",
                                           str(writer_defaults), "--yes-i-mean-it"], timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == ("pacestack: error: --nodes: arbitrator is not a node of this "
                                  "cluster (nodes: controller01, controller02)")
    res = _drill_in_arbitrator(drill_lab, ["--target", "ssh", "--nodes",
                                           f"{drill_lab.cluster.node_names[0]},nosuchhost",
                                           *lab_sshd.ssh_args(), "--db-defaults-file",
                                           str(writer_defaults), "--yes-i-mean-it"], timeout=120)
    assert res.returncode == 1
    assert res.stderr.startswith("pacestack: error: ssh root@nosuchhost: no answer"), res.stderr
    # nothing was done: no standby, nothing failed, everything still running
    assert stack.all_running(drill_lab, drill_lab.placement())


def test_ssh_target_partition_with_probe_from_arbitrator(drill_lab, lab_sshd,  # noqa: F811
                                                         writer_defaults, tmp_path):
    """corosync's ring dropped by nft on the last node: the cluster fences it through
    its device; it boots again, the rules are gone. The writer runs --from the
    arbitrator over ssh (its events come back on ssh's stdout)."""
    before = drill_lab.placement()
    arb = drill_lab.info.arbitrator
    res = _drill_in_arbitrator(drill_lab, [
        "--target", "ssh", "--nodes", ",".join(drill_lab.cluster.node_names),
        *lab_sshd.ssh_args(), "--db-defaults-file", str(writer_defaults),
        "--vip-name", drill_lab.info.vip_name, "--from", arb, "--from-python", sys.executable,
        "--scenarios", "partition", "--work-dir", str(tmp_path), "--yes-i-mean-it",
        "--format", "json"])
    assert not lab_sshd.errors, lab_sshd.errors
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    (s,) = json.loads(res.stdout)["scenarios"]
    assert s["error"] is None and s["ok"] is True, s
    assert s["writes_acked"] > 0 and s["lost_writes"] == []
    assert s["max_instances"] == {"vip": 1, "cinder-volume": 1}, s["max_instances"]
    victim = s["victim"]
    assert ("off", victim) in lab_sshd.power_events, lab_sshd.power_events
    assert "dropped by nft table inet pacestack_drill" in res.stderr
    assert "booted again (it had been fenced)" in res.stderr
    ruleset = drill_lab.cluster.node(victim).run(["nft", "list", "ruleset"])
    assert "pacestack_drill" not in ruleset.stdout, ruleset.stdout
    after = drill_lab.placement()
    assert stack.all_running(drill_lab, after), after
    assert sorted(after) == sorted(before)
