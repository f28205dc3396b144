"""Study-spec validation: every problem names the file, the key and what is wrong."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ash.spec import SpecError, load_spec, parse_spec
from helpers import BIN, EXAMPLES

GOOD = (EXAMPLES / "iris.toml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    assert str(tmp_path / "study.toml") in str(info.value)
    return info.value.problems


def test_bundled_example_is_valid() -> None:
    spec = load_spec(EXAMPLES / "iris.toml")
    assert spec.algorithm == "asha" and spec.metric == "val_loss" and spec.mode == "min"
    assert spec.schedule.max_resource == 27 and spec.trainer is not None
    assert len(spec.space.domains) == 7


@pytest.mark.parametrize(
    "old,new,key,fragment",
    [
        ("reduction_factor = 3", "reduction_factor = 1", "asha.reduction_factor", ">= 2"),
        ("min_resource = 1", "min_resource = 0", "asha.min_resource", "> 0"),
        ("min_resource = 1", "min_resource = 30", "asha.max_resource", ">= min_resource"),
        ('algorithm = "asha"', 'algorithm = "bohb"', "study.algorithm", "unknown algorithm"),
        ('mode = "min"', 'mode = "minimize"', "study.mode", "'min' or 'max'"),
        ("seed = 0", 'seed = "zero"', "study.seed", "integer"),
        ("max_trials = 200", "max_trials = 2.5", "asha.max_trials", "integer"),
        ("max_trials = 200", "max_trials = 0", "asha.max_trials", ">= 1"),
        ("brackets = 1", "brackets = 9", "asha.brackets", "no rung would be left"),
        (
            "early_stopping_rate = 0",
            "early_stopping_rate = 4",
            "asha.early_stopping_rate",
            "no rung",
        ),
        ("[1e-4, 1.0]", "[1.0, 1e-4]", "space.lr.log_uniform", "inverted"),
        ("[1e-4, 1.0]", "[0, 1.0]", "space.lr.log_uniform", "> 0"),
        ("uniform = [0.0, 0.5]", "uniform = [0.5, 0.5]", "space.dropout.uniform", "empty"),
        ("choice = [8, 16, 32, 64]", "choice = []", "space.hidden.choice", "non-empty"),
        ("uniform = [0.0, 0.99]", "normal = [0.0, 0.99]", "space.momentum", "unknown distribution"),
        ('type = "mlp"', 'type = "torch"', "trainer.type", "unknown trainer"),
        (
            "validation_fraction = 0.3",
            "validation_fraction = 1.5",
            "trainer.validation_fraction",
            "between 0 and 1",
        ),
        ("max_trials = 200", "max_trials = 200\nmax_trails = 5", "asha.max_trails", "unknown key"),
    ],
)
def test_each_problem_names_key(
    tmp_path: Path, old: str, new: str, key: str, fragment: str
) -> None:
    assert old in GOOD
    found = problems(tmp_path, GOOD.replace(old, new, 1))
    assert any(k == key and fragment in msg for k, msg in found), found


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("reduction_factor = 3", "reduction_factor = 1").replace(
        'mode = "min"', 'mode = "up"'
    )
    keys = {k for k, _ in problems(tmp_path, text)}
    assert {"asha.reduction_factor", "study.mode"} <= keys


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot be read"):
        load_spec(tmp_path / "missing.toml")
    assert problems(tmp_path, "[study\nname=")[0][0] == "toml"


def test_python_trainer_needs_entrypoint(tmp_path: Path) -> None:
    text = GOOD.replace('type = "mlp"', 'type = "python"')
    assert any(k == "trainer.entrypoint" for k, _ in problems(tmp_path, text))
    ok = text.replace('dataset = "iris"', 'entrypoint = "mypkg.train:fit"')
    ok = "\n".join(x for x in ok.splitlines() if not x.startswith("validation_fraction"))
    assert load_spec(write(tmp_path, ok)).trainer.entrypoint == "mypkg.train:fit"  # type: ignore[union-attr]


def test_a_study_must_end(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("max_trials = 200", ""))
    assert found == [("asha", "set max_trials or time_limit_s: otherwise the study never ends")]


def test_cli_exit_code_2_without_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace("reduction_factor = 3", "reduction_factor = 1"))
    proc = subprocess.run(
        [str(BIN / "ash"), "simulate", str(bad), "--workers", "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}: asha.reduction_factor: must be >= 2" in proc.stderr


def test_every_bad_parameter_of_the_space_is_named_at_once() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            {
                "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 5},
                "space": {
                    "hidden": {"choice": [8, 8]},
                    "dropout": {"uniform": [0.5, 0.1]},
                    "units": 3,
                    "lr": {"log_uniform": [0, 1.0]},
                },
            },
            source="s.toml",
        )
    keys = [k for k, _ in info.value.problems]
    assert keys == ["space.hidden.choice", "space.dropout.uniform", "space.lr.log_uniform"]


def test_a_python_trainer_refuses_the_mlp_trainers_data_keys() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            {
                "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 5},
                "trainer": {
                    "type": "python",
                    "entrypoint": "m:fit",
                    "dataset": "digits",
                    "validation_fraction": 0.2,
                },
                "space": {"x": {"uniform": [0, 1]}},
            },
            source="s.toml",
        )
    assert [k for k, _ in info.value.problems] == [
        "trainer.dataset",
        "trainer.validation_fraction",
    ]


def test_enqueue_follows_the_spaces_when_conditions() -> None:
    """An enqueued config gives exactly the active parameters: one whose `when` does not hold is
    left out (and refused when set, so it never reaches the trainer)."""
    space = {
        "x": {"uniform": [0.0, 1.0]},
        "optimizer": {"choice": ["sgd", "adam"]},
        "momentum": {"uniform": [0.0, 0.95], "when": {"optimizer": "sgd"}},
    }

    def spec(*configs: dict[str, object]) -> object:
        return parse_spec(
            {
                "study": {"name": "c", "metric": "loss", "enqueue": list(configs)},
                "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 4},
                "trainer": {"type": "python", "entrypoint": "m:f"},
                "space": space,
            },
            source="c.toml",
        )

    got = spec({"x": 0.5, "optimizer": "adam"}, {"x": 0.1, "optimizer": "sgd", "momentum": 0.9})
    assert got.enqueue == (
        {"x": 0.5, "optimizer": "adam"},  # type: ignore[attr-defined]
        {"x": 0.1, "optimizer": "sgd", "momentum": 0.9},
    )
    got = spec({"x": 0.5, "optimizer": "adam", "momentum": 0.3})  # an earlier ash required it
    assert got.enqueue == ({"x": 0.5, "optimizer": "adam"},)  # type: ignore[attr-defined]
    with pytest.raises(SpecError) as err:
        spec({"x": 0.1, "optimizer": "sgd"}, {"x": 0.1, "optimizer": "sdg", "momentum": 0.9})
    text = str(err.value)
    assert "study.enqueue[0].momentum: missing" in text
    assert "study.enqueue[1].optimizer: 'sdg' is outside" in text
    assert "enqueue[1].momentum" not in text  # its parent's typo is the one problem
