"""The drill's cloud-level columns, built from given events (no lab: the lab's own
run is tests/cluster/test_lab_profile.py): per API the time its authenticated read
through the VIP answered again for good, the first user sequence that succeeded
after the fault, both in the JSON, the table and the verdict."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pacestack.cluster import drill
from pacestack.cluster.drill import cli, scenarios


def _scenario(**cloud) -> drill.ScenarioResult:
    r = drill.ScenarioResult(name="node-crash", victim="controller01", detection_s=2.1,
                             vip_s=5.0, galera_s=5.2, probes_s={"keystone": 5.3},
                             services_s=9.0, rejoin_s=40.0, writes_acked=300,
                             max_instances={"vip": 1})
    for key, value in cloud.items():
        setattr(r, key, value)
    return r


def _report(*results: drill.ScenarioResult) -> drill.DrillReport:
    return drill.DrillReport(run_id="t", scenarios=list(results), seconds=80.0,
                             token_ms=1000, monitor_interval_s=5)


def test_table_and_json_carry_each_api_and_the_cloud_sequence():
    r = _scenario(cloud_measured=True, apis_s={"cinder": 7.4, "keystone": 5.5, "nova": 6.0},
                  cloud_s=21.3, cloud_began_s=4.1, cloud_attempts=3, cloud_error="HTTP 503")
    report = _report(r)
    table = cli.render_table(report)
    head, _rule, row = table.splitlines()[:3]
    assert "APIS s" in head and "CLOUD s" in head
    assert "cinder 7.4 keystone 5.5 nova 6.0" in row and " 4.1/21.3 " in row and "ok" in row
    # a sequence that failed before it worked is no note: it did work
    assert "never succeeded" not in table
    data = json.loads(json.dumps(report.to_dict()))
    got = data["scenarios"][0]
    assert got["apis_s"] == {"cinder": 7.4, "keystone": 5.5, "nova": 6.0}
    assert (got["cloud_s"], got["cloud_began_s"], got["cloud_attempts"], got["ok"]) == \
        (21.3, 4.1, 3, True)


def test_the_successful_sequences_steps_show_where_its_seconds_go(tmp_path: Path):
    """The steps of the attempt that worked, as the probe reported them (seconds from
    its start when each began and ended), reach the result, its JSON and the table."""
    report = {"ok": True, "started": 1006.5, "finished": 1014.25,
              "steps": {"network+port": 0.8, "image": 1.1, "volume": 2.0, "server": 4.9,
                        "attach": 6.4, "detach": 7.75},
              "began": {"network+port": 0.1, "image": 0.1, "volume": 0.1, "server": 1.2,
                        "attach": 4.9, "detach": 6.4}}
    loop = scenarios.SequenceLoop(lambda: report, time.time(), 60, pause=0.01)
    loop.run()
    r = _scenario()
    scenarios.Drill(target=None, work_dir=tmp_path)._analyse_cloud(  # type: ignore[arg-type]
        r, [], loop, 1000.0, t_back=1030.0)
    assert r.cloud_steps == report["steps"] and r.cloud_steps_began == report["began"]
    r.apis_s = {"keystone": 5.0}
    table = cli.render_table(_report(r))
    assert ("node-crash: cloud sequence steps (s from its start): network+port 0.1-0.8 "
            "image 0.1-1.1 volume 0.1-2.0 server 1.2-4.9 attach 4.9-6.4 detach 6.4-7.8"
            ) in table, table
    assert json.loads(json.dumps(r.to_dict()))["cloud_steps"]["server"] == 4.9


def test_a_lab_without_the_whole_controller_keeps_the_old_table():
    table = cli.render_table(_report(_scenario()))
    assert "APIS s" not in table and "CLOUD s" not in table
    assert _scenario().ok


def test_an_api_or_the_sequence_that_never_came_back_fails_the_scenario():
    never = _scenario(cloud_measured=True, apis_s={"keystone": 5.5}, cloud_s=None,
                      cloud_attempts=40, cloud_error="ConnectFailure: glance")
    assert not never.ok
    table = cli.render_table(_report(never))
    assert "node-crash: cloud sequence never succeeded (40 attempts): ConnectFailure" in table
    assert "FAILED" in table
    assert not _scenario(cloud_measured=True, apis_s={"keystone": 5.5, "nova": None},
                         cloud_s=20.0).ok
    # a probe that did not start measured nothing: not a pass
    assert not _scenario(cloud_measured=True, cloud_error="did not start").ok


def test_each_api_counts_from_its_last_failure_and_the_sequence_from_its_success(
        tmp_path: Path):
    t0 = 1000.0
    events = [{"kind": "started", "t": t0 - 2}]
    for i in range(-10, 200):
        t = t0 + i / 10
        events.append({"kind": "api", "name": "keystone", "ok": not 0 <= i < 50, "t": t})
        # nova answers once in between: only the answers that stay count
        events.append({"kind": "api", "name": "nova", "ok": i < 0 or i == 30 or i >= 80,
                       "t": t})
    answers = iter([{"ok": False, "error": "HTTP 503 cinder"},
                    {"ok": True, "started": t0 + 6.5, "finished": t0 + 14.25}])
    loop = scenarios.SequenceLoop(lambda: next(answers), time.time(), 60, pause=0.01)
    loop.run()
    assert loop.attempts == 2 and loop.done_at == t0 + 14.25
    r = _scenario()
    d = scenarios.Drill(target=None, work_dir=tmp_path)  # type: ignore[arg-type]
    d._analyse_cloud(r, events, loop, t0, t_back=t0 + 30)
    assert r.cloud_measured and r.apis_s == {"keystone": 5.0, "nova": 8.0}
    assert (r.cloud_s, r.cloud_attempts, r.cloud_error) == (14.25, 2, "HTTP 503 cinder")
    # from when the sequence that worked began: its own length is not recovery
    assert r.cloud_began_s == 6.5
    assert r.timeline["apis"]["nova"][10] == (0.0, False)


def test_an_api_whose_last_read_in_the_window_timed_out_answered_again_after_it():
    """The window closes when the victim comes back; a read that timed out just before
    is not an API that never came back: the first answer after it counts, however
    late. Failures after a success beyond the window do not count."""
    t0, end = 100.0, 130.0
    series = [(t0 + i, not (10 <= i <= 12 or i == 29 or i == 40)) for i in range(-2, 45)]
    assert scenarios.answered_again(series, t0, end) == 30.0
    assert scenarios.answered_again(series[:-15], t0, end) is None  # nothing after it
    healthy_then_blip = [(t0 + i, i != 5) for i in range(0, 45)]
    assert scenarios.answered_again(healthy_then_blip, t0, end) == 6.0


def test_a_hung_attempt_gets_a_second_one_beside_it_and_one_clean_up_at_the_end():
    """The first attempt hangs (a request sent as the VIP moved); after ``hedge``
    seconds a second one starts beside it and succeeds first: it decides when the
    sequence worked again. Attempts leave their resources; finish() waits for the
    hung one and then cleans up once."""
    release = threading.Event()
    calls: list[tuple[str, bool]] = []

    def attempt(clean: bool = True) -> dict:
        first = not calls
        calls.append(("attempt", clean))
        started = time.time()
        if first:
            release.wait(10)
            return {"ok": False, "error": "ReadTimeout: keystone"}
        return {"ok": True, "started": started, "finished": time.time()}

    def cleanup() -> dict:
        calls.append(("cleanup", True))
        return {"deleted": {"servers": 2}, "left": []}

    t0 = time.time()
    loop = scenarios.SequenceLoop(attempt, t0, 60, pause=0.01, cleanup=cleanup, hedge=0.3)
    loop.start()
    loop.join(5)
    assert not loop.is_alive() and loop.done_at is not None
    assert (loop.attempts, loop.hedged) == (2, 1)
    assert loop.began_at - t0 >= 0.3  # the hedge, not the hung attempt's start
    assert calls == [("attempt", False), ("attempt", False)]  # nobody cleaned yet
    release.set()
    loop.finish(5)
    assert calls[-1] == ("cleanup", True) and loop.cleaned["left"] == []
    assert loop.last_error == "ReadTimeout: keystone"


def test_the_plot_shows_each_api_and_when_the_cloud_worked(tmp_path: Path):
    points = [(i / 10, i >= 50) for i in range(-10, 100)]
    r = _scenario(cloud_measured=True, apis_s={"keystone": 5.0}, cloud_s=12.0,
                  timeline={"writes": points, "probes": {}, "apis": {"keystone": points},
                            "t0": 1.0, "t_back": 20.0})
    fig = cli.timeline_figure(_report(r))
    ax = next(a for a in fig.axes if a.get_title(loc="left"))
    assert "api keystone" in [t.get_text() for t in ax.get_yticklabels()]
    assert "cloud works" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_messages_lost_on_the_quorum_queue_show_and_fail_the_scenario():
    kept = _scenario(cloud_measured=True, apis_s={"keystone": 5.5}, cloud_s=20.0,
                     cloud_began_s=3.0, messages_put=20, messages_lost=0)
    lost = _scenario(cloud_measured=True, apis_s={"keystone": 5.5}, cloud_s=20.0,
                     cloud_began_s=3.0, messages_put=20, messages_lost=3)
    table = cli.render_table(_report(kept, lost))
    head, _rule, row_kept, row_lost = table.splitlines()[:4]
    assert "MQ LOST/PUT" in head
    assert " 0/20 " in row_kept and "ok" in row_kept
    assert " 3/20 " in row_lost and "FAILED" in row_lost
    # put but never counted (the cluster did not answer): not ok either
    uncounted = _scenario(cloud_measured=True, apis_s={"keystone": 5.5}, cloud_s=20.0,
                          messages_put=20, messages_lost=None)
    assert kept.ok and not lost.ok and not uncounted.ok
    # each failed scenario says why, in the table's lines and the JSON
    assert "node-crash: FAILED: 3 of 20 queued messages lost" in table
    assert uncounted.failures() == ["quorum queue not counted"] and kept.failures() == []
    assert json.loads(json.dumps(lost.to_dict()))["failures"] == ["3 of 20 queued messages lost"]
    assert json.loads(json.dumps(lost.to_dict()))["messages_lost"] == 3


class _Queue:
    """The quorum queue as the drill's CloudHandle reaches it: counts in order (an
    exception stands for a broker that did not answer), then the same as the last."""

    def __init__(self, *counts):
        self.counts = list(counts)
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, name: str, put: int, drop: bool = True):
        self.calls.append((put, drop))
        value = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        if isinstance(value, Exception):
            raise value
        return value


def _handle(queue: _Queue):
    from pacestack.cluster.drill.target import CloudHandle

    return CloudHandle(Path("/nonexistent"), lambda: None, lambda: {}, queue)


def test_a_count_read_right_after_a_leader_change_is_read_again_before_the_delete():
    """A leader just elected answered 0 for a queue holding all 20 (seen in a standby
    drill, where the drill then deleted the queue and reported 20 lost): the count is
    read again, without deleting, until it shows them all; only then is it deleted."""
    r = _scenario(messages_put=20)
    queue = _Queue(0, RuntimeError("broker stopping"), 20)
    scenarios.Drill._count_messages(r, _handle(queue), "q", settle=10)
    assert r.messages_lost == 0 and r.notes == []
    assert queue.calls == [(0, False), (0, False), (0, False), (0, True)]


def test_a_short_count_that_stays_short_is_lost_and_said():
    r = _scenario(messages_put=20)
    queue = _Queue(17)
    t0 = time.monotonic()
    scenarios.Drill._count_messages(r, _handle(queue), "q", settle=1.5)
    assert 1.5 <= time.monotonic() - t0 < 5
    assert r.messages_lost == 3
    assert r.notes == ["quorum queue held 17 of 20 for 1.5 s"]
    assert queue.calls[-1] == (0, True) and all(c == (0, False) for c in queue.calls[:-1])


def test_a_queue_never_counted_is_no_loss_claimed():
    r = _scenario(messages_put=20)
    queue = _Queue(RuntimeError("no broker answers"))
    scenarios.Drill._count_messages(r, _handle(queue), "q", settle=1)
    assert r.messages_lost is None and "no broker answers" in r.notes[0]


def test_a_queue_that_took_fewer_messages_than_the_drill_put_fails_the_scenario():
    """A put the broker did not confirm (it answered no count) is no silent pass:
    without the messages there is nothing the scenario could have lost."""
    r = _scenario(cloud_measured=True, apis_s={"keystone": 5.5}, cloud_s=20.0,
                  cloud_began_s=3.0, messages_wanted=20, messages_put=0)
    assert not r.ok
    assert r.failures() == ["the quorum queue confirmed 0 of 20 messages before the fault"]
