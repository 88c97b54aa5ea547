"""Retrying storage calls: transient faults (connection refused or reset, timeouts, 5xx, throttling) are
retried with exponential backoff; persistent ones (missing bucket or key, access denied, no credentials)
raise `StorageError` at once with the URI and the cause in one line.

The budget runs from the start of the first failed attempt, backoff never sleeps past it, and no attempt
starts after it: a call gives up within budget + one attempt. `RetryPolicy` also derives the per-attempt
client timeouts that keep one attempt short (models/storage_client.py applies them).
"""

from __future__ import annotations

import errno
import logging
import time
from typing import Callable, TypeVar

from models.errors import StorageError

__all__ = ["with_retries", "is_transient", "RetryPolicy"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_TRANSIENT_TEXT = ("slowdown", "slow down", "reduce your request rate", "throttl", "internalerror",
                   "serviceunavailable", "service unavailable", "503", "500 ", "502", "504", "timed out",
                   "timeout", "connection refused", "connection reset", "could not connect", "connect to endpoint",
                   "cannot connect", "server disconnected", "broken pipe", "remote end closed")
_PERSISTENT_TEXT = ("nosuchbucket", "bucket does not exist", "accessdenied", "access denied", "forbidden",
                    "invalidaccesskeyid", "signaturedoesnotmatch", "unable to locate credentials",
                    "no credentials", "expiredtoken")


class RetryPolicy:
    """Backoff 0.25 s doubling to 8 s, until `budget_s` seconds have passed since the first failed attempt.

    One attempt's client timeouts scale with the budget: connect budget/8 (1-5 s), read budget/4 (1-15 s);
    at the default 120 s budget these are s3fs's own defaults.
    """

    def __init__(self, budget_s: float = 120.0, first_s: float = 0.25, max_s: float = 8.0):
        self.budget_s, self.first_s, self.max_s = budget_s, first_s, max_s

    @property
    def connect_timeout_s(self) -> float:
        return min(5.0, max(1.0, self.budget_s / 8))

    @property
    def read_timeout_s(self) -> float:
        return min(15.0, max(1.0, self.budget_s / 4))

    @property
    def attempt_timeout_s(self) -> float:
        """The longest one attempt can hang when storage does not answer: connect + read timeout."""
        return self.connect_timeout_s + self.read_timeout_s


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_transient(e: BaseException) -> bool:
    """True for faults worth retrying; False for persistent ones (and for anything unknown that isn't I/O)."""
    for link in _chain(e):
        text = f"{type(link).__name__} {link}".lower()
        if isinstance(link, (PermissionError, FileNotFoundError)) or any(t in text for t in _PERSISTENT_TEXT):
            return False
        if isinstance(link, (ConnectionError, TimeoutError)) or getattr(link, "errno", None) in (
                errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EPIPE):
            return True
        if any(t in text for t in _TRANSIENT_TEXT):
            return True
    return False


def _cause(e: BaseException) -> str:
    for link in _chain(e):
        text = f"{type(link).__name__} {link}".lower()
        if "credential" in text:
            return "no usable credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role)"
        if isinstance(link, PermissionError) or "accessdenied" in text or "access denied" in text or "forbidden" in text:
            return "access denied (check the bucket policy or the instance profile)"
        if "nosuchbucket" in text or "bucket does not exist" in text:
            return "the bucket does not exist (create it or fix the name)"
    first = str(e).strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}".strip()


def with_retries(fn: Callable[[], T], uri: str, policy: RetryPolicy | None = None, *,
                 missing_ok: bool = False) -> T:
    """Call `fn`, retrying transient faults; raise StorageError naming `uri` on a persistent one.

    With `missing_ok`, FileNotFoundError for the object itself passes through unchanged (callers that
    probe for a file handle it).
    """
    policy = policy or RetryPolicy()
    delay, first_failure = policy.first_s, None
    while True:
        started = time.monotonic()
        try:
            return fn()
        except FileNotFoundError as e:
            if missing_ok and "bucket" not in str(e).lower():
                raise
            raise StorageError(f"storage error at {uri!r}: {_cause(e)}") from e
        except Exception as e:  # noqa: BLE001 - classified below
            if not is_transient(e):
                if isinstance(e, (OSError, PermissionError)) or "botocore" in type(e).__module__:
                    raise StorageError(f"storage error at {uri!r}: {_cause(e)}") from e
                raise
            first_failure = started if first_failure is None else first_failure
            left = policy.budget_s - (time.monotonic() - first_failure)
            if left <= 0:
                raise StorageError(f"storage at {uri!r} still failing after {policy.budget_s - left:.0f} s of "
                                   f"retries: {_cause(e)}") from e
            wait = min(delay, left)  # the last attempt starts at the budget's end, not after it
            log.warning("transient storage fault at %s (%s); retrying in %.1f s", uri, type(e).__name__, wait)
            time.sleep(wait)
            delay = min(delay * 2, policy.max_s)
