"""Issue #13: a hostile dataset file ends in a DataError naming it, with bounded memory.

A gzip bomb is streamed and stopped at the decompressed-size limit (in a subprocess whose peak
RSS is measured), an endless line and an oversized CSV field are refused with their line, a
.npz whose headers declare a huge array is refused before numpy allocates it, and ``ash tune``
reports such a file in one line (exit 2), not with a traceback.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ash.worker import datasets
from ash.worker.datasets import MAX_LINE_BYTES, DataError, load
from helpers import BIN, EXAMPLES

# peak RSS of this process's own memory (VmHWM): ru_maxrss survives exec on Linux, so in a
# child of a large pytest process it would report the parent's peak
PROBE = """
import sys
from ash.worker.datasets import DataError, load
try:
    load(sys.argv[1])
    print("loaded")
except DataError as exc:
    print(exc)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(int(hwm.split()[1]) // 1024)
"""


def _gzip(path: Path, chunk: bytes, times: int) -> Path:
    with gzip.open(path, "wb", compresslevel=6) as f:
        for _ in range(times):
            f.write(chunk)
    return path


def test_gzip_bomb_stops_at_the_limit_with_small_memory(tmp_path: Path) -> None:
    line = ",".join(["0.0000000000000001"] * 50).encode() + b",a\n"  # ~950 bytes, 50 numbers
    bomb = _gzip(tmp_path / "bomb.csv.gz", line * 1000, 100)  # ~95 MB of text
    assert bomb.stat().st_size < 1_000_000
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(bomb)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASH_DATASET_MAX_BYTES": str(16 << 20)},
    )
    assert proc.returncode == 0, proc.stderr
    message, peak_mb = proc.stdout.splitlines()
    assert message.startswith(f"{bomb}: larger than {16 << 20} bytes once decompressed")
    assert "ASH_DATASET_MAX_BYTES" in message
    assert int(peak_mb) < 200, proc.stdout  # the text held whole took > 1 GB


def test_numbers_are_capped_at_an_eighth_of_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "many.csv"
    path.write_text("0,1,a\n0,1,b\n" * 500)  # 2000 numbers in 6000 bytes
    monkeypatch.setenv("ASH_DATASET_MAX_BYTES", str(8 * 1000))
    with pytest.raises(DataError, match="more than 1000 numbers"):
        load(str(path))
    monkeypatch.setenv("ASH_DATASET_MAX_BYTES", "lots")
    with pytest.raises(DataError, match="ASH_DATASET_MAX_BYTES='lots'"):
        load(str(path))
    monkeypatch.delenv("ASH_DATASET_MAX_BYTES")
    assert datasets.max_bytes() == 1 << 30
    assert load(str(path)).X.shape == (1000, 2)


def test_an_endless_line_is_refused(tmp_path: Path) -> None:
    path = _gzip(tmp_path / "endless.csv.gz", b"1" * (1 << 20), 4)  # 4 MiB, no newline
    with pytest.raises(DataError) as info:
        load(str(path))
    assert str(info.value) == f"{path}: line 1: longer than {MAX_LINE_BYTES} bytes"


def test_a_field_over_the_csv_limit_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "field.csv"
    path.write_text('a,b,label\n1,2,x\n3,"' + "9" * 200_000 + '",y\n')
    with pytest.raises(DataError, match=r"field\.csv: line 3: field larger than field limit"):
        load(str(path))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (gzip.compress(b"1,2,a\n3,4,b\n" * 1000)[:-40], "not a valid gzip file"),
        (b"\x1f\x8bnot gzip at all", "not a valid gzip file"),
        (b"1,2,a\n3,\xff,b\n", "line 2: not UTF-8 text \\(byte 3\\)"),
    ],
)
def test_broken_files_name_the_problem(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "broken.csv"
    path.write_bytes(data)
    with pytest.raises(DataError, match=words):
        load(str(path))


def _npz_declaring(path: Path, shape: tuple[int, ...], dtype: str = "<f8") -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", header.getvalue() + b"\0" * 64)
        z.writestr("y.npy", header.getvalue())
    return path


def test_npz_declaring_a_huge_array_is_refused_before_loading(tmp_path: Path) -> None:
    path = _npz_declaring(tmp_path / "bomb.npz", (1 << 20, 1 << 20))
    with pytest.raises(DataError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}: X.npy: its arrays declare more than {1 << 30}")
    path = _npz_declaring(tmp_path / "objects.npz", (2,), dtype="|O")
    with pytest.raises(DataError, match=r"objects\.npz: X\.npy: holds Python objects"):
        load(str(path))


def test_a_good_npz_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, X=np.arange(20.0).reshape(10, 2), y=np.arange(10) % 2)
    ds = load(str(path))
    assert ds.X.shape == (10, 2) and ds.classes == ("0", "1")


def test_tune_reports_a_bad_field_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "field.csv").write_text('a,b,label\n1,2,x\n3,"' + "9" * 200_000 + '",y\n')
    text = (EXAMPLES / "iris.toml").read_text().replace('"iris"', '"field.csv"')
    (tmp_path / "s.toml").write_text(text)
    proc = subprocess.run(
        [str(BIN / "ash"), "tune", "s.toml", "--workers", "1", "--threads", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "field.csv: line 3: field larger than field limit" in proc.stderr
