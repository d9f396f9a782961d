"""The failover drill: scenarios (scenarios.py) run against a target (target.py:
the lab in lab_target.py, real controllers over ssh in ssh_target.py), with a
writer and probes (probe.py) and the command (cli.py)."""

from pacestack.cluster.drill.scenarios import (
    SCENARIOS,
    DrillReport,
    ScenarioResult,
    run,
    work_directory,
)

__all__ = ["SCENARIOS", "DrillReport", "ScenarioResult", "run", "work_directory"]
