"""``ash simulate``: load the spec, resolve the benchmark, run the simulator, write outputs.

The spec is the authority on the metric and its direction (the core ranks by ``spec.mode``);
a recorded benchmark that does not fit it is refused by ``resolve``."""

from __future__ import annotations

import argparse
import time

from ash.paths import check_out_dir, check_trace_file
from ash.scheduler.benchmarks import resolve
from ash.scheduler.results import Results
from ash.scheduler.simulator import simulate
from ash.scheduler.trace import TraceWriter, refuse_used
from ash.spec import load_spec


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    sch = spec.schedule
    bench = resolve(
        args.benchmark,
        spec.space,
        seed=args.seed,
        metric=spec.metric,
        mode=spec.mode,
        max_resource=sch.max_resource,
    )  # before --out is made: a refused recording leaves nothing behind
    check_out_dir(args.out, "--out")
    check_trace_file(args.trace, "--trace")
    refuse_used(args.trace)
    results = Results(spec.name, spec.metric, spec.mode, sch.max_resource)
    trace = TraceWriter(args.trace)
    started = time.perf_counter()
    try:
        stats = simulate(
            spec,
            bench,
            args.workers,
            seed=args.seed,
            stragglers=args.stragglers,
            straggler_alpha=args.straggler_alpha,
            trace=trace,
            results=results,
        )
    finally:
        trace.close()
    wall = time.perf_counter() - started
    if args.out:
        results.write(args.out)
    if not args.quiet:
        best = results.best()
        print(
            f"{spec.name}: {spec.algorithm}, {args.workers} workers: {stats.trials} trials, "
            f"{stats.results} results in {stats.virtual_seconds:.1f} virtual s "
            f"(workers busy {stats.busy_fraction:.0%}); simulated in {wall:.2f} s"
        )
        if best is not None:
            print(
                f"best: trial {best['trial']} {spec.metric}={best['value']:.6g} "
                f"at resource {best['resource']} {best['config']}"
            )
    return 0
