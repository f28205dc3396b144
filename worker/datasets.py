"""Datasets for the mlp trainer: the bundled ones (iris, digits), CSV and NPZ files.

It owns reading (with errors that name the file, the line and the problem), the stratified,
seeded validation split, and standardisation with statistics of the training split only (so
nothing of the validation split leaks into training). Labels may be numbers or strings; they
become class indices 0..C-1 in sorted order of the original labels.

Reading is bounded, so that a hostile or broken file (a gzip bomb, one endless line, a .npz
declaring a huge array) ends in a DataError naming the file, never a traceback or an exhausted
machine. A CSV (plain or gzip) is streamed line by line; memory follows the numbers parsed, not
the text. Limits:

- ``max_bytes()``: the bytes a dataset may hold once decompressed (the CSV text, or the arrays
  of a .npz as their headers declare them, checked before loading); ``ASH_DATASET_MAX_BYTES``
  in the environment, default ``DEFAULT_MAX_BYTES`` (1 GiB). A CSV's parsed numbers are capped
  at a eighth of it (float64), so its buffer stays within the same bound;
- ``MAX_LINE_BYTES`` (1 MiB) per CSV line, and the csv module's field size limit (128 KiB).
"""

from __future__ import annotations

import array
import contextlib
import csv
import gzip
import io
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ash.errors import UserError

BUNDLED = {"iris": "iris.csv", "digits": "digits.csv.gz"}
DEFAULT_MAX_BYTES = 1 << 30
MAX_LINE_BYTES = 1 << 20
ENV_MAX_BYTES = "ASH_DATASET_MAX_BYTES"


class DataError(UserError, ValueError):
    """A dataset file is unusable; the message names the file (and line) and the problem."""


@dataclass(frozen=True)
class Dataset:
    name: str
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int32]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    X_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int32]
    X_val: npt.NDArray[np.float32]
    y_val: npt.NDArray[np.int32]
    n_classes: int


def max_bytes() -> int:
    """The decompressed size a dataset may have: ``$ASH_DATASET_MAX_BYTES`` or 1 GiB."""
    text = os.environ.get(ENV_MAX_BYTES)
    if text is None:
        return DEFAULT_MAX_BYTES
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise DataError(f"{ENV_MAX_BYTES}={text!r}: must be a positive number of bytes")
    return limit


def load(name: str, base_dir: Path | None = None) -> Dataset:
    """A bundled dataset by name, or a .csv / .csv.gz / .npz file (relative to ``base_dir``)."""
    if name in BUNDLED:
        ref = resources.files("ash.worker") / "data" / BUNDLED[name]
        with ref.open("rb") as f:
            return _parse_csv(f, name)
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise DataError(
            f"{path}: no such file (and {name!r} is not a bundled dataset: {', '.join(BUNDLED)})"
        )
    if path.suffix not in (".npz", ".csv", ".gz", ".txt"):
        raise DataError(f"{path}: unknown format (expected .csv, .csv.gz or .npz)")
    try:
        if path.suffix == ".npz":
            return _parse_npz(path, str(path))
        with open(path, "rb") as f:
            return _parse_csv(f, str(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class _Capped(io.RawIOBase):
    """A binary stream that raises DataError once more than ``limit`` bytes came through it."""

    def __init__(self, src: io.BufferedIOBase | IO[bytes], where: str, limit: int) -> None:
        self.src = src
        self.where = where
        self.limit = limit
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.src.read(len(b))
        n = len(data)
        b[:n] = data
        self.total += n
        if self.total > self.limit:
            raise DataError(
                f"{self.where}: larger than {self.limit} bytes once decompressed "
                f"(the limit; set {ENV_MAX_BYTES} to raise it)"
            )
        return n


class _Lines:
    """The lines of a binary stream as text, each at most MAX_LINE_BYTES long and decoded on its
    own (so a decoding error names its line), counted for messages."""

    def __init__(self, raw: IO[bytes], where: str) -> None:
        self.raw = raw
        self.where = where
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        while True:
            line = self.raw.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            self.number += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise DataError(
                    f"{self.where}: line {self.number}: longer than {MAX_LINE_BYTES} bytes"
                )
            try:
                yield line.decode("utf-8-sig" if self.number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{self.where}: line {self.number}: not UTF-8 text (byte {exc.start + 1})"
                ) from None


def _parse_csv(f: IO[bytes], where: str) -> Dataset:
    limit = max_bytes()
    gzipped = f.read(2) == b"\x1f\x8b"
    f.seek(0)
    src: io.BufferedIOBase | IO[bytes] = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
    lines = _Lines(io.BufferedReader(_Capped(src, where, limit)), where)
    try:
        with src if gzipped else contextlib.nullcontext():
            return _read_rows(lines, where, limit // 8)
    except (OSError, EOFError, zlib.error) as exc:
        if gzipped:
            raise DataError(f"{where}: not a valid gzip file ({exc})") from None
        raise DataError(f"{where}: cannot be read ({exc})") from None
    except csv.Error as exc:
        raise DataError(f"{where}: line {lines.number}: {exc}") from None


def _read_rows(lines: _Lines, where: str, max_numbers: int) -> Dataset:
    """Parse CSV rows into a float64 buffer and interned labels, one row at a time."""
    features = array.array("d")
    labels: list[str] = []
    seen: dict[str, str] = {}
    width = 0
    for row in csv.reader(lines):
        line = lines.number
        if not row:
            continue
        if not width:
            width = len(row)
            if width < 2:
                raise DataError(f"{where}: line {line}: need at least one feature and a label")
            if not _all_numbers(row[:-1]):
                continue  # a header row
        if len(row) != width:
            raise DataError(f"{where}: line {line}: {len(row)} columns, expected {width}")
        try:
            values = [float(v) for v in row[:-1]]
        except ValueError:
            col = next(j for j, v in enumerate(row[:-1]) if not _is_number(v))
            raise DataError(
                f"{where}: line {line}: column {col + 1}: {_cut(row[col])} is not a number"
            ) from None
        for col, x in enumerate(values):
            if not math.isfinite(x):
                raise DataError(
                    f"{where}: line {line}: column {col + 1}: {_cut(row[col])} is not finite"
                )
        if len(features) + len(values) > max_numbers:
            raise DataError(
                f"{where}: more than {max_numbers} numbers (the limit is a eighth of "
                f"{ENV_MAX_BYTES}, {max_numbers * 8} bytes)"
            )
        features.extend(values)
        label = row[-1].strip()
        labels.append(seen.setdefault(label, label))
    if not width:
        raise DataError(f"{where}: is empty")
    if not labels:
        raise DataError(f"{where}: has a header but no data rows")
    X = np.frombuffer(features, dtype=np.float64).reshape(len(labels), width - 1)
    return _finish(where, X, labels)


def _cut(text: str, n: int = 40) -> str:
    return repr(text) if len(text) <= n else f"{text[:n]!r}..."


def _parse_npz(path: Path, where: str) -> Dataset:
    _check_npz_sizes(path, where, max_bytes())
    try:
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise DataError(f"{where}: needs arrays 'X' and 'y', has {sorted(z.files)}")
            X, y = z["X"], z["y"]
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where}: not a valid .npz without pickles ({exc})") from None
    if X.ndim != 2 or X.dtype.kind not in "fiub":
        raise DataError(f"{where}: X: expected a 2-D numeric array, got {X.dtype} {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise DataError(f"{where}: y: expected a 1-D array of {len(X)} labels, got {y.shape}")
    bad = ~np.isfinite(X.astype(np.float64))
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{where}: X[{r}, {c}] is not finite")
    return _finish(where, X.astype(np.float64), [str(v) for v in y.tolist()])


def _check_npz_sizes(path: Path, where: str, limit: int) -> None:
    """Refuse a .npz whose arrays, as their .npy headers declare them, exceed ``limit`` bytes
    (or hold objects) before numpy allocates them: a few compressed bytes can declare terabytes."""
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    continue
                with zf.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                if dtype.hasobject:
                    raise DataError(f"{where}: {member}: holds Python objects (pickles refused)")
                total += math.prod(shape) * dtype.itemsize
                if total > limit:
                    raise DataError(
                        f"{where}: {member}: its arrays declare more than {limit} bytes "
                        f"(the limit; set {ENV_MAX_BYTES} to raise it)"
                    )
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{where}: not a valid .npz without pickles ({exc})") from None


def _finish(where: str, X: npt.NDArray[np.float64], labels: list[str]) -> Dataset:
    names = sorted(set(labels), key=_label_order)
    if len(names) < 2:
        raise DataError(f"{where}: only one class ({names[0]!r}): need at least two")
    index = {n: i for i, n in enumerate(names)}
    y = np.fromiter((index[v] for v in labels), dtype=np.int32, count=len(labels))
    return Dataset(where, np.ascontiguousarray(X, dtype=np.float32), y, tuple(names))


def _label_order(label: str) -> tuple[int, float, str]:
    return (0, float(label), "") if _is_number(label) else (1, 0.0, label)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _all_numbers(values: list[str]) -> bool:
    return all(_is_number(v) for v in values)


def split(ds: Dataset, fraction: float, seed: int) -> Split:
    """Stratified, seeded train/validation split; features standardised on the training split."""
    rng = np.random.default_rng(seed % 2**64)  # numpy refuses a negative seed; TOML allows one
    val: list[npt.NDArray[np.intp]] = []
    train: list[npt.NDArray[np.intp]] = []
    for c in range(len(ds.classes)):
        idx = np.flatnonzero(ds.y == c)
        rng.shuffle(idx)
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    tr, va = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if len(va) == 0:
        raise DataError(f"{ds.name}: too few rows for a validation split of {fraction}")
    X_train = ds.X[tr].astype(np.float64)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0

    def scale(X: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray((X - mean) / std, dtype=np.float32)

    return Split(scale(ds.X[tr]), ds.y[tr], scale(ds.X[va]), ds.y[va], len(ds.classes))


@lru_cache(maxsize=8)
def cached_split(name: str, base_dir: str, fraction: float, seed: int) -> Split:
    """``split(load(...))`` once per worker process for a given dataset and split."""
    return split(load(name, Path(base_dir)), fraction, seed)
