"""Real, not simulated: ash's sampler against random-ASHA and Optuna TPE+SH at equal wall time.

The digits study of bench/efficiency/real.py (the same spec, data, 2 worker processes x 1 kernel
thread, maximising validation accuracy for ``--seconds`` of wall time, seeds interleaved so that
machine load hits all methods alike), with these methods:

- ``ash-random``: ``ash tune``, algorithm ``asha``, the random sampler (random-ASHA);
- ``ash-<sampler>``: the same with ``[study] sampler = "<sampler>"`` (``--sampler``, default
  ``tpe``), the sampler bench/search found best;
- ``optuna``: bench/efficiency/real.py's Optuna run (TPESampler + SuccessiveHalvingPruner,
  ``study.optimize(n_jobs=2, timeout=budget)`` on the same native kernel).

The score is the best validation accuracy among models trained to R; the table gives each seed's
value, the mean and the sample standard deviation.

    python bench/search/real.py --seconds 60 --seeds 5 --sampler tpe      # the benchmark
    python bench/search/real.py --seconds 5 --seeds 1 --methods ash-random  # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("eff_real", HERE.parent / "efficiency" / "real.py")
assert _spec is not None and _spec.loader is not None
eff = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eff)


def run_ash(sampler: str, seed: int, seconds: float, folder: Path) -> dict[str, Any]:
    """bench/efficiency's ash run with ``[study] sampler`` added to its spec."""
    write = eff.write_spec

    def with_sampler(folder: Path, algorithm: str, seed: int, seconds: float) -> Path:
        path: Path = write(folder, algorithm, seed, seconds)
        if sampler != "random":
            text = path.read_text().replace(
                'algorithm = "asha"', f'algorithm = "asha"\nsampler = "{sampler}"', 1
            )
            path = path.with_name(f"digits-{sampler}-{seed}.toml")
            path.write_text(text)
        return path

    eff.write_spec = with_sampler
    try:
        sub = folder / sampler
        sub.mkdir(exist_ok=True)
        got: dict[str, Any] = eff.run_ash("asha", seed, seconds, sub)
        return got
    finally:
        eff.write_spec = write


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-time budget per run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sampler", default="tpe", help="ash's model-based sampler")
    ap.add_argument("--methods", default=None, help="default: ash-random,ash-SAMPLER,optuna")
    ap.add_argument("--json", default=str(HERE / "real.json"))
    args = ap.parse_args()
    methods = (args.methods or f"ash-random,ash-{args.sampler},optuna").split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ash-search-real-") as tmp:
        for seed in range(args.seeds):
            for method in methods:  # interleaved, so that machine load hits all alike
                if method == "optuna":
                    proc = subprocess.run(
                        [
                            sys.executable,
                            str(HERE.parent / "efficiency" / "real.py"),
                            "--seconds",
                            str(args.seconds),
                            "--optuna-child",
                            str(seed),
                        ],
                        check=True,
                        capture_output=True,
                        text=True,
                        env={**os.environ, "OMP_NUM_THREADS": "1"},
                    )
                    got = json.loads(proc.stdout.strip().splitlines()[-1])
                elif method.startswith("ash-"):
                    got = run_ash(method.removeprefix("ash-"), seed, args.seconds, Path(tmp))
                else:
                    ap.error(f"--methods: unknown method {method!r}")
                row = {"method": method, "seed": seed, **got}
                rows.append(row)
                print(json.dumps(row), flush=True)
    Path(args.json).write_text(json.dumps({"seconds": args.seconds, "runs": rows}) + "\n")
    print("\n| method | best val_accuracy per seed | mean | std | trials (to R) | wall s |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        rs = [r for r in rows if r["method"] == method]
        vals = [r["best"] for r in rs if r["best"] is not None]
        sd = statistics.stdev(vals) if len(vals) > 1 else math.nan
        print(
            f"| {method} | {', '.join(f'{v:.4f}' for v in vals) or '-'} ({len(vals)}/{len(rs)})"
            f" | {statistics.fmean(vals) if vals else math.nan:.4f} | {sd:.4f}"
            f" | {statistics.fmean(r['trials'] for r in rs):.0f}"
            f" ({statistics.fmean(r['trained_to_R'] for r in rs):.0f})"
            f" | {statistics.fmean(r['wall'] for r in rs):.1f} |"
        )


if __name__ == "__main__":
    main()
