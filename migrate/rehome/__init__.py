"""``pacestack migrate rehome``: move instances onto new compute hosts and bring
them back on Open vSwitch, one resumable state machine per instance.

openstacksdk is imported only on this code path (it is the ``rehome`` extra).
"""
