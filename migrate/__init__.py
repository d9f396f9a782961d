"""migrate part of pacestack (imported as pacestack.migrate)."""
