"""TLS files given on the command line, read and checked at start-up.

gRPC accepts any bytes as a certificate or key and fails only at the first handshake, with a
message that names neither the flag nor the file. Here each file must hold a PEM block of the
right kind whose body is base64 DER, and then the standard library's ``ssl`` must load it (for
a certificate and key: that they belong together). Errors are UserErrors naming flag and file.
"""

from __future__ import annotations

import binascii
import re
import ssl
from pathlib import Path

from ash.errors import UserError

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def _blocks(path: str, flag: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The file's bytes and its PEM blocks as (label, base64 body)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from None
    return raw, [(m.group(1).decode(), m.group(2)) for m in _BLOCK.finditer(raw)]


def _check_body(label: str, body: bytes, path: str, flag: str) -> None:
    lines = [ln for ln in body.split() if b":" not in ln]  # skip RFC 1421 headers
    try:
        der = binascii.a2b_base64(b"".join(lines), strict_mode=True)
    except binascii.Error as exc:
        raise UserError(f"{flag} {path}: the {label} block is not valid base64 ({exc})") from None
    if not der.startswith(b"\x30"):
        raise UserError(f"{flag} {path}: the {label} block does not hold DER data")


def read_pem(path: str, flag: str, kind: str) -> bytes:
    """The bytes of a PEM file holding at least one ``kind`` block ("CERTIFICATE" or
    "PRIVATE KEY"; any "... PRIVATE KEY" label counts for the latter)."""
    raw, blocks = _blocks(path, flag)
    wanted = [(label, body) for label, body in blocks if label.endswith(kind)]
    if not wanted:
        labels = ", ".join(sorted({label for label, _ in blocks}))
        found = f"it holds only {labels}" if blocks else "it holds no PEM block at all"
        raise UserError(
            f"{flag} {path}: not a PEM {kind.lower()} (no -----BEGIN {kind}----- block: {found})"
        )
    for label, body in wanted:
        if "ENCRYPTED" in label or b"Proc-Type: 4,ENCRYPTED" in body:
            raise UserError(f"{flag} {path}: the private key is encrypted; gRPC needs it plain")
        _check_body(label, body, path, flag)
    return raw


def read_server_pair(cert: str, key: str) -> tuple[bytes, bytes]:
    """``--tls-cert`` and ``--tls-key`` checked: a certificate chain and its private key."""
    cert_pem = read_pem(cert, "--tls-cert", "CERTIFICATE")
    key_pem = read_pem(key, "--tls-key", "PRIVATE KEY")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise UserError(f"--tls-key {key}: not the private key of --tls-cert {cert}") from None
        raise UserError(
            f"--tls-cert {cert} / --tls-key {key}: cannot be loaded ({exc.reason or exc})"
        ) from None
    return cert_pem, key_pem


def read_ca(path: str, flag: str = "--tls-ca") -> bytes:
    """A CA bundle (PEM) checked: at least one certificate that loads."""
    raw = read_pem(path, flag, "CERTIFICATE")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        why = getattr(exc, "reason", None) or exc
        raise UserError(f"{flag} {path}: not a usable CA certificate ({why})") from None
    return raw
