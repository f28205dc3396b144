"""Search-space domains: parsing, seeded sampling, membership."""

from __future__ import annotations

import math
import random

import pytest

from ash.scheduler.core.space import (
    Choice,
    Constant,
    Int,
    LogUniform,
    SearchSpace,
    SpaceError,
    Uniform,
)

TABLE = {
    "lr": {"log_uniform": [1e-4, 1.0]},
    "units": {"int": [4, 512], "log": True},
    "layers": {"int": [1, 3]},
    "act": {"choice": ["relu", "tanh"]},
    "p": {"uniform": [0.0, 0.5]},
    "epochs_per_eval": 2,
}


def test_parse_kinds() -> None:
    space = SearchSpace.from_table(TABLE)
    d = space.domains
    assert d["lr"] == LogUniform(1e-4, 1.0)
    assert d["units"] == Int(4, 512, log=True)
    assert d["layers"] == Int(1, 3)
    assert d["act"] == Choice(("relu", "tanh"))
    assert d["p"] == Uniform(0.0, 0.5)
    assert d["epochs_per_eval"] == Constant(2)


def test_sampling_is_seeded_and_inside() -> None:
    space = SearchSpace.from_table(TABLE)
    a = [space.sample(random.Random(7)) for _ in range(3)]
    b = [space.sample(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    configs = [space.sample(rng) for _ in range(2000)]
    for c in configs:
        space.check(c)
        assert all(0.0 <= u <= 1.0 for u in space.unit(c))
    lrs = [c["lr"] for c in configs]
    below = sum(1 for x in lrs if isinstance(x, float) and x < 1e-2)  # half the log range
    assert 0.4 < below / len(lrs) < 0.6
    assert {c["layers"] for c in configs} == {1, 2, 3}
    units = [c["units"] for c in configs]
    assert min(units) >= 4 and max(units) <= 512
    assert sum(1 for u in units if isinstance(u, int) and u < 45) / len(units) > 0.35  # log


def test_check_rejects_outside_unknown_and_nonfinite() -> None:
    space = SearchSpace.from_table(TABLE)
    good = space.sample(random.Random(0))
    for bad, key in [
        ({**good, "lr": 2.0}, "lr"),
        ({**good, "lr": math.nan}, "lr"),
        ({**good, "layers": 1.5}, "layers"),
        ({**good, "act": "gelu"}, "act"),
        ({**good, "extra": 1}, "extra"),
    ]:
        with pytest.raises(SpaceError) as info:
            space.check(bad)
        assert info.value.key == key


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ({"int": [1.5, 3]}, "integers"),
        ({"int": [5, 1]}, "inverted"),
        ({"int": [0, 5], "log": True}, "> 0"),
        ({"uniform": [0, 1], "choice": [1]}, "exactly one"),
        ({"choice": [1, 1]}, "repeat"),
        ({"uniform": [0, "a"]}, "finite numbers"),
        ({"uniform": 3}, "[low, high]"),
        ({"choice": [1], "log": True}, "applies to int and uniform"),
        ([1, 2], "expected a constant or a table"),
    ],
)
def test_bad_domains(entry: object, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        SearchSpace.from_table({"x": entry})
    assert fragment in str(info.value) and info.value.key.startswith("x")
