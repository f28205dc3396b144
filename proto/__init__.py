"""ash.proto: the wire contract (ash.proto) and its generated code (tools/gen-proto; CI checks
that the committed code is current)."""
