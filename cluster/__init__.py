"""cluster part of pacestack (imported as pacestack.cluster)."""
