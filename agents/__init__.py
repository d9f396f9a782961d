"""agents part of pacestack (imported as pacestack.agents)."""
