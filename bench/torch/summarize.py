"""Summarize a bench/torch rows file (``run.py --json``) as the markdown tables of bench/README.md:
one row per seed and tuner, then per tuner the mean and standard deviation of the best accuracy,
the median wall time, and against Ray (same seed) the accuracy difference in validation images
(one image is 1/540) and the wall-time ratio; for rows with the epochs' clocks (``train_core_s``,
timed.py), where the wall time goes: the training alone on 2 workers (core-seconds / 2), the
rest (wall minus that), and the ratio a tuner with no cost beyond training would have to Ray.

    python bench/torch/summarize.py bench/torch/results-6seeds.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

VALIDATION_IMAGES = 540
NAMES = {
    "ash": "ash (promotion ASHA)",
    "ash-stop": "ash (stopping on reports)",
    "ash-bohb": "ash (promotion, BOHB)",
    "ash-auto": "ash (promotion, threads auto)",
    "ray": "Ray Tune ASHA",
    "optuna": "Optuna TPE+SH",
}


def main(path: str) -> None:
    rows: list[dict[str, Any]] = json.loads(Path(path).read_text())
    tuners = list(dict.fromkeys(r["tuner"] for r in rows))
    print(
        "| seed | tuner | wall s | best accuracy (max at R) | epochs | trials at R | "
        "peak RSS MB | disk left |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['tuner']} | {r['wall_s']:.1f} | {r['best_accuracy']:.4f} "
            f"({r['max_accuracy']:.4f}) | {r['epochs']} | {r['full_trials']} | "
            f"{r['peak_rss_mb']:,.0f} | {r['disk_mb']:.2f} MB, {r['disk_files']} files |"
        )
    ray = {r["seed"]: r for r in rows if r["tuner"] == "ray"}
    print()
    print(
        "| tuner | best accuracy mean ± std | wall s median | epochs median | "
        "vs Ray: images better per seed (mean) | vs Ray: wall ratio per seed (median) |"
    )
    print("|---|---|---|---|---|---|")
    for t in tuners:
        mine = [r for r in rows if r["tuner"] == t]
        acc = [r["best_accuracy"] for r in mine]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        wall = statistics.median(r["wall_s"] for r in mine)
        epochs = statistics.median(r["epochs"] for r in mine)
        vs = ""
        if t != "ray" and ray:
            diff = [
                round((r["best_accuracy"] - ray[r["seed"]]["best_accuracy"]) * VALIDATION_IMAGES)
                for r in mine
                if r["seed"] in ray
            ]
            ratio = [r["wall_s"] / ray[r["seed"]]["wall_s"] for r in mine if r["seed"] in ray]
            vs = (
                f"{', '.join(f'{d:+d}' for d in diff)} ({statistics.mean(diff):+.1f}) | "
                f"{', '.join(f'{x:.2f}' for x in ratio)} ({statistics.median(ratio):.2f}x)"
            )
        else:
            vs = " | "
        print(
            f"| {NAMES.get(t, t)} | {statistics.mean(acc):.4f} ± {std:.4f} | {wall:.1f} | "
            f"{epochs:.0f} | {vs} |"
        )
    clocked = [t for t in tuners if all("train_core_s" in r for r in rows if r["tuner"] == t)]
    if not clocked:
        return
    print()
    print(
        "| tuner | training on 2 workers, s (median) | wall minus training, s (median) | "
        "training alone / Ray's wall, per seed (median) |"
    )
    print("|---|---|---|---|")
    for t in clocked:
        mine = [r for r in rows if r["tuner"] == t]
        train = [r["train_core_s"] / 2 for r in mine]
        rest = [r["wall_s"] - r["train_core_s"] / 2 for r in mine]
        floor = [r["train_core_s"] / 2 / ray[r["seed"]]["wall_s"] for r in mine if r["seed"] in ray]
        shown = f"{statistics.median(floor):.2f}x" if floor and t != "ray" else ""
        print(
            f"| {NAMES.get(t, t)} | {statistics.median(train):.1f} | "
            f"{statistics.median(rest):.1f} | {shown} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
