"""Issue #13: numbers in a spec that used to pass the checker and crash later are refused.

min_resource = 5e-324 overflowed while the ladder was built (a traceback); uniform over
[-1e308, 1e308] sampled inf and lost the study while writing results.json. Each such spec is now
a SpecError naming the file and the key; a ladder at the edge of the limits still works.
"""

from __future__ import annotations

import math
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ash.scheduler.core import Scheduler
from ash.scheduler.core.ladder import MAX_RUNGS, max_rungs
from ash.scheduler.core.space import SearchSpace, SpaceError
from ash.spec import SpecError, parse_spec
from ash.worker.datasets import load, split
from helpers import BIN, make_spec


@pytest.mark.parametrize(
    ("asha", "key", "words"),
    [
        ({"min_resource": 5e-324}, "asha.min_resource", "must be a normal number"),
        ({"min_resource": 1e-300, "max_resource": 1e300}, "asha", "overflows"),
        ({"max_resource": 1e300, "reduction_factor": 2}, "asha", "997 rungs, more than 64"),
        ({"max_resource": 2.0**64, "reduction_factor": 2}, "asha", "65 rungs, more than 64"),
        ({"time_limit_s": 1e308}, "asha.time_limit_s", "<= 1e+08 s"),
    ],
)
def test_ladders_that_would_overflow_are_refused(
    asha: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        make_spec("hyperband", brackets=2, **asha)
    assert [k for k, _ in info.value.problems] == [key], info.value.problems
    assert words in info.value.problems[0][1]
    assert str(info.value).startswith(f"test.toml: {key}: ")


def test_ladders_at_the_edge_still_work() -> None:
    spec = make_spec("hyperband", brackets=2, max_resource=2.0**63, reduction_factor=2)
    core = Scheduler(spec, random.Random(0))
    assert core.s_max == MAX_RUNGS - 1
    spec = make_spec("hyperband", brackets=2, max_resource=1.5e308, reduction_factor=1e308)
    core = Scheduler(spec, random.Random(0))
    job = core.next_job(0.0)
    assert job is not None and math.isfinite(job.stop)
    assert max_rungs(1e-300, 1e300, 2.0) > 1000  # past the gate it stops, it does not raise


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"uniform": [-1e308, 1e308]}, "the width high - low of [-1e+308, 1e+308] overflows"),
        ({"int": [-(2**62), 2**62]}, "within +-2**53"),
        ({"log_uniform": [1e300, math.nextafter(1e300, math.inf)]}, "too close"),
        ({"log_uniform": [0.0, 1.0]}, "must be > 0"),
    ],
)
def test_domains_that_sample_inf_or_nan_are_refused(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_table({"x": entry})
    assert info.value.key.startswith("x.") and words in info.value.message


def test_wide_but_finite_domains_sample_finite_values() -> None:
    space = SearchSpace.from_table(
        {
            "a": {"uniform": [-8e307, 8e307]},
            "b": {"log_uniform": [1e-300, 1e300]},
            "c": {"int": [-(2**53), 2**53]},
            "d": {"log_int": [1, 2**53]},
        }
    )
    rng = random.Random(0)
    for _ in range(200):
        config = space.sample(rng)
        space.check(config)
        assert all(0.0 <= u <= 1.0 for u in space.unit(config))


def test_trainer_timeout_is_bounded() -> None:
    with pytest.raises(SpecError, match=r"trainer\.timeout_s: must be > 0 and <= 1e\+08"):
        parse_spec(
            {
                "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 3},
                "trainer": {"type": "python", "entrypoint": "m:f", "timeout_s": 1e308},
                "space": {"x": 1},
            },
            source="t.toml",
        )


def test_a_negative_seed_still_splits() -> None:
    assert split(load("iris"), 0.3, -1).X_train.shape == (105, 4)


def test_tune_refuses_a_uniform_that_overflows(tmp_path: Path) -> None:
    spec = tmp_path / "wide.toml"
    spec.write_text(
        "[study]\nmetric = 'loss'\n[asha]\nmin_resource = 1\nmax_resource = 9\nmax_trials = 3\n"
        "[trainer]\ntype = 'python'\nentrypoint = 'm:f'\n"
        "[space]\nx = { uniform = [-1e308, 1e308] }\n"
    )
    proc = subprocess.run(
        [str(BIN / "ash"), "tune", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{spec}: space.x.uniform: the width high - low" in proc.stderr
