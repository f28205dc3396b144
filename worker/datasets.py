"""Datasets for the mlp trainer: the bundled ones (iris, digits), CSV and NPZ files.

It owns reading (with errors that name the file, the line and the problem), the stratified,
seeded validation split, and standardisation with statistics of the training split only (so
nothing of the validation split leaks into training). Labels may be numbers or strings; they
become class indices 0..C-1 in sorted order of the original labels.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

BUNDLED = {"iris": "iris.csv", "digits": "digits.csv.gz"}


class DataError(ValueError):
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


def load(name: str, base_dir: Path | None = None) -> Dataset:
    """A bundled dataset by name, or a .csv / .csv.gz / .npz file (relative to ``base_dir``)."""
    if name in BUNDLED:
        ref = resources.files("ash.worker") / "data" / BUNDLED[name]
        return _parse_csv(ref.read_bytes(), name)
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.exists():
        raise DataError(
            f"{path}: no such file (and {name!r} is not a bundled dataset: {', '.join(BUNDLED)})"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.suffix == ".npz":
        return _parse_npz(raw, str(path))
    if path.suffix in (".csv", ".gz", ".txt"):
        return _parse_csv(raw, str(path))
    raise DataError(f"{path}: unknown format (expected .csv, .csv.gz or .npz)")


def _parse_csv(raw: bytes, where: str) -> Dataset:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{where}: not a valid gzip file ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    rows = [(i, r) for i, r in enumerate(csv.reader(io.StringIO(text)), 1) if r]
    if not rows:
        raise DataError(f"{where}: is empty")
    first_line, first = rows[0]
    if len(first) < 2:
        raise DataError(f"{where}: line {first_line}: need at least one feature and a label")
    if not _all_numbers(first[:-1]):
        rows = rows[1:]  # a header row
        if not rows:
            raise DataError(f"{where}: has a header but no data rows")
    width = len(first)
    features = np.empty((len(rows), width - 1), dtype=np.float64)
    labels: list[str] = []
    for k, (line, row) in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{where}: line {line}: {len(row)} columns, expected {width}")
        try:
            features[k] = [float(v) for v in row[:-1]]
        except ValueError:
            col = next(j for j, v in enumerate(row[:-1]) if not _is_number(v))
            raise DataError(
                f"{where}: line {line}: column {col + 1}: {row[col]!r} is not a number"
            ) from None
        if not np.isfinite(features[k]).all():
            col = int(np.flatnonzero(~np.isfinite(features[k]))[0])
            raise DataError(f"{where}: line {line}: column {col + 1}: {row[col]!r} is not finite")
        labels.append(row[-1].strip())
    return _finish(where, features, labels)


def _parse_npz(raw: bytes, where: str) -> Dataset:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if "X" not in z or "y" not in z:
                raise DataError(f"{where}: needs arrays 'X' and 'y', has {sorted(z.files)}")
            X, y = z["X"], z["y"]
    except DataError:
        raise
    except (ValueError, OSError) as exc:
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
    rng = np.random.default_rng(seed)
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
