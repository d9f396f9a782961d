"""The installed ``pacestack`` command: help, version, config sample and check."""

import configparser
import json
import os
import subprocess
import sys

import pytest

from pacestack import __version__

PACESTACK = os.path.join(os.path.dirname(sys.executable), "pacestack")


def run(*args, **kw):
    return subprocess.run([PACESTACK, *args], capture_output=True, text=True, timeout=60, **kw)


def test_help_lists_command_groups_and_version():
    out = run("--help")
    assert out.returncode == 0
    assert "config" in out.stdout and "controller.domain" in out.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == __version__


def test_help_at_every_level():
    assert "sample" in run("config", "--help").stdout
    assert "FILE" in run("config", "check", "--help").stdout


def test_config_sample_is_complete_and_checks_clean(tmp_path):
    out = run("config", "sample")
    assert out.returncode == 0
    assert out.stderr == ""  # no generator chatter about group names
    text = out.stdout
    assert "[resource:NAME]" in text and "[fencing:NAME]" in text
    assert "[database]" in text and "#connect_timeout = 10" in text
    assert "[openstack]" in text and "#nova_config = /etc/nova/nova.conf" in text
    sample = tmp_path / "pacestack.conf"
    sample.write_text(text)
    configparser.ConfigParser(strict=False, interpolation=None).read(sample)
    # uncommenting every default must still be a valid file
    uncommented = "\n".join(
        line[1:] if line.startswith("#") and " = " in line and "<None>" not in line else line
        for line in text.splitlines())
    sample.write_text(uncommented)
    check = run("config", "check", str(sample))
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().endswith("OK")


def test_config_check_reports_file_group_option(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[database]\nconnect_timeout = soon\nconnectoin = x\n[nosuch]\na = b\n"
                   "[openstack]\nnova_config = /etc/nova/nova.conf\n")
    out = run("config", "check", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any("[database] connect_timeout" in line and "soon" in line for line in lines)
    assert any("unknown option connectoin" in line for line in lines)
    assert any("unknown group [nosuch]" in line for line in lines)
    assert all(str(bad) in line for line in lines)
    js = json.loads(run("config", "check", "--format", "json", str(bad)).stdout)
    assert {f["code"] for f in js["findings"]} == {
        "CONFIG_BAD_VALUE", "CONFIG_UNKNOWN_OPTION", "CONFIG_UNKNOWN_GROUP"}
    # scripts get the fields, not only prose
    by_code = {f["code"]: f["payload"] for f in js["findings"]}
    assert by_code["CONFIG_UNKNOWN_GROUP"] == {"group": "nosuch"}
    assert by_code["CONFIG_UNKNOWN_OPTION"] == {"option": "connectoin", "group": "database"}
    assert by_code["CONFIG_BAD_VALUE"]["option"] == "connect_timeout"


def test_secret_values_are_not_echoed(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[database]\nnova_connection = mysql+pymysql://nova:TOPSECRET@h/nova\n"
                   "nova_conection = mysql+pymysql://nova:TOPSECRET2@h/nova\n")
    out = run("config", "check", "--format", "json", str(bad))
    assert "TOPSECRET" not in out.stdout + out.stderr


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    ("[database\nx=1\n", "line 1"),
])
def test_config_check_unreadable_file(tmp_path, content, words):
    path = tmp_path / "p.conf"
    if content is not None:
        path.write_text(content)
    out = run("config", "check", str(path))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and words in out.stderr and str(path) in out.stderr


def test_missing_config_file_option_is_one_line_exit_2(tmp_path):
    out = run("--config-file", str(tmp_path / "absent.conf"), "config", "sample")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "absent.conf" in out.stderr


def test_unknown_command_is_usage_error():
    out = run("frobnicate")
    assert out.returncode == 2
