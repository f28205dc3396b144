"""What an ash-worker agrees to run: --allow-trainer, --allow-entrypoint, --data-root.

A real ash-scheduler on 127.0.0.1 port 0 serves a study; a worker whose flags refuse its spec
must exit 2 with the reason on stderr (no traceback) and leave the study to others: a worker
that is allowed then finishes it. The policy itself and the flags are unit-tested.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ash.spec import StudySpec, parse_spec
from ash.worker.daemon import build_parser, plaintext_token_warning
from ash.worker.trust import TrustPolicy, policy_from_args
from helpers import Scheduler, results, worker, write_study


def spec_with(trainer: dict[str, Any], base_dir: Path) -> StudySpec:
    return parse_spec(
        {
            "study": {"name": "t", "metric": "val_loss"},
            "asha": {"min_resource": 1, "max_resource": 9, "max_trials": 4},
            "trainer": trainer,
            "space": {"lr": {"log_uniform": [1e-3, 1.0]}},
        },
        source="t.toml",
        base_dir=base_dir,
    )


def policy(*argv: str) -> TrustPolicy:
    return policy_from_args(build_parser().parse_args(["--scheduler", "x:1", *argv]))


def test_refused_worker_exits_2_and_an_allowed_one_finishes_the_study(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    spec = write_study(tmp_path, max_trials=3)  # python trainer user_trainer:fit
    out = tmp_path / "out"
    sched = Scheduler(spec, tmp_path, "--out", str(out), "--linger", "0")
    cleanup.append(sched)
    for flags, reason in [
        (["--allow-trainer", "mlp"], "trainer.type 'python' is not allowed here"),
        (["--allow-entrypoint", "trainers.*:*"], "matches no --allow-entrypoint"),
    ]:
        w = worker(sched.target, tmp_path, "refuser", "--retry-for", "5", *flags)
        cleanup.append(w)
        code = w.wait(timeout=60)
        stderr = w.stderr.read() if w.stderr else ""
        assert code == 2, stderr
        assert "refusing study 'py'" in stderr and reason in stderr, stderr
        assert "Traceback" not in stderr
        assert sched.proc.poll() is None  # the scheduler carries on
    ok = worker(
        sched.target,
        tmp_path,
        "allowed",
        "--allow-trainer",
        "mlp,python",
        "--allow-entrypoint",
        "user_trainer:*",
        env={"SLEEP": "0"},
    )
    cleanup.append(ok)
    assert ok.wait(timeout=120) == 0, ok.stderr.read() if ok.stderr else ""
    assert sched.wait() == 0
    assert len(results(out)["trials"]) == 3


def test_dataset_outside_data_root_is_refused(tmp_path: Path, cleanup: list[Any]) -> None:
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    csv = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20))
    (outside / "secret.csv").write_text(csv)
    spec = tmp_path / "mlp.toml"
    spec.write_text(
        textwrap.dedent(
            f"""
            [study]
            name = "outside"
            metric = "val_loss"
            [asha]
            min_resource = 1
            max_resource = 3
            max_trials = 2
            [trainer]
            type = "mlp"
            dataset = "{outside / "secret.csv"}"
            [space]
            lr = {{ log_uniform = [1e-3, 1.0] }}
            """
        )
    )
    sched = Scheduler(spec, tmp_path)
    cleanup.append(sched)
    w = worker(sched.target, tmp_path, "confined", "--data-root", str(root))
    cleanup.append(w)
    code = w.wait(timeout=60)
    stderr = w.stderr.read() if w.stderr else ""
    assert code == 2, stderr
    assert f"outside --data-root {root}" in stderr and "secret.csv" in stderr, stderr
    assert "Traceback" not in stderr


def test_policy_allows_by_default_and_confines_when_asked(tmp_path: Path) -> None:
    py = spec_with({"type": "python", "entrypoint": "team.trainers:fit"}, tmp_path)
    mlp = spec_with({"type": "mlp", "dataset": "iris"}, tmp_path)
    assert policy().refusal(py) is None and policy().refusal(mlp) is None
    assert policy("--allow-trainer", "python").refusal(py) is None
    assert "not allowed" in (policy("--allow-trainer", "python").refusal(mlp) or "")
    assert "not allowed" in (policy("--allow-trainer", "mlp").refusal(py) or "")
    both = policy("--allow-trainer", "mlp", "--allow-trainer", "python")
    assert both.trainers == {"mlp", "python"}
    assert policy("--allow-entrypoint", "team.*:fit").refusal(py) is None
    two = policy("--allow-entrypoint", "other:*", "--allow-entrypoint", "team.trainers:f*")
    assert two.refusal(py) is None
    assert "team.trainers:fit" in (policy("--allow-entrypoint", "team:*").refusal(py) or "")
    # the pattern is matched against the whole name, case-sensitively
    assert policy("--allow-entrypoint", "TEAM.*").refusal(py) is not None


def test_data_root_follows_relative_paths_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.csv").write_text("x,y\n1,0\n")
    (tmp_path / "secret.csv").write_text("x,y\n1,0\n")
    (root / "link.csv").symlink_to(tmp_path / "secret.csv")
    confined = policy("--data-root", str(root))

    def refusal(dataset: str, base: Path = tmp_path) -> str | None:
        return confined.refusal(spec_with({"type": "mlp", "dataset": dataset}, base))

    assert refusal("iris") is None and refusal("digits") is None  # bundled: always
    assert refusal(str(root / "sub" / "ok.csv")) is None
    assert refusal("data/sub/ok.csv") is None  # relative to the worker's directory
    assert refusal("ok.csv", root / "sub") is None
    assert refusal("secret.csv") is not None
    assert refusal("data/sub/../../secret.csv") is not None
    assert refusal(str(root / "link.csv")) is not None  # a symlink out of the root


def test_bad_trust_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, fragment in [
        (["--allow-trainer", "jax"], "--allow-trainer: expected mlp or python"),
        (["--allow-trainer", ","], "--allow-trainer: expected mlp or python"),
    ]:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["--scheduler", "x:1", *argv])
        assert exc.value.code == 2
        assert fragment in capsys.readouterr().err


def test_data_root_must_be_a_directory(tmp_path: Path) -> None:
    from ash.errors import UserError

    args = argparse.Namespace(allow_trainer=None, allow_entrypoint=None, data_root="nope")
    with pytest.raises(UserError, match="--data-root nope: not a directory"):
        policy_from_args(args)


@pytest.mark.parametrize(
    ("target", "token", "tls", "warns"),
    [
        ("10.1.2.3:50051", True, False, True),
        ("scheduler:50051", True, False, True),
        ("dns:///ash.example.org:443", True, False, True),
        ("10.1.2.3:50051", True, True, False),  # TLS
        ("10.1.2.3:50051", False, False, False),  # no token to leak
        ("127.0.0.1:50051", True, False, False),
        ("localhost:50051", True, False, False),
        ("[::1]:50051", True, False, False),
        ("unix:/run/ash.sock", True, False, False),
    ],
)
def test_token_over_plaintext_warns_off_loopback(
    target: str, token: bool, tls: bool, warns: bool
) -> None:
    warning = plaintext_token_warning(target, token, tls)
    assert (warning is not None) == warns
    if warning is not None:
        assert "plaintext" in warning and target in warning
