"""ash.scheduler: the sans-I/O core (rungs, ASHA/SH/Hyperband/random, search space, study spec)
and what drives it (simulator, trace, results)."""
