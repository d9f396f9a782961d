"""pacestack: highly available OpenStack controllers on Pacemaker, and the move onto them.

This package is the ground floor shared by the parts (pacestack.agents,
pacestack.cluster, pacestack.migrate). It must never import any of them.
"""

__version__ = "0.1.0"
