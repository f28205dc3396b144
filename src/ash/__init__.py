"""ash: Asynchronous Successive Halving (ASHA) hyperparameter tuning.

The paper's promotion variant by default, with checkpoint resume, O(log n) decisions and a
crash-safe journal; one engine embedded (``ash tune``), as gRPC daemons, or under mpirun.
"""

__version__ = "0.1.0"

from typing import Any


def tune(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a study on this machine; see :func:`ash.api.tune`."""
    from ash.api import tune as _tune

    return _tune(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """``ash.TrialContext``: the type of a ``(config, ctx)`` trainer's ``ctx`` (for hints);
    ``ash.integrations``: tracking callbacks, imported when first used."""
    if name == "TrialContext":
        from ash.worker.context import TrialContext

        return TrialContext
    if name == "integrations":
        import importlib

        return importlib.import_module("ash.integrations")
    raise AttributeError(f"module 'ash' has no attribute {name!r}")


__all__ = ["TrialContext", "__version__", "tune"]
