"""How long a join after a crash waits for the peers to evict the dead incarnation.

The wait runs from the moment the agent first saw mariadbd dead with a saved view
(its monitor, stop or start), never from a moment that could be before the death:
a record of another incarnation, or none, means the whole evs.inactive_timeout.
An incarnation the promote recorded under an earlier kernel boot died before this
boot began. The live kill -9 races are in test_galera_two_node.py; this checks the
arithmetic on the agent's own files (a real datadir, the real config read by
my_print_defaults, a CIB file read and written by crm_attribute).

The wait ends early once every other Promoted member published (galera-departed)
that it saw that very incarnation leave its view; anything less keeps the wait.
"""

from __future__ import annotations

import os
import time

import pytest
from pacestack.agents import attributes, galera_promote, galera_records
from pacestack.agents.galera import GaleraAgent

from tests.fixtures.ocf import make_cib

DEAD = "5c1f2a9e-0000-11f1-8000-0a0b0c0d0e0f"
OTHER = "7d3e4b1a-0000-11f1-8000-0a0b0c0d0e0f"


@pytest.fixture
def agent(tmp_path):
    datadir = tmp_path / "data"
    datadir.mkdir()
    config = tmp_path / "my.cnf"
    config.write_text("[galera]\nwsrep_provider_options=\"gcache.size=32M;"
                      "evs.inactive_timeout=PT3S\"\n")
    environ = {"PATH": os.environ["PATH"],
               "OCF_RESOURCE_INSTANCE": "galera", "OCF_RESKEY_CRM_meta_on_node": "node1",
               "HA_RSCTMP": str(tmp_path / "rsctmp"), "OCF_RESKEY_config": str(config),
               "OCF_RESKEY_datadir": str(datadir), "OCF_RESKEY_pid": str(tmp_path / "none.pid"),
               "OCF_RESKEY_wsrep_cluster_address": "gcomm://127.0.0.1,127.0.0.2",
               "OCF_RESKEY_cluster_host_map": "node1:127.0.0.1;node2:127.0.0.2",
               "CIB_file": str(make_cib(tmp_path / "cib.xml", ["node1", "node2"]))}
    return GaleraAgent(environ, "promote"), datadir


def save_view(datadir, uuid: str) -> None:
    (datadir / "gvwstate.dat").write_text(f"my_uuid: {uuid}\n#vwbeg\nview_id: 3 {uuid} 5\n"
                                          "bootstrap: 0\n#vwend\n")


class SleepRecorder:
    """The promote module's clock, with sleep() recorded instead of slept (its
    monotonic clock moves by what was "slept" only). Only that module's: patching
    time.sleep itself also caught subprocess's polls of my_print_defaults on a busy
    machine."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.base = time.monotonic()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def monotonic(self) -> float:
        return self.base + sum(self.slept)

    def __getattr__(self, name: str):
        return getattr(time, name)


def waited(agent: GaleraAgent, old: str, monkeypatch) -> float:
    clock = SleepRecorder()
    monkeypatch.setattr(galera_promote, "time", clock)
    agent._await_eviction(agent.mysqld, old, time.monotonic() + 300)
    return sum(clock.slept)


def test_without_a_record_the_whole_inactive_timeout(agent, monkeypatch):
    a, _ = agent
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)


def test_the_wait_runs_from_when_the_death_was_first_seen(agent, monkeypatch):
    a, datadir = agent
    save_view(datadir, DEAD)
    a.note_death(a.mysqld)
    time.sleep(1.0)
    a.note_death(a.mysqld)  # a later sighting does not move the moment forward
    left = waited(a, DEAD, monkeypatch)
    assert 1.5 < left < 2.05, left


def test_a_record_of_another_incarnation_does_not_shorten_it(agent, monkeypatch):
    a, datadir = agent
    save_view(datadir, OTHER)
    a.note_death(a.mysqld)
    time.sleep(0.5)
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)


def test_a_new_mariadbd_forgets_the_sighting(agent, monkeypatch):
    """After a spawn the same saved view may outlive the next incarnation's death
    (it crashed before writing its own): only a sighting after the spawn counts."""
    a, datadir = agent
    save_view(datadir, DEAD)
    a.note_death(a.mysqld)
    a._forget_deaths()
    time.sleep(0.5)
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)


def test_no_saved_view_or_an_unreadable_one_records_nothing(agent, monkeypatch):
    a, datadir = agent
    a.note_death(a.mysqld)
    (datadir / "gvwstate.dat").symlink_to("/etc/hostname")
    a.note_death(a.mysqld)  # "?" names no incarnation
    time.sleep(0.3)
    assert waited(a, "?", monkeypatch) == pytest.approx(3.0)


def record_incarnation(a: GaleraAgent, uuid: str, boot: str) -> None:
    attributes.set("galera-incarnation", f"{uuid} {boot}", "node1", "forever", env=a.environ)


def test_an_incarnation_of_an_earlier_boot_needs_no_wait(agent, monkeypatch):
    a, _ = agent
    record_incarnation(a, DEAD, "0b0e0d0c-0000-4000-8000-000000000000")
    assert galera_records.boot_id() not in (None, "0b0e0d0c-0000-4000-8000-000000000000")
    assert waited(a, DEAD, monkeypatch) == 0.0


def test_an_incarnation_of_this_boot_or_another_uuid_waits(agent, monkeypatch):
    a, _ = agent
    record_incarnation(a, DEAD, galera_records.boot_id())
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)
    record_incarnation(a, OTHER, "0b0e0d0c-0000-4000-8000-000000000000")
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)


def test_the_promote_records_the_incarnation_it_runs(agent):
    a, _ = agent
    a._record_incarnation({"wsrep_gcomm_uuid": DEAD})
    got = attributes.get("galera-incarnation", "node1", "forever", env=a.environ)
    assert got == f"{DEAD} {galera_records.boot_id()}"


def peer_says(a: GaleraAgent, *, primary: bool, departed: str | None) -> None:
    """node2 as its agent leaves it in the CIB: Promoted or not, and the node UUIDs its
    monitor saw leave the view."""
    if primary:
        attributes.set("galera-primary", "1", "node2", env=a.environ)
    if departed is not None:
        attributes.set("galera-departed", departed, "node2", env=a.environ)


def test_a_promoted_peer_that_saw_it_leave_ends_the_wait(agent, monkeypatch):
    a, _ = agent
    peer_says(a, primary=True, departed=f"{OTHER} {DEAD}")
    assert waited(a, DEAD, monkeypatch) == 0.0


def test_a_peer_that_saw_another_leave_or_is_not_promoted_keeps_it(agent, monkeypatch):
    a, _ = agent
    peer_says(a, primary=False, departed=DEAD)  # a stopped peer's view is no view
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)
    peer_says(a, primary=True, departed=OTHER)
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)
    peer_says(a, primary=True, departed=f"{DEAD[:-1]}0")  # whole UUIDs only
    assert waited(a, DEAD, monkeypatch) == pytest.approx(3.0)


def test_the_peer_publishing_it_during_the_wait_ends_it(agent, monkeypatch):
    """The survivor's monitor publishes the departure while the joiner waits."""
    a, _ = agent
    peer_says(a, primary=True, departed=OTHER)
    clock = SleepRecorder()
    real_sleep = clock.sleep

    def sleep(seconds: float) -> None:
        real_sleep(seconds)
        if sum(clock.slept) >= 1.0:
            peer_says(a, primary=True, departed=f"{OTHER} {DEAD}")

    clock.sleep = sleep
    monkeypatch.setattr(galera_promote, "time", clock)
    a._await_eviction(a.mysqld, DEAD, time.monotonic() + 300)
    assert 1.0 <= sum(clock.slept) < 2.0, clock.slept


def test_a_failing_look_before_a_peers_promote_never_fails_the_notification(agent,
                                                                            monkeypatch):
    """Seeing a peer's killed incarnation off before its promote is speed only (the
    joiner's own wait is the safety): without the tools it needs (my_print_defaults
    here) the notification still answers 0, as a failed one fails the transition."""
    a, _ = agent
    env = {**a.environ, "OCF_RESKEY_CRM_meta_notify_type": "pre",
           "OCF_RESKEY_CRM_meta_notify_operation": "promote",
           "OCF_RESKEY_CRM_meta_notify_promote_uname": "node2"}
    notified = GaleraAgent(env, "notify")
    notified._set_role("promoted")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert notified.notify() == 0
