"""A real Corosync/Pacemaker cluster on one machine, in namespaces (the lab).

Shared by ``pacestack lab``, the agents' tests and the cluster tests; see
harness.LabCluster. Standard library only.
"""

from .harness import LabCluster
from .netns import LabError
from .nodes import ClusterView, LabCommandError, Node, NodeRoot
from .state import cleanup_stale

__all__ = ["LabCluster", "LabError", "LabCommandError", "Node", "NodeRoot", "ClusterView",
           "cleanup_stale"]
