"""Typed errors shared by every package.

`UserInputError` marks a problem with what the user asked for (an unknown layer, a unit out of range, an
unreadable weights file). Its message is one actionable line: the CLI prints it without a traceback and
exits non-zero. `StorageError` is its sibling for storage that stays unreachable or refuses access after
retries (missing bucket, access denied, no credentials). Anything else is a bug and keeps its traceback.
"""

__all__ = ["UserInputError", "StorageError", "DeviceError"]


class UserInputError(ValueError):
    """Bad input from the user; the message names the bad value and the fix."""


class StorageError(UserInputError):
    """Storage failed persistently; the message names the URI and the cause."""


class DeviceError(UserInputError):
    """A device the run was given cannot be used (a GPU that this torch build cannot drive); the message names
    the device, the torch/CUDA build and the driver, and the fix."""
