"""The sh front of ``ocf:pacestack:galera``: the healthy Promoted monitor, and the
notifications Python would answer by doing nothing, without Python.

Pacemaker runs the Promoted monitor every few seconds on every controller; Python's
start-up and imports cost more than the status query itself, and a cheap monitor
is what allows a short interval (a killed mariadbd is noticed by the next monitor).
The front answers only the healthy case, with the status query the Python agent
runs (the mariadb client on the local socket, galera_mysqld.Mysqld.status), for the
five variables the front reads:

- a recurring monitor (not a probe, no debug logging), parameter values Python
  would accept (agents/sh_monitor.py's checks), the node name given by Pacemaker;
- the role marker says Promoted, and the PID file names a live process whose
  executable is the ``binary`` parameter (/proc/PID/exe is that file, and the
  kernel's name of the process is its name);
- the server answers: Primary, local state Synced or Donor/Desynced;
- the view is the one the agent noted last (wsrep_cluster_conf_id, the view file
  GaleraRecords.note_view writes): on a view change Python publishes who left;
- Python would not record the position now: the record file (written by the
  agent, with the boot-clock time, the "alone" size and the highest seqno the
  missing members recorded) holds this position, or the same view size and: not
  alone, less than RECORD_INTERVAL ago; alone (the only data member left), the
  same history and either that record already past the missing members' and less
  than ALONE_RECORD_INTERVAL ago, or this position not past them yet.

Then it exits 8 (running Promoted). Anything else, including every failure, goes
to the Python agent unchanged, which decides and explains; so the front never says
"running" where Python would not, and never skips a record Python would write.

Notifications: Pacemaker runs one on every instance before and after each start,
stop, promote and demote of the clone, and waits for all of them before the next
action (four rounds between a kill -9 of mariadbd and its promote). Python only
acts on a "post" one on a node whose role marker says Unpromoted (it re-scores
itself when mariadbd is stopped there, unless the transition starts, stops,
promotes or demotes that node alone: its own action scored it), and on a "pre" one
of a peer's promote on a Promoted node (it waits for its view to drop the peer's
killed incarnation and publishes the departure, GaleraRecords.see_off); every
other "pre" one, and a "post" one on a Promoted node, it answers 0 without a
change. The front answers those (same parameter checks as the monitor, no debug
logging, the node name given and the marker readable, and for a peer's promote a
view noted last that holds no more than this node and the arbitrators, so no peer
incarnation can be in it); anything else goes to Python.

Cost: the client is most of it (exec of a C++ program, its character set tables,
the connection). ``--character-sets-dir=/dev/null`` spares it parsing the XML
character set files: the sets compiled into the client are all a connection to
the local server needs (the status is ASCII), and an error fails the query, which
hands over. dash
reads files one byte per read(2): the process is identified from the first lines
of /proc/PID/status and /proc/PID/exe, not from /proc/PID/stat (one long line) or
/proc/PID/cmdline (hundreds of bytes, each read a walk of mariadbd's memory map).
"""

from __future__ import annotations

import re
import shlex

from pacestack.agents import ocf, sh_monitor
from pacestack.agents.galera import ALONE_RECORD_INTERVAL, HEALTHY_STATES, RECORD_INTERVAL
from pacestack.agents.galera_mysqld import CLIENTS, STATUS_VARS

# what the front decides on (the script's case below); the Python agent asks for more
FRONT_VARS = ("wsrep_cluster_status", "wsrep_local_state_comment",
              "wsrep_cluster_state_uuid", "wsrep_last_committed", "wsrep_cluster_size",
              "wsrep_cluster_conf_id")

_SCRIPT = """\
#!/bin/sh
# ocf:pacestack:galera, written by `python3 -m pacestack.agents.install`: change the
# package, not this file. A healthy Promoted monitor is answered here with the
# agent's status query; whatever this cannot confirm goes to the Python agent
# below, which decides and explains. See pacestack/agents/galera_sh_monitor.py.

# $state: where the agent keeps this instance's files (role marker, view, record),
# from the node name Pacemaker gives and the instance without its clone number
state_of() {{
    node=${{OCF_RESKEY_CRM_meta_on_node-}}
    [ -n "$node" ] || return 1  # crm_node -n is Python's
    base=${{OCF_RESOURCE_INSTANCE-}}
    base=${{base%%:*}}
    [ -n "$base" ] || return 1
    rsctmp=${{HA_RSCTMP-/run/resource-agents}}
    [ -n "$rsctmp" ] || return 1  # set but empty: Python's path is relative to its cwd
    state=$rsctmp/pacestack-galera-$base-$node
}}

# $role: this instance's role marker (promoted, unpromoted), with $state set
role_of() {{
    state_of || return 1
    role=
    read -r role < "$state.role" || [ -n "$role" ]
}}

promoted() {{
{guard}{checks}
    role_of || return 1
    [ "$role" = promoted ] || return 1
    binary=${{OCF_RESKEY_binary-{binary}}}
    name=${{binary##*/}}
    [ -n "$name" ] && [ "${{#name}}" -le 15 ] || return 1  # the kernel keeps 15 characters
    pid=
    read -r pid < "${{OCF_RESKEY_pid-{pid}}}" || [ -n "$pid" ] || return 1
    case $pid in *[!0-9]*|'') return 1 ;; esac
    # Name: first line, escaped by the kernel (so plain names only); State: the line
    # after Umask (kernels before 4.7 have no Umask line)
    case $name in *[!A-Za-z0-9._+-]*) return 1 ;; esac
    l1= l2= l3=
    {{ read -r l1; read -r l2; read -r l3; }} < "/proc/$pid/status" || return 1
    [ "$l1" = "Name:	$name" ] || return 1
    case $l2 in State:*) l3=$l2 ;; esac
    case $l3 in "State:	"[!ZX]*) ;; *) return 1 ;; esac  # not a zombie
    [ "/proc/$pid/exe" -ef "$binary" ] || return 1  # the same file, not a namesake
    client=
    for c in {clients}; do
        [ -x "$c" ] && client=$c && break
    done
    [ -n "$client" ] || return 1
    if [ -n "${{OCF_RESKEY_check_defaults_file-}}" ]; then
        set -- "--defaults-file=$OCF_RESKEY_check_defaults_file"
    else
        set -- --no-defaults --user=root
    fi
    out=$("$client" "$@" "--socket=${{OCF_RESKEY_socket-{socket}}}" --protocol=socket \\
          --character-sets-dir=/dev/null --connect-timeout=5 --batch --skip-column-names \\
          --execute {query} < /dev/null) || return 1
    cluster= local= uuid= seqno= size= conf=
    while IFS='\t' read -r key value; do
        case $key in
        wsrep_cluster_status) cluster=$value ;;
        wsrep_cluster_conf_id) conf=$value ;;
        wsrep_local_state_comment) local=$value ;;
        wsrep_cluster_state_uuid) uuid=$value ;;
        wsrep_last_committed) seqno=$value ;;
        wsrep_cluster_size) size=$value ;;
        esac
    done <<EOF
$out
EOF
    [ "$cluster" = Primary ] || return 1
    case $local in {healthy}) ;; *) return 1 ;; esac
    case $uuid in *[!0-9a-f-]*|'') return 1 ;; esac
    case $seqno in *[!0-9]*|'') return 1 ;; esac
    case $size in *[!0-9]*|'') return 1 ;; esac
    case $conf in *[!0-9]*|'') return 1 ;; esac
    # the view the agent noted last (conf id first): another one, Python notes who left
    v_conf=
    read -r v_conf _ < "$state.view" || [ -n "$v_conf" ] || return 1
    [ "$conf" = "$v_conf" ] || return 1
    # what the agent recorded last: uuid seqno size wall-time boot-time alone-size
    # and the highest seqno the missing members recorded (-1: none)
    r_uuid= r_seqno= r_size= r_wall= r_boot= r_alone= r_peers=
    read -r r_uuid r_seqno r_size r_wall r_boot r_alone r_peers < "$state.recorded" || \\
        [ -n "$r_peers" ] || return 1
    case $r_alone in *[!0-9]*|'') return 1 ;; esac
    case ${{r_peers#-}} in *[!0-9]*|'') return 1 ;; esac  # an older agent's record
    [ "$uuid" = "$r_uuid" ] && [ "$seqno" = "$r_seqno" ] && return 0
    [ "$size" = "$r_size" ] || return 1  # the view changed: Python records
    case $r_seqno in *[!0-9]*|'') return 1 ;; esac
    r_boot=${{r_boot%%.*}}
    case $r_boot in *[!0-9]*|'') return 1 ;; esac
    read -r up _ < /proc/uptime || return 1
    up=${{up%%.*}}
    # whole seconds on both sides: one second early hands over rather than skip a record
    [ "$size" -gt "$r_alone" ] && {{ [ $((up - r_boot)) -lt {record_interval} ]; return; }}
    # alone with the newest commits, in the history recorded
    [ "$uuid" = "$r_uuid" ] || return 1
    [ "$r_seqno" -gt "$r_peers" ] && {{ [ $((up - r_boot)) -lt {alone_interval} ]; return; }}
    [ "$seqno" -le "$r_peers" ]  # not past the missing members' records yet
}}

# a notification Python answers 0 without a change: every "pre" one but a peer's
# promote on a Promoted node that may still see the peer's killed incarnation, a
# "post" one on a Promoted node (only an Unpromoted node re-scores itself), and one on
# an Unpromoted node of a transition that acts on that node alone
notified() {{
    [ "$#" -eq 1 ] && [ "$1" = notify ] || return 1
    [ "${{HA_debug:-0}}" = 0 ] || return 1  # debug logging is Python's
{checks}
    if [ "${{OCF_RESKEY_CRM_meta_notify_type-}}" != post ]; then
        [ "${{OCF_RESKEY_CRM_meta_notify_operation-}}" = promote ] || return 0
        pre_promote
        return
    fi
    role_of || return 1
    [ "$role" = promoted ] && return 0
    [ "$role" = unpromoted ] || return 1
    # an Unpromoted node re-scores itself, unless the transition acts on it alone
    # (GaleraAgent._only_mine): its own action scored it at its end
    acting=0
    for n in ${{OCF_RESKEY_CRM_meta_notify_start_uname-}} \
             ${{OCF_RESKEY_CRM_meta_notify_stop_uname-}} \
             ${{OCF_RESKEY_CRM_meta_notify_promote_uname-}} \
             ${{OCF_RESKEY_CRM_meta_notify_demote_uname-}}; do
        [ "$n" = "$node" ] || return 1
        acting=1
    done
    [ "$acting" = 1 ]
}}

# before a peer's promote on a Promoted node, Python waits until this node's view
# drops the peer's killed incarnation and publishes that it left (GaleraRecords.see_off):
# only when the view the agent noted last holds more than this node and the
# arbitrators (the "alone" size of its record) can that incarnation be in it
pre_promote() {{
    role_of || return 1
    [ "$role" = promoted ] || return 0
    others=
    for p in ${{OCF_RESKEY_CRM_meta_notify_promote_uname-}}; do
        [ "$p" = "$node" ] || others=1
    done
    [ -n "$others" ] || return 0
    v_members=
    read -r _ _ v_members _ < "$state.view" || [ -n "$v_members" ] || return 1
    case $v_members in *[!0-9a-f,-]*|'') return 1 ;; esac
    r_alone=
    read -r _ _ _ _ _ r_alone _ < "$state.recorded" || [ -n "$r_alone" ] || return 1
    case $r_alone in *[!0-9]*|'') return 1 ;; esac
    n=1 rest=$v_members
    while case $rest in *,*) ;; *) false ;; esac; do
        rest=${{rest#*,}} n=$((n + 1))
    done
    [ "$n" -le "$r_alone" ]
}}

notified "$@" 2> /dev/null && exit 0
promoted "$@" 2> /dev/null && exit 8
exec {python} -IS -c '{program}' "$@"
"""


def script(agent: type[ocf.Agent], python: str, program: str) -> str:
    """The executable's text: the sh front, then ``exec python -IS -c program``."""
    sh_monitor.check_exec_line(python, program)
    defaults = {p.name: p.default for p in agent.parameters}
    for name in ("binary", "pid", "socket", "check_defaults_file"):
        if name not in defaults:
            raise ValueError(f"{agent.name} has no parameter {name!r}: no sh monitor")
    if not set(FRONT_VARS) <= set(STATUS_VARS):
        raise ValueError("the sh front reads variables the Python agent does not query")
    # a variable the case reads but the query omits would hand every monitor to Python
    read = set(re.findall(r"^\s+(wsrep_\w+)\) ", _SCRIPT, re.M))
    if read != set(FRONT_VARS):
        raise ValueError(f"the sh front reads {sorted(read)}, queries {sorted(FRONT_VARS)}")
    names = ",".join(f"'{v}'" for v in FRONT_VARS)
    query = shlex.quote(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    return _SCRIPT.format(guard=sh_monitor.RECURRING_MONITOR,
        checks="\n".join(sh_monitor.param_checks(agent)),
        binary=_sh_word(defaults["binary"]), pid=_sh_word(defaults["pid"]),
        socket=_sh_word(defaults["socket"]), clients=" ".join(map(shlex.quote, CLIENTS)),
        query=query, healthy="|".join(shlex.quote(s) for s in HEALTHY_STATES),
        record_interval=int(RECORD_INTERVAL) - 1,
        alone_interval=int(ALONE_RECORD_INTERVAL) - 1, python=python, program=program)


def _sh_word(text: str) -> str:
    """A default inside ${VAR-default}: plain paths only (no quoting games there)."""
    if shlex.quote(text) != text:
        raise ValueError(f"default {text!r} needs quoting: no sh monitor")
    return text
