"""Typed errors shared by every package.

`UserInputError` marks a problem with what the user asked for (an unknown layer, a unit out of range, an
unreadable weights file). Its message is one actionable line: the CLI prints it without a traceback and
exits non-zero. Anything else is a bug and keeps its traceback.
"""

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad input from the user; the message names the bad value and the fix."""
