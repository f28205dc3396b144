"""One module per ``ash`` subcommand: the glue between parsed arguments and the engine."""
