"""ash: Asynchronous Successive Halving (ASHA) hyperparameter tuning.

The paper's promotion variant by default, with checkpoint resume, O(log n) decisions and a
crash-safe journal; one engine embedded (``ash tune``), as gRPC daemons, or under mpirun.
``ash.tune`` runs a study from Python, ``ash.load`` reads one back as an ``ash.Study``.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ash.study import Study


def tune(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run a study on this machine; see :func:`ash.api.tune`."""
    from ash.api import tune as _tune

    return _tune(*args, **kwargs)


def load(source: Any, **kwargs: Any) -> "Study":
    """A study's results (results.json, a journal, or a running scheduler's host:port); see
    :func:`ash.study.load`."""
    from ash.study import load as _load

    return _load(source, **kwargs)


def __getattr__(name: str) -> Any:
    """``ash.TrialContext``: the type of a ``(config, ctx)`` trainer's ``ctx`` (for hints);
    ``ash.TrialStopped`` (what ``ctx.report`` raises once the trial is stopped); ``ash.Study``;
    ``ash.integrations``: tracking callbacks. Imported when first used, so
    ``import ash`` stays light."""
    if name == "TrialContext":
        from ash.worker.context import TrialContext

        return TrialContext
    if name == "TrialStopped":
        from ash.errors import TrialStopped

        return TrialStopped
    if name == "Study":
        from ash.study import Study

        return Study
    if name == "integrations":
        import importlib

        return importlib.import_module("ash.integrations")
    raise AttributeError(f"module 'ash' has no attribute {name!r}")


__all__ = ["Study", "TrialContext", "TrialStopped", "__version__", "load", "tune"]
