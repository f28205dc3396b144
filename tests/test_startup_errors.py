"""Mistakes that used to surface as a traceback after the work: now one line, exit 2, at start.

Each case names the flag (and the file) and leaves no journal behind. The flag checks run
in-process (argparse, or the start-up of ``serve``); a few run as real processes to show the
whole path, no traceback included, and that a second scheduler on a port in use is refused
while the first one carries on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ash.cli import main as ash_main
from ash.paths import check_out_dir, check_trace_file
from ash.scheduler.server import main as scheduler_main
from ash.worker.daemon import main as worker_main
from helpers import BIN, Scheduler, write_study

Main = Callable[[list[str]], int]


def fails(main: Main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main``; assert exit code 2 and no traceback; return stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    spec = write_study(tmp_path, max_trials=2)
    monkeypatch.chdir(tmp_path)  # relative paths in the cases below are inside tmp_path
    return spec


def test_scheduler_numbers_are_checked_by_argparse(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for flag, value in [
        ("--lease", "0"),
        ("--lease", "-5"),
        ("--lease", "nan"),
        ("--heartbeat", "0"),
        ("--heartbeat", "inf"),
        ("--drain-timeout", "-1"),
        ("--drain-timeout", "nan"),
        ("--linger", "-0.5"),
        ("--linger", "inf"),
        ("--max-checkpoint-mb", "-1"),
        ("--max-checkpoint-mb", "0"),
        ("--max-checkpoint-mb", "nan"),
        ("--max-checkpoint-mb", "inf"),
        ("--max-checkpoint-mb", "4096"),  # beyond gRPC's 2 GiB messages
        ("--metrics-port", "70000"),
        ("--metrics-port", "-1"),
        ("--lease", "soon"),
    ]:
        err = fails(scheduler_main, [str(study), "--listen", "127.0.0.1:0", flag, value], capsys)
        assert f"argument {flag}:" in err, (flag, value, err)
    err = fails(scheduler_main, [str(study), "--lease", "4", "--heartbeat", "4"], capsys)
    assert "--heartbeat 4 must be less than --lease 4" in err


def test_worker_numbers_are_checked_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value in [
        ("--retry-for", "-1"),
        ("--retry-for", "nan"),
        ("--grace", "-3"),
        ("--grace", "inf"),
        ("--inline-mb", "-1"),
        ("--inline-mb", "nan"),
        ("--prefetch", "-1"),
        ("--prefetch", "1.5"),
    ]:
        err = fails(worker_main, ["--scheduler", "127.0.0.1:1", flag, value], capsys)
        assert f"argument {flag}:" in err, (flag, value, err)


def scheduler_fails(study: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The scheduler refuses ``args`` at start, before its journal is created."""
    err = fails(
        scheduler_main,
        [str(study), "--listen", "127.0.0.1:0", "--journal", "j.jsonl", *args],
        capsys,
    )
    assert not Path("j.jsonl").exists()
    assert not Path("j.jsonl.ckpt").exists()
    return err


def test_scheduler_output_paths(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("a-file").write_text("x")
    Path("a-dir").mkdir()
    for args, fragment in [
        (["--out", "a-file"], "--out a-file: exists and is not a directory"),
        (["--out", "a-file/sub"], "--out a-file/sub: cannot create the directory"),
        (["--trace", "a-dir"], "--trace a-dir: is a directory"),
        (["--trace", "no-dir/t.jsonl"], "--trace no-dir/t.jsonl: its folder no-dir does not exist"),
        (["--trace", "a-file/t.jsonl"], "its folder a-file is not a directory"),
    ]:
        assert fragment in scheduler_fails(study, capsys, *args)
    assert not Path("no-dir").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_paths_without_permission(tmp_path: Path) -> None:
    from ash.errors import UserError

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(UserError, match=r"--out .*: cannot write in"):
            check_out_dir(locked, "--out")
        with pytest.raises(UserError, match=r"--out .*: cannot create the directory"):
            check_out_dir(locked / "sub", "--out")
        with pytest.raises(UserError, match=r"--trace .*: cannot write in"):
            check_trace_file(locked / "t.jsonl", "--trace")
    finally:
        locked.chmod(0o700)


def test_path_checks_leave_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out" / "deeper"
    check_out_dir(out, "--out")
    assert out.is_dir() and list(out.iterdir()) == []  # created (it will be), and empty
    trace = tmp_path / "t.jsonl"
    check_trace_file(trace, "--trace")
    assert not trace.exists()  # a trace that does not exist yet is not created
    trace.write_text('{"event": "assign"}\n')
    before = trace.stat()
    check_trace_file(trace, "--trace")
    assert trace.read_text() == '{"event": "assign"}\n'
    assert trace.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.jsonl"]


def test_scheduler_tls_files(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("garbage.pem").write_text("not a certificate\n")
    Path("bad64.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB#not*base64\n-----END CERTIFICATE-----\n"
    )
    Path("key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
    )
    for cert, key, fragment in [
        ("missing.pem", "key.pem", "--tls-cert missing.pem: cannot be read"),
        ("garbage.pem", "key.pem", "--tls-cert garbage.pem: not a PEM certificate"),
        ("bad64.pem", "key.pem", "--tls-cert bad64.pem: the CERTIFICATE block is not valid"),
        ("key.pem", "key.pem", "--tls-cert key.pem: not a PEM certificate"),
    ]:
        err = scheduler_fails(study, capsys, "--tls-cert", cert, "--tls-key", key)
        assert fragment in err, err


def test_scheduler_tls_key_must_match_the_certificate(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cryptography")
    from test_security import make_pki

    Path("pki").mkdir()
    _, cert, key = make_pki(Path("pki"))
    err = scheduler_fails(study, capsys, "--tls-cert", str(cert), "--tls-key", str(cert))
    assert f"--tls-key {cert}: not a PEM private key" in err
    other = Path("other")
    other.mkdir()
    _, _, other_key = make_pki(other)
    err = scheduler_fails(study, capsys, "--tls-cert", str(cert), "--tls-key", str(other_key))
    assert f"--tls-key {other_key}: not the private key of --tls-cert {cert}" in err
    Path("encrypted.pem").write_text(
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    err = scheduler_fails(study, capsys, "--tls-cert", str(cert), "--tls-key", "encrypted.pem")
    assert "--tls-key encrypted.pem: the private key is encrypted" in err
    # the CA checks of ash-worker and ash status
    err = fails(worker_main, ["--scheduler", "127.0.0.1:1", "--tls-ca", str(key)], capsys)
    assert f"--tls-ca {key}: not a PEM certificate" in err
    err = fails(ash_main, ["status", "--scheduler", "127.0.0.1:1", "--tls-ca", str(key)], capsys)
    assert f"--tls-ca {key}: not a PEM certificate" in err


def test_token_files(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, content, fragment in [
        ("two-lines", b"abc\ndef\n", "holds more than one line"),
        ("crlf", b"abc\r\ndef", "holds more than one line"),
        ("control", b"abc\x01def\n", "control character"),
        ("tab", b"abc\tdef\n", "control character"),
        ("latin", "abcé\n".encode(), "a token must be ASCII"),
        ("blank", b" \n\n", "is empty"),
    ]:
        Path(name).write_bytes(content)
        err = scheduler_fails(study, capsys, "--token-file", name)
        assert f"--token-file {name}: " in err and fragment in err, err
        err = fails(worker_main, ["--scheduler", "127.0.0.1:1", "--token-file", name], capsys)
        assert f"--token-file {name}: " in err and fragment in err, err
    Path("good").write_bytes(b"  s3cret-token_1.2  \n")  # trailing newline and spaces: fine
    from ash.link.auth import read_secret

    assert read_secret("good", "--token-file") == "s3cret-token_1.2"


def test_metrics_port_in_use(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        err = scheduler_fails(study, capsys, "--metrics-port", str(port))
    assert f"--metrics-port 127.0.0.1:{port}: address in use" in err


def test_ash_tune_and_simulate_check_paths_first(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("a-file").write_text("x")
    for argv, fragment in [
        (["tune", str(study), "--workers", "1", "--out", "a-file"], "--out a-file: exists"),
        (["tune", str(study), "--workers", "1", "--trace", "no/t"], "--trace no/t: its folder"),
        (
            ["tune", str(study), "--transport", "grpc", "--workers", "1", "--out", "a-file/x"],
            "--out a-file/x: cannot create",
        ),
        (["simulate", str(study), "--workers", "2", "--out", "a-file"], "--out a-file: exists"),
        (["simulate", str(study), "--workers", "2", "--trace", "no/t"], "--trace no/t: its"),
    ]:
        err = fails(
            ash_main, [*argv, "--journal", "j.jsonl"] if argv[0] == "tune" else argv, capsys
        )
        assert fragment in err, err
        assert not Path("j.jsonl").exists()


def test_tune_api_checks_paths_first(study: Path) -> None:
    import ash.api
    from ash.errors import UserError

    Path("a-file").write_text("x")
    with pytest.raises(UserError, match="--out a-file: exists and is not a directory"):
        ash.api.tune(study, workers=1, out="a-file", progress=False)


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_processes_exit_2_with_one_line(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=2)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "garbage.pem").write_text("garbage")
    for cmd, fragment in [
        (
            [str(BIN / "ash-scheduler"), str(spec), "--listen", "127.0.0.1:0", "--out", "a-file"],
            "ash-scheduler: error: --out a-file: exists and is not a directory",
        ),
        (
            [str(BIN / "ash-worker"), "--scheduler", "127.0.0.1:1", "--tls-ca", "garbage.pem"],
            "ash-worker: error: --tls-ca garbage.pem: not a PEM certificate",
        ),
        (
            [str(BIN / "ash"), "tune", str(spec), "--trace", "a-file/t.jsonl"],
            "ash: error: --trace a-file/t.jsonl: its folder a-file is not a directory",
        ),
    ]:
        proc = run(cmd, tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert fragment in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_second_scheduler_on_a_port_in_use_is_refused(tmp_path: Path, cleanup: list[Any]) -> None:
    spec = write_study(tmp_path, max_trials=2)
    first = Scheduler(spec, tmp_path)
    cleanup.append(first)
    proc = run(
        [
            str(BIN / "ash-scheduler"),
            str(spec),
            "--listen",
            first.target,
            "--journal",
            "second.jsonl",
        ],
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        f"ash-scheduler: error: --listen {first.target}: address in use (another ash-scheduler?)"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "second.jsonl").exists()
    with grpc.insecure_channel(first.target) as channel:  # the first one still serves
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0


def test_scheduler_warns_when_anyone_can_join(capsys: pytest.CaptureFixture[str]) -> None:
    from ash.scheduler.server import warn_exposure

    for host, token, tls, fragment in [
        ("0.0.0.0", False, False, "with neither TLS nor a token"),
        ("10.1.2.3", False, True, "with TLS but no token"),
        ("0.0.0.0", True, False, None),
        ("0.0.0.0", True, True, None),
        ("127.0.0.1", False, False, None),
        ("localhost", False, True, None),
    ]:
        warn_exposure(host, token, tls)
        err = capsys.readouterr().err
        if fragment is None:
            assert err == "", (host, token, tls)
        else:
            assert err.startswith("ash-scheduler: WARNING: listening on") and fragment in err


def test_servers_do_not_share_ports() -> None:
    """gRPC's default SO_REUSEPORT is off for the scheduler's server (its channels keep the
    same size and keepalive options without it)."""
    from ash.link.wire import channel_options, server_options

    assert ("grpc.so_reuseport", 0) in server_options(1 << 20)
    assert all(key != "grpc.so_reuseport" for key, _ in channel_options(1 << 20))

    async def bind_twice() -> int:
        first = grpc.aio.server(options=server_options(1 << 20))
        port = first.add_insecure_port("127.0.0.1:0")
        await first.start()
        try:
            second = grpc.aio.server(options=server_options(1 << 20))
            with pytest.raises(RuntimeError):
                second.add_insecure_port(f"127.0.0.1:{port}")
        finally:
            await first.stop(None)
        return port

    assert asyncio.run(bind_twice()) > 0


def test_a_trace_of_an_earlier_run_is_refused(study: Path) -> None:
    """Two runs in one --trace file would be one garbled trace (trial ids start again at 0):
    only a resumed journal continues its trace; anything else is refused and the file kept."""
    from helpers import run_ash

    study.write_text(study.read_text().replace(', "raise", "nan", "crash", "slow"', ""))

    def tune(*args: str) -> subprocess.CompletedProcess[str]:
        return run_ash("tune", str(study), "--workers", "1", "--quiet", *args)

    assert tune("--trace", "t.jsonl").returncode == 0
    first = Path("t.jsonl").read_text()
    assert first.count("\n") > 0
    for again in [
        tune("--trace", "t.jsonl"),
        tune("--trace", "t.jsonl", "--journal", "new.jsonl"),
        run_ash("simulate", str(study), "--workers", "2", "--trace", "t.jsonl"),
    ]:
        assert again.returncode == 2, again.stderr
        assert "Traceback" not in again.stderr
        assert "--trace t.jsonl: already holds the trace of an earlier run" in again.stderr
    assert Path("t.jsonl").read_text() == first
    assert not Path("new.jsonl").exists()
    # a journal's own trace is continued on resume; another run's trace is not taken for it
    assert tune("--trace", "j.trace", "--journal", "j.jsonl").returncode == 0
    resumed = tune("--trace", "j.trace", "--journal", "j.jsonl")
    assert resumed.returncode == 0, resumed.stderr
    Path("two-runs.jsonl").write_text(first + first)  # more events than the journal holds
    other = tune("--trace", "two-runs.jsonl", "--journal", "j.jsonl")
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr
    assert "it is the trace of another run" in other.stderr
    assert Path("two-runs.jsonl").read_text() == first + first
    Path("empty.jsonl").write_text("")  # an empty file is a new one
    assert tune("--trace", "empty.jsonl").returncode == 0
    # the study's other files are never a trace, and a file that is no trace is never cut
    Path("notes.txt").write_text("line one\nmy last line without newline")
    spec_text = study.read_text()
    for args, fragment in [
        (("--trace", "k.jsonl", "--journal", "k.jsonl"), "--trace k.jsonl: is --journal"),
        (("--trace", str(study)), f"--trace {study}: is the spec"),
        (("--trace", "o/results.json", "--out", "o"), "--trace o/results.json: is --out's"),
        (("--trace", "notes.txt", "--journal", "j.jsonl"), "notes.txt: is not an ash trace"),
    ]:
        got = tune(*args)
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert fragment in got.stderr, got.stderr
    assert not Path("k.jsonl").exists()
    assert study.read_text() == spec_text
    assert Path("notes.txt").read_text() == "line one\nmy last line without newline"


def test_dashboard_beside_the_scheduler_is_checked_before_listening(
    study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ash.cli import scheduler_main as cli_scheduler

    err = fails(
        cli_scheduler,
        [str(study), "--listen", "0.0.0.0:0", "--journal", "j.jsonl", "--dashboard-port", "0"],
        capsys,
    )
    assert (
        "--dashboard-port (beside --listen) 0.0.0.0: off loopback the dashboard needs a token"
        in err
    )
    assert "listening" not in capsys.readouterr().out
    assert not Path("j.jsonl").exists()


def test_empty_devices_are_refused(study: Path) -> None:
    from helpers import run_ash

    got = run_ash("tune", str(study), "--devices", "")
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert "--devices: give at least one device id" in got.stderr


@pytest.mark.parametrize(("rank", "said"), [("0", 1), ("1", 0)])
def test_ctrl_c_at_start_up_under_mpi_is_said_by_rank_0_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rank: str, said: int
) -> None:
    """mpiexec hands a Ctrl-C to every rank: one that lands before the ranks meet (while MPI
    starts) is said once, by rank 0, and every rank exits 130."""
    import ash.commands.tune

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(ash.commands.tune, "run", interrupted)
    monkeypatch.setenv("PMI_RANK", rank)
    assert ash_main(["tune", "study.toml", "--transport", "mpi"]) == 130
    assert capsys.readouterr().err.count("ash: interrupted") == said
    assert ash_main(["tune", "study.toml"]) == 130  # no MPI: every process speaks for itself
    assert capsys.readouterr().err.count("ash: interrupted") == 1
