"""The sh front of an agent whose healthy monitor needs no Python.

Pacemaker runs monitor every few seconds on every node, and Python's start-up
alone (~7 ms with -IS) costs more than resource-agents' whole shell monitor
(bash sourcing ocf-shellfuncs, then ``kill -0``). So for agents that declare
``sh_monitor = True`` the installed executable is a short POSIX sh script that
answers the one common case itself: a recurring monitor of a daemon this agent
started, whose pid and kernel start time still match what start recorded (and,
with ``monitor_url``, whose URL answers 2xx/3xx to curl). It only ever answers
"running"; everything else is handed to the Python agent, unchanged, which
decides and explains: probes, a pid file without its start-time record (an
adopted daemon), a dead or replaced process, a failing URL, no curl, systemd
units, parameter values Python would reject, debug logging, every other action.

The checks are generated from the agent's own parameter declarations, so a
value Python would refuse (``monitor_timeout=abc``) never gets a sh "running".
"""

from __future__ import annotations

import shlex

from pacestack.agents import ocf

# the cases every sh front hands to Python whatever the agent: not a recurring monitor
# (a probe says what is there), or debug logging on
RECURRING_MONITOR = """\
    [ "$#" -eq 1 ] && [ "$1" = monitor ] || return 1
    interval=${OCF_RESKEY_CRM_meta_interval:-0}
    case $interval in *[!0-9]*|'') return 1 ;; esac
    [ "$interval" -gt 0 ] || return 1  # a probe: Python says what is there
    [ "${HA_debug:-0}" = 0 ] || return 1  # debug logging is Python's
"""

_HEAD = """\
#!/bin/sh
# ocf:pacestack:{name}, written by `python3 -m pacestack.agents.install`: change the
# package, not this file. A recurring monitor of a daemon this agent started is
# answered here (Python's start-up alone costs more than a shell agent's whole
# monitor); whatever this cannot confirm goes to the Python agent below, which
# decides and explains. See pacestack/agents/sh_monitor.py.

healthy() {{
{guard}"""

_BODY = """\
    pidfile=${{OCF_RESKEY_pid-}}
    if [ -z "$pidfile" ]; then
        # {pid_dir}/<resource>.pid with ':' as '-' and '/' as '_', as the agent names it
        rest=${{OCF_RESOURCE_INSTANCE-}} safe=
        [ -n "$rest" ] || return 1
        while :; do
            case $rest in
            *[:/]*) ;;
            *) safe=$safe$rest; break ;;
            esac
            head=${{rest%%[:/]*}}
            rest=${{rest#"$head"}}
            case $rest in
            :*) safe=$safe$head- ;;
            *) safe=${{safe}}${{head}}_ ;;
            esac
            rest=${{rest#?}}
        done
        pidfile={pid_dir}/$safe.pid
    fi
    read -r pid < "$pidfile" || return 1
    case $pid in *[!0-9]*|'') return 1 ;; esac
    read -r started < "$pidfile.start" || return 1  # no record: an adopted daemon
    case $started in *[!0-9]*|'') return 1 ;; esac
    read -r stat < "/proc/$pid/stat" || return 1
    # fields after the command name, which may hold spaces and ')': state is
    # the 1st, the kernel start time the 20th
    set -f
    unset IFS
    set -- ${{stat##*") "}}
    [ "$#" -ge 20 ] || return 1
    case $1 in Z|X) return 1 ;; esac
    eval "now=\\${{20}}"
    [ "$now" = "$started" ] || return 1  # the pid was reused by another process
    url=${{OCF_RESKEY_monitor_url-}}
    [ -n "$url" ] || return 0
    # only what Python's check accepts as is (service_process.url_problem and
    # split_http_url): printable ASCII, no curl globs, no credentials, a plain host
    # and a port in range; anything else Python refuses or judges itself
    case $url in http://*|https://*) ;; *) return 1 ;; esac
    case $url in *[!!-~]*|*[][{{}}]*) return 1 ;; esac
    rest=${{url#*://}}
    netloc=${{rest%%[/?#]*}}
    case $netloc in ''|*[!A-Za-z0-9.:_-]*|:*|*:*:*) return 1 ;; esac
    case $netloc in
    *:*)
        port=${{netloc#*:}}
        case $port in ''|*[!0-9]*) return 1 ;; esac
        [ "${{#port}}" -le 5 ] && [ "$port" -gt 0 ] && [ "$port" -lt 65536 ] || return 1
        ;;
    esac
    timeout=${{OCF_RESKEY_monitor_timeout:-{default_timeout}}}
    [ "$timeout" -gt 0 ] || return 1
    command -v curl > /dev/null || return 1
    # -q: no ~/.curlrc; no proxy from the environment; -f: 4xx/5xx fail, 3xx passes
    # --globoff: the URL is one URL; "--" before it: never an option
    curl -q --silent --fail --globoff --output /dev/null --noproxy '*' --max-time "$timeout" \\
        -- "$url"
}}

healthy "$@" 2> /dev/null && exit 0
exec {python} -IS -c '{program}' "$@"
"""


def param_checks(agent: type[ocf.Agent]) -> list[str]:
    """sh lines that fall through to Python for any value Python would refuse."""
    lines = []
    for p in agent.parameters:
        var = f"${{OCF_RESKEY_{p.name}-}}"
        if p.required:
            # blank counts as unset: Python strips before it checks
            lines.append(f"    case {var} in *[![:space:]]*) ;; *) return 1 ;; esac"
                         "  # required: Python says so")
        if p.type is int:
            # plain digits or unset: " 5", "+5" and "-5" are Python's to judge
            lines.append(f"    case {var} in *[!0-9]*) return 1 ;; esac")
        elif p.type is bool:
            words = "|".join(sorted(ocf._TRUE | ocf._FALSE))
            lines.append(f"    case {var} in ''|{words}) ;; *) return 1 ;; esac")
    return lines


def check_exec_line(python: str, program: str) -> None:
    """What every sh front ends with, ``exec python -IS -c 'program'``, must stay one
    plain word and one single-quoted argument."""
    if "'" in program:
        raise ValueError("the Python program must not contain a single quote "
                         "(it is passed inside one)")
    if shlex.quote(python) != python:
        raise ValueError(f"interpreter path {python!r} needs quoting; install from a "
                         "Python whose path is plain")


def script(agent: type[ocf.Agent], python: str, program: str, pid_dir: str) -> str:
    """The executable's text: the sh front, then ``exec python -IS -c program``."""
    check_exec_line(python, program)
    names = {p.name: p for p in agent.parameters}
    for needed in ("binary", "pid", "monitor_url", "monitor_timeout", "systemd_unit"):
        if needed not in names:
            raise ValueError(f"{agent.name} has no parameter {needed!r}: no sh monitor")
    checks = param_checks(agent) + [
        '    [ -n "${OCF_RESKEY_binary-}" ] || return 1',
        '    [ -z "${OCF_RESKEY_systemd_unit-}" ] || return 1  # systemctl is Python\'s']
    return (_HEAD.format(name=agent.name, guard=RECURRING_MONITOR) + "\n".join(checks) + "\n"
            + _BODY.format(pid_dir=pid_dir, python=python, program=program,
                           default_timeout=int(names["monitor_timeout"].default)))
