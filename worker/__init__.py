"""ash.worker: the worker side (daemon loop, links to the scheduler, thread budgets, trainers and
their trial context)."""
