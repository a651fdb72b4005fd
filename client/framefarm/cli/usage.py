"""Errors in how the command was used (exit status 2)."""


class UsageError(Exception):
    """Bad usage found after parsing (a missing file, a malformed range): exit 2."""
