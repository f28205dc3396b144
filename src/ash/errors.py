"""User-facing error type shared by every entry point."""


class UserError(Exception):
    """A mistake in what the user gave (a file, a flag); printed without a traceback."""
