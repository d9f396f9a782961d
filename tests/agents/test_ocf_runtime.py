"""The OCF runtime: parameters, meta-data, dispatch, exit codes, probes, notify
meta and logging, exercised in-process on a small agent declared here."""

from __future__ import annotations

import subprocess

import pytest
from pacestack.agents import ocf
from pacestack.agents.ocf import Action, Agent, OCFError, Parameter

from tests.fixtures.ocf import RA_DTD, RA_RNG


class Sample(Agent):
    name = "sample"
    version = "0.3"
    shortdesc = "A sample agent"
    longdesc = "An agent with every kind of declaration, <escaped> & all."
    parameters = [
        Parameter("config", "Configuration file", required=True, unique=True),
        Parameter("port", "TCP port", type=int, default=3306),
        Parameter("two_node_mode", "Two node mode", type=bool, default=False),
        Parameter("label", "Free text", default="a \"quoted\" <value>"),
    ]
    actions = [
        Action("start", 120),
        Action("stop", 120),
        Action("monitor", 30, interval=20, role="Unpromoted", depth=0),
        Action("monitor", 30, interval=10, role="Promoted"),
        Action("promote", 300),
        Action("demote", 120),
        Action("notify", 30),
    ]

    def start(self):
        return ocf.SUCCESS

    def monitor(self):
        if self.params.port == 1:
            raise OCFError(ocf.ERR_GENERIC, "port one\nis odd")
        return ocf.NOT_RUNNING if self.is_probe else ocf.RUNNING_PROMOTED

    def promote(self):
        raise RuntimeError("boom")

    def notify(self):
        self.log.info("notify %s-%s start=%s", self.meta.notify_type,
                      self.meta.notify_operation, ",".join(self.meta.start))
        return None

    def validate_all(self):
        return ocf.SUCCESS


BASE = {"OCF_RESKEY_config": "/etc/my.cnf", "OCF_RESOURCE_INSTANCE": "db"}


def call(action, capsys, **env):
    rc = ocf.run(Sample, ["sample", action], {**BASE, **env})
    out = capsys.readouterr()
    return rc, out.out, out.err


def xmllint(path, *args):
    return subprocess.run(["xmllint", "--noout", *args, str(path)], capture_output=True,
                          text=True, check=False)


def test_meta_data_validates_against_dtd_and_rng(tmp_path, capsys):
    rc, out, _ = call("meta-data", capsys)
    assert rc == ocf.SUCCESS
    path = tmp_path / "m.xml"
    path.write_text(out)
    dtd = xmllint(path, "--dtdvalid", RA_DTD)
    assert dtd.returncode == 0, dtd.stderr
    rng = xmllint(path, "--relaxng", RA_RNG)
    assert rng.returncode == 0, rng.stderr
    assert '<version>1.1</version>' in out
    assert 'role="Promoted"' in out and 'role="Unpromoted"' in out
    assert '<content type="integer" default="3306"' in out
    assert '<content type="boolean" default="false"' in out
    assert "&lt;escaped&gt; &amp; all" in out
    assert 'name="validate-all"' in out and 'name="meta-data"' in out


def test_meta_data_needs_no_parameters(capsys):
    rc = ocf.run(Sample, ["sample", "meta-data"], {})
    assert rc == ocf.SUCCESS
    assert capsys.readouterr().out.startswith('<?xml version="1.0"?>\n<!DOCTYPE resource-agent')


def test_typed_parameters_and_defaults():
    agent = Sample({**BASE, "OCF_RESKEY_port": "4567", "OCF_RESKEY_two_node_mode": "yes"}, "start")
    assert agent.params.port == 4567
    assert agent.params["two_node_mode"] is True
    assert agent.params.label == 'a "quoted" <value>'
    assert Sample(BASE, "start").params.two_node_mode is False
    # an empty typed value means "not set": the default applies
    assert Sample({**BASE, "OCF_RESKEY_port": ""}, "start").params.port == 3306


@pytest.mark.parametrize("env, reason", [
    ({"OCF_RESKEY_config": None}, "required parameter 'config' is not set"),
    ({"OCF_RESKEY_config": ""}, "required parameter 'config' is empty"),
    ({"OCF_RESKEY_port": "33o6"}, "parameter 'port': '33o6' is not an integer"),
    ({"OCF_RESKEY_two_node_mode": "maybe"}, "parameter 'two_node_mode': 'maybe' is not a boolean"),
])
def test_bad_parameters_are_err_configured_with_reason(env, reason, capsys):
    environ = {k: v for k, v in {**BASE, **env}.items() if v is not None}
    rc = ocf.run(Sample, ["sample", "start"], environ)
    err = capsys.readouterr().err
    assert rc == ocf.ERR_CONFIGURED
    assert f"ocf-exit-reason:{reason}" in err


def test_exit_reason_prefix_and_one_line(capsys):
    rc, _, err = call("monitor", capsys, OCF_RESKEY_port="1",
                      OCF_RESKEY_CRM_meta_interval="10000", OCF_EXIT_REASON_PREFIX="REASON>")
    assert rc == ocf.ERR_GENERIC
    assert "REASON>port one is odd\n" in err


def test_exit_codes_dispatch_and_unimplemented(capsys):
    assert call("start", capsys)[0] == ocf.SUCCESS
    assert call("notify", capsys)[0] == ocf.SUCCESS  # None means success
    rc, _, err = call("demote", capsys)  # declared but no method
    assert rc == ocf.ERR_UNIMPLEMENTED and "ocf-exit-reason:action 'demote'" in err
    assert call("migrate_to", capsys)[0] == ocf.ERR_UNIMPLEMENTED
    assert call("frobnicate", capsys)[0] == ocf.ERR_UNIMPLEMENTED
    rc = ocf.run(Sample, ["sample"], BASE)
    assert rc == ocf.ERR_ARGS and "usage: sample {" in capsys.readouterr().err
    # an agent bug still ends with an OCF code and a reason, not a traceback exit
    rc, _, err = call("promote", capsys)
    assert rc == ocf.ERR_GENERIC
    assert "ocf-exit-reason:promote failed: RuntimeError: boom" in err
    assert ocf.run(Sample, ["sample", "usage"], {}) == ocf.SUCCESS
    assert "usage: sample {" in capsys.readouterr().out


def test_probe_detection(capsys):
    assert call("monitor", capsys, OCF_RESKEY_CRM_meta_interval="0")[0] == ocf.NOT_RUNNING
    assert call("monitor", capsys)[0] == ocf.NOT_RUNNING  # no interval at all: a probe
    assert call("monitor", capsys, OCF_RESKEY_CRM_meta_interval="20000")[0] == ocf.RUNNING_PROMOTED
    assert not Sample({**BASE, "OCF_RESKEY_CRM_meta_interval": "0"}, "start").is_probe


def test_clone_and_notify_meta():
    env = {
        **BASE,
        "OCF_RESKEY_CRM_meta_clone": "1", "OCF_RESKEY_CRM_meta_clone_max": "3",
        "OCF_RESKEY_CRM_meta_clone_node_max": "1", "OCF_RESKEY_CRM_meta_promotable": "true",
        "OCF_RESKEY_CRM_meta_promoted_max": "3", "OCF_RESKEY_CRM_meta_notify": "true",
        "OCF_RESKEY_CRM_meta_notify_type": "pre", "OCF_RESKEY_CRM_meta_notify_operation": "promote",
        "OCF_RESKEY_CRM_meta_notify_active_uname": "controller01 controller02 ",
        "OCF_RESKEY_CRM_meta_notify_promote_uname": " controller02",
        "OCF_RESKEY_CRM_meta_notify_master_uname": "controller01",  # pre-1.1 name only
        "OCF_RESKEY_CRM_meta_notify_unpromoted_uname": "controller02",
        "OCF_RESKEY_CRM_meta_notify_slave_uname": "ignored-when-new-name-given",
        "OCF_RESKEY_CRM_meta_notify_start_resource": "db:0 db:2",
        "OCF_RESKEY_CRM_meta_notify_stop_uname": "",
        "OCF_RESKEY_CRM_meta_on_node": "controller02",
    }
    agent = Sample(env, "notify")
    m = agent.meta
    assert (m.clone, m.clone_max, m.clone_node_max, m.promoted_max) == ("1", 3, 1, 3)
    assert m.promotable and m.notify and m.is_clone
    assert (m.notify_type, m.notify_operation) == ("pre", "promote")
    assert m.active == ["controller01", "controller02"]
    assert m.promote == ["controller02"]
    assert m.promoted == ["controller01"]
    assert m.unpromoted == ["controller02"]
    assert m.stop == [] and m.demote == []
    assert m.notify_resources["start"] == ["db:0", "db:2"]
    assert agent.node_name == "controller02"
    # the old promotable spelling is understood too
    old = Sample({**BASE, "OCF_RESKEY_CRM_meta_master_max": "1"}, "start").meta
    assert old.promoted_max == 1 and old.promotable


def test_logging_to_ha_logfile_and_debug(tmp_path, capsys):
    log = tmp_path / "ha.log"
    env = {"HA_LOGFILE": str(log), "HA_debug": "0", "OCF_RESKEY_CRM_meta_notify_type": "post",
           "OCF_RESKEY_CRM_meta_notify_operation": "start",
           "OCF_RESKEY_CRM_meta_notify_start_uname": "controller01 controller02"}
    assert call("notify", capsys, **env)[0] == ocf.SUCCESS
    assert call("monitor", capsys, **env, OCF_RESKEY_port="1")[0] == ocf.ERR_GENERIC
    text = log.read_text()
    assert "sample(db)[" in text
    assert "INFO: notify post-start start=controller01,controller02" in text
    assert "ERROR: port one is odd" in text
    assert "DEBUG" not in text  # HA_debug=0
    call("start", capsys, HA_LOGFILE=str(log), HA_debug="1")
    assert "DEBUG: start -> OCF_SUCCESS" in log.read_text()
    # with neither a facility nor a file, messages go to stderr (Pacemaker keeps them)
    _, _, err = call("notify", capsys, HA_LOGFACILITY="none")
    assert "INFO: notify" in err


def test_declaration_errors_are_caught_early():
    with pytest.raises(ValueError, match="role must be"):
        Action("monitor", 20, role="Master")
    with pytest.raises(ValueError, match="not an OCF action"):
        Action("reboot", 20)
    with pytest.raises(ValueError, match="content type"):
        Parameter("x", "x", content_type="duration")
    with pytest.raises(ValueError, match="str, int or bool"):
        Parameter("x", "x", type=float)
