"""Tracking integrations: callbacks that ``ash.tune(..., callbacks=[...])``, ``ash tune`` and
``ash-scheduler`` (``--mlflow URI``, ``--tensorboard DIR``) feed with a study's trials, reports
and rung results.

``Callback`` is the base class for your own; ``MLflowCallback`` and ``TensorBoardCallback``
import their library only when a study starts (the ``mlflow`` and ``tensorboard`` extras), so
importing ``ash.integrations`` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ash.integrations.base import Callback, CallbackError, Callbacks, Result, Study

if TYPE_CHECKING:
    from ash.integrations.mlflow import MLflowCallback
    from ash.integrations.tensorboard import TensorBoardCallback

__all__ = [
    "Callback",
    "CallbackError",
    "Callbacks",
    "MLflowCallback",
    "Result",
    "Study",
    "TensorBoardCallback",
    "from_flags",
]


def from_flags(mlflow: str | None, tensorboard: str | None) -> list[Callback]:
    """The callbacks of ``--mlflow TRACKING_URI`` and ``--tensorboard LOGDIR``."""
    from ash.integrations.mlflow import MLflowCallback
    from ash.integrations.tensorboard import TensorBoardCallback

    found: list[Callback] = []
    if mlflow:
        found.append(MLflowCallback(tracking_uri=mlflow))
    if tensorboard:
        found.append(TensorBoardCallback(tensorboard))
    return found


def __getattr__(name: str) -> Any:
    if name == "MLflowCallback":
        from ash.integrations.mlflow import MLflowCallback

        return MLflowCallback
    if name == "TensorBoardCallback":
        from ash.integrations.tensorboard import TensorBoardCallback

        return TensorBoardCallback
    raise AttributeError(f"module 'ash.integrations' has no attribute {name!r}")
