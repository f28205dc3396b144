"""TLS and the shared token: a whole study over TLS with a token, and nobody let in without."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ash.proto import ash_pb2 as pb
from ash.proto import ash_pb2_grpc as pb_grpc
from helpers import BIN, Scheduler, worker, write_study

crypto = pytest.importorskip("cryptography")


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ash test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


def test_study_over_tls_with_token(tmp_path: Path, cleanup: list[Any]) -> None:
    ca, cert, key = make_pki(tmp_path)
    (tmp_path / "token").write_text("s3cret-token\n")
    spec = write_study(tmp_path, max_trials=12)
    s = Scheduler(
        spec,
        tmp_path,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--token-file",
        "token",
        "--out",
        "out",
    )
    cleanup.append(s)
    creds = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(s.target, creds) as ch:
        stub = pb_grpc.SchedulerStub(ch)
        for metadata in ([], [("authorization", "Bearer wrong")]):
            with pytest.raises(grpc.RpcError) as info:
                stub.Status(pb.StatusRequest(), metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        session = stub.Session(iter([pb.WorkerMessage(hello=pb.Hello(worker_id="x", slots=1))]))
        with pytest.raises(grpc.RpcError) as info:
            list(session)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = stub.Status(
            pb.StatusRequest(), metadata=[("authorization", "Bearer s3cret-token")], timeout=10
        )
        assert ok.study == "py"
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token
    with grpc.insecure_channel(s.target) as plain, pytest.raises(grpc.RpcError):
        pb_grpc.SchedulerStub(plain).Status(pb.StatusRequest(), timeout=3)
    # the viewers over TLS: ash.load's Status and the dashboard's Watch
    import asyncio

    import ash
    from ash.dashboard.sources import watch_batches

    assert ash.load(s.target, token="s3cret-token", tls_ca=ca).trials == []

    async def first_batch() -> list[dict[str, Any]]:
        stream = watch_batches(s.target, "s3cret-token", ca.read_bytes())
        try:
            return await anext(stream)
        finally:
            await stream.aclose()

    assert asyncio.run(first_batch())[0]["event"] == "snapshot"
    intruder = worker(s.target, tmp_path, "intruder", "--tls-ca", str(ca))
    cleanup.append(intruder)
    assert intruder.wait(timeout=60) == 2
    assert "UNAUTHENTICATED" in (intruder.stderr.read() if intruder.stderr else "")
    workers = [
        worker(s.target, tmp_path, f"w{i}", "--tls-ca", str(ca), "--token-file", "token")
        for i in range(2)
    ]
    cleanup.extend(workers)
    assert s.wait() == 0
    assert all(w.wait(timeout=30) == 0 for w in workers)
    doc = json.loads((tmp_path / "out/results.json").read_text())
    assert len(doc["trials"]) == 12
    status = subprocess.run(
        [
            str(BIN / "ash"),
            "status",
            "--scheduler",
            s.target,
            "--tls-ca",
            str(ca),
            "--token-file",
            "token",
            "--once",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 2  # the study is over and the scheduler gone: a clear error


def test_listening_beyond_loopback_without_protection_warns(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    spec = write_study(tmp_path, max_trials=2)
    proc = subprocess.Popen(
        [str(BIN / "ash-scheduler"), str(spec), "--listen", "0.0.0.0:0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert "listening on" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "WARNING" in proc.stderr.read()


def test_bad_security_flags_exit_2(tmp_path: Path) -> None:
    spec = write_study(tmp_path, max_trials=2)
    for args, fragment in [
        (["--token-file", "missing"], "--token-file missing: cannot be read"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--listen", "nonsense"], "expected HOST:PORT"),
    ]:
        proc = subprocess.run(
            [str(BIN / "ash-scheduler"), str(spec), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_tls_mismatch_is_said_as_such(tmp_path: Path, cleanup: list[Any]) -> None:
    """A worker with the wrong CA stops at once with what to check (retrying cannot help); one
    without --tls-ca is told, while it retries, that the scheduler may want TLS."""
    _, cert, key = make_pki(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca, _, _ = make_pki(other)
    spec = write_study(tmp_path, max_trials=2)
    s = Scheduler(spec, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    cleanup.append(s)
    wrong = worker(s.target, tmp_path, "w1", "--tls-ca", str(wrong_ca), "--retry-for", "60")
    cleanup.append(wrong)
    assert wrong.wait(timeout=30) == 2
    err = wrong.stderr.read() if wrong.stderr else ""
    assert "TLS handshake failed" in err and "is --tls-ca the CA that signed" in err, err
    assert "Traceback" not in err
    plain = worker(s.target, tmp_path, "w2", "--retry-for", "2")
    cleanup.append(plain)
    assert plain.wait(timeout=30) == 3
    err = plain.stderr.read() if plain.stderr else ""
    assert "if it uses TLS, give --tls-ca" in err, err
