"""ash.link: what the scheduler and its workers share, the neutral ground both sides import
(neither imports the other): the wire conversions of the gRPC contract (``wire``), tokens
(``auth``), the MPI message link (``mpi``), and what a result's metrics may be (``metrics``).
"""
