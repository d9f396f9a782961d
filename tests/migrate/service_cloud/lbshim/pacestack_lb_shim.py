"""The linuxbridge ML2 mechanism driver, as small as binding needs it.

Neutron 29 no longer ships linuxbridge, but a linuxbridge-era cloud's bindings
were written by it: this driver lets the real Neutron API bind ports the way
the old one did (vif_type ``bridge``, binding levels ``linuxbridge``) to hosts
whose ``Linux bridge agent`` is alive. Registered under the entry point name
``linuxbridge`` in ``neutron.ml2.mechanism_drivers`` by the dist-info beside it.
"""

from neutron.plugins.ml2.drivers import mech_agent
from neutron_lib import constants
from neutron_lib.api.definitions import portbindings

AGENT_TYPE_LINUXBRIDGE = "Linux bridge agent"
VIF_TYPE_BRIDGE = "bridge"


class LinuxbridgeMechanismDriver(mech_agent.SimpleAgentMechanismDriverBase):
    def __init__(self):
        super().__init__(
            AGENT_TYPE_LINUXBRIDGE, VIF_TYPE_BRIDGE,
            {portbindings.CAP_PORT_FILTER: True,
             portbindings.VIF_DETAILS_CONNECTIVITY: portbindings.CONNECTIVITY_L2})

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def get_allowed_network_types(self, agent=None):
        return (agent["configurations"].get("tunnel_types", [])
                + [constants.TYPE_LOCAL, constants.TYPE_FLAT, constants.TYPE_VLAN])

    def get_mappings(self, agent):
        # the agent reported physnet -> interface (and physnet -> bridge) mappings
        mappings = dict(agent["configurations"].get("interface_mappings", {}))
        mappings.update(agent["configurations"].get("bridge_mappings", {}))
        return mappings
