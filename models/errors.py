"""Typed errors shared by every package.

`UserInputError` marks a problem with what the user asked for (an unknown layer, a unit out of range, an
unreadable weights file). Its message is one actionable line: the CLI prints it without a traceback and
exits non-zero. `StorageError` is its sibling for storage that stays unreachable or refuses access after
retries (missing bucket, access denied, no credentials). Anything else is a bug and keeps its traceback.
"""

__all__ = ["UserInputError", "StorageError"]


class UserInputError(ValueError):
    """Bad input from the user; the message names the bad value and the fix."""


class StorageError(UserInputError):
    """Storage failed persistently; the message names the URI and the cause."""
