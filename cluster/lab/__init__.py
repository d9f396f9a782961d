"""A real Corosync/Pacemaker cluster on one machine, in namespaces (the lab).

Shared by ``pacestack lab``, the agents' tests and the cluster tests. Standard
library only. The whole API::

    lab = LabCluster(run_id=None, nodes=("controller01", "controller02"),
                     arbitrator="arbitrator", base_dir=None, token_ms=1000)
    lab.start(timeout=60)            # forms the cluster; returns when all nodes are online
    lab.node("controller01")         # Node: .name .address .root .run() .popen()
                                     #   .start_daemon() -> host PID, .pids(), .running(prog)
                                     #   .status() -> ClusterView, .online(), .log_tail()
    lab.arbitrator                   # a Node with no cluster stack (for garbd)
    lab.crash(name)                  # SIGKILL of the host's PID 1; /run emptied as a reboot
    lab.restart(name)                # boot again, start corosync+pacemaker, wait to rejoin
    lab.shutdown(name)               # clean stack stop (resources move), host stays up
    lab.wait_online(names, timeout)  # / lab.wait_offline(name, observer, timeout)
    lab.cut_link(name) / lab.restore_link(name)   # unplug a host from the lab switch
    lab.network, lab.address(i), lab.spare_address(n)   # 10.99.X.0/24, inside only
    lab.pids(), lab.describe(), lab.timings
    lab.detach() / LabCluster.attach(run_id)       # a lab that outlives its process
    lab.destroy()                    # also: with LabCluster() as lab: ...
    cleanup_stale()                  # removes runs whose owner died (start() calls it)

Node.root holds the host's private directories as host paths (etc_corosync,
var_lib_corosync, var_lib_pacemaker, var_log, var_log_corosync, var_log_pacemaker,
var_log_mysql, run, etc_mysql, var_lib_mysql, var_lib_rabbitmq, etc_hosts) and host_path(inside).
"""

from .harness import LabCluster
from .netns import LabError
from .nodes import ClusterView, LabCommandError, Node, NodeRoot
from .state import cleanup_stale

__all__ = ["LabCluster", "LabError", "LabCommandError", "Node", "NodeRoot", "ClusterView",
           "cleanup_stale"]
