"""ash: Asynchronous Successive Halving (ASHA) hyperparameter tuning.

The paper's promotion variant by default, with checkpoint resume, O(log n) decisions and a
crash-safe journal; one engine embedded (``ash tune``), as gRPC daemons, or under mpirun.
"""

__version__ = "0.1.0"
