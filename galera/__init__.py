"""galera part of pacestack (imported as pacestack.galera): Galera operations on the
agent's own rule (agents/galera_bootstrap.py)."""
