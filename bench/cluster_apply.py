"""Benchmark: the verified apply of the complete built-in stack on a CIB file.

  A. pacestack: plan + apply (all pcs commands in one pcs process, crm_verify) +
     verify with the full failure matrix (crm_simulate, every node and resource
     failure);
  B. the same pcs commands run one by one (`pcs -f cib.xml ...` per command, as an
     operator pastes them), then crm_verify once - no failure matrix at all.

Both build the CIB from the seed's description (examples/seed-cluster.conf) in the
same run; the configurations are compared before the times are reported.

    .venv/bin/python bench/cluster_apply.py [--description FILE] [--json]

Needs pacestack's agents in /usr/lib/ocf/resource.d/pacestack (pcs reads their
meta-data): the ones missing are installed for the run and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from pacestack.agents import install
from pacestack.cluster import apply, cib, description, pcsrun, plan, verify

ROOT = Path(__file__).resolve().parents[1]
PROVIDER = Path(install.DEFAULT_PROVIDER_DIR)


def _install_missing() -> list[Path]:
    missing = [n for n in install.available_agents() if not (PROVIDER / n).exists()]
    return [Path(p) for p in install.install_agents(str(PROVIDER), names=missing)] \
        if missing else []


def _remove(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _config_signature(path: str) -> tuple:
    have = cib.read_file(path)
    prims = sorted((p.id, p.agent, tuple(sorted(p.params.items())), p.mode,
                    tuple(sorted(p.clone_meta.items()))) for p in have.primitives.values())
    stonith = sorted((p.id, p.agent, tuple(sorted(p.params.items())))
                     for p in have.stonith.values())
    cons = sorted(repr(c.signature()) for c in have.constraints.values())
    return prims, stonith, cons, tuple(sorted(have.properties.items()))


def _cpu() -> float:
    """CPU seconds used by this process and its finished children: unlike wall time,
    it does not grow when other users load the machine."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(desc_path: str) -> dict:
    desc = description.load([desc_path])
    with tempfile.TemporaryDirectory(prefix="pacestack-bench-") as work:
        a_path, b_path = os.path.join(work, "a.xml"), os.path.join(work, "b.xml")
        c0 = _cpu()
        t0 = time.monotonic()
        steps = plan.build(desc)
        t_plan = time.monotonic() - t0
        result = apply.apply(desc, cib_file=a_path)
        t_apply = time.monotonic() - t0 - t_plan
        report = verify.verify(desc, cib_file=a_path)
        t_a = time.monotonic() - t0
        cpu_a = _cpu() - c0
        assert report.ok, report.findings

        with open(b_path, "w", encoding="utf-8") as fh:
            fh.write(cib.empty_cib())
        c0 = _cpu()
        t0 = time.monotonic()
        results = pcsrun.run_one_by_one(b_path, [s.argv for s in steps])
        problems = pcsrun.crm_verify(b_path)
        t_b = time.monotonic() - t0
        cpu_b = _cpu() - c0
        assert all(r.rc == 0 for r in results) and len(results) == len(steps), \
            results[-1].stderr
        assert problems == [], problems
        same = _config_signature(a_path) == _config_signature(b_path)
        assert same, "the two paths built different configurations"
    return {
        "pcs_commands": len(steps),
        "resources": len(plan.all_resources(desc)),
        "scenarios": len(report.scenarios),
        "a_plan_s": round(t_plan, 3),
        "a_apply_s": round(t_apply, 3),
        "a_verify_s": round(report.seconds, 3),
        "a_total_s": round(t_a, 3),
        "a_cpu_s": round(cpu_a, 3),
        "b_one_by_one_s": round(t_b, 3),
        "b_cpu_s": round(cpu_b, 3),
        "apply_speedup": round(t_b / t_apply, 2) if t_apply else None,
        "total_ratio_b_over_a": round(t_b / t_a, 2) if t_a else None,
        "same_configuration": same,
        "changed": result.changed,
        "load_average": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--description", default=str(ROOT / "examples" / "seed-cluster.conf"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    written = _install_missing()
    try:
        out = run(args.description)
    finally:
        _remove(written)
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        print(f"built-in stack: {out['resources']} resources, {out['pcs_commands']} pcs "
              f"commands, {out['scenarios']} failure scenarios (load {out['load_average']:.1f})")
        print(f"A pacestack plan+apply+verify: {out['a_total_s']:.1f} s (plan "
              f"{out['a_plan_s']:.2f} s, apply {out['a_apply_s']:.1f} s, verify "
              f"{out['a_verify_s']:.1f} s); CPU {out['a_cpu_s']:.1f} s")
        print(f"B pcs commands one by one:    {out['b_one_by_one_s']:.1f} s (no failure "
              f"matrix); CPU {out['b_cpu_s']:.1f} s")
        print(f"apply alone {out['apply_speedup']}x faster than one by one; one by one takes "
              f"{out['total_ratio_b_over_a']}x as long as the whole verified apply; goal "
              f"< 10 s: {'met' if out['a_total_s'] < 10 else 'NOT met'} at this load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
