"""A PyTorch trainable (install the ``torch`` extra): a small CNN on the bundled digits dataset.

The 8x8 digit images (1,797 of them, the same rows as scikit-learn's ``load_digits``) go through
two 3x3 convolutions, a 2x2 max-pool and a linear head; SGD with momentum and weight decay, a
cosine-free constant learning rate so that a promoted trial resumes exactly where it stopped.

``train(config, ctx)``: each epoch from ``ctx.start`` to ``ctx.stop`` is reported with
``ctx.report(epoch, ...)`` (ash keeps every report in results and curves). The model and the
optimizer (its momentum buffers) are saved with ``torch.save`` into ``ctx.checkpoint_dir()`` and a
promoted trial loads them from ``ctx.restore_dir()``, so its epoch count continues. Torch's
intra-op threads follow ash's thread grant for the job (``grant_threads``, docs/threads.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ash.worker.datasets import cached_split

CHECKPOINT = "model.pt"


class Net(nn.Module):
    def __init__(self, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(2 * channels * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits split every tuner in bench/torch uses: 70% train, 30% validation, seed 0."""
    d = cached_split("digits", ".", 0.3, 0)
    return (
        torch.from_numpy(d.X_train).reshape(-1, 1, 8, 8),
        torch.from_numpy(d.y_train.astype(np.int64)),
        torch.from_numpy(d.X_val).reshape(-1, 1, 8, 8),
        torch.from_numpy(d.y_val.astype(np.int64)),
    )


def build(config: dict[str, Any]) -> tuple[Net, torch.optim.Optimizer]:
    torch.manual_seed(int(config.get("seed", 0)))
    model = Net(int(config["channels"]), int(config["hidden"]), float(config["dropout"]))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=float(config["lr"]),
        momentum=float(config["momentum"]),
        weight_decay=float(config["weight_decay"]),
    )
    return model, opt


def epoch(
    model: Net, opt: torch.optim.Optimizer, batch_size: int, number: int
) -> tuple[float, float, float]:
    """Train one epoch (shuffled by its number, so a resumed trial sees the same batches),
    then evaluate: (train_loss, val_loss, val_accuracy)."""
    X, y, Xv, yv = data()
    model.train()
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(number))
    total = 0.0
    for i in range(0, len(X), batch_size):
        idx = order[i : i + batch_size]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    model.eval()
    with torch.no_grad():
        logits = model(Xv)
        val_loss = float(nn.functional.cross_entropy(logits, yv))
        accuracy = float((logits.argmax(1) == yv).float().mean())
    return total / len(X), val_loss, accuracy


def grant_threads() -> int:
    """Torch's intra-op pool follows ash's thread grant for this job: the slot limits the
    OpenMP runtimes loaded in it (threadpoolctl, docs/threads.md), which is read back here and
    given to torch explicitly, so the grant holds whatever threading backend torch was built
    with (and for a trainer that imports torch late)."""
    from threadpoolctl import threadpool_info

    granted = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
    n = min(granted) if granted else int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def train(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    grant_threads()
    model, opt = build(config)
    done = 0
    restore = ctx.restore_dir()
    if restore is not None:
        ckpt = torch.load(Path(restore) / CHECKPOINT, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        done = int(ckpt["epochs"])
    if done != int(ctx.start):
        raise RuntimeError(f"checkpoint holds {done} epochs but the job starts at {ctx.start}")
    metrics: dict[str, float] = {}
    for e in range(done, int(ctx.stop)):
        train_loss, val_loss, accuracy = epoch(model, opt, int(config["batch_size"]), e)
        metrics = {
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_accuracy": accuracy,
            "epochs": e + 1,
        }
        ctx.report(e + 1, **metrics)
    out = Path(ctx.checkpoint_dir())
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "epochs": int(ctx.stop)},
        out / CHECKPOINT,
    )
    return metrics
