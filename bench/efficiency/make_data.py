"""Write the larger synthetic dataset of bench/efficiency: ``data/synth20k.npz`` (X, y).

sklearn's ``make_classification`` with a fixed ``random_state``, so the file is the same on every
machine with the same scikit-learn (the recording in ``curves/synth.json.gz`` was made with
scikit-learn 1.9.1): 20,000 rows, 32 features (16 informative, 8 redundant linear combinations,
8 noise), 10 classes of 2 Gaussian clusters each, class_sep 1.0 and 1% of labels flipped.

    python bench/efficiency/make_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

OUT = Path(__file__).resolve().parent / "data" / "synth20k.npz"

PARAMS = {
    "n_samples": 20_000,
    "n_features": 32,
    "n_informative": 16,
    "n_redundant": 8,
    "n_repeated": 0,
    "n_classes": 10,
    "n_clusters_per_class": 2,
    "class_sep": 1.0,
    "flip_y": 0.01,
    "random_state": 0,
}


def main() -> None:
    X, y = make_classification(**PARAMS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, X=X.astype(np.float32), y=y.astype(np.int32))
    print(f"wrote {OUT}: X {X.shape}, {len(set(y.tolist()))} classes")


if __name__ == "__main__":
    main()
