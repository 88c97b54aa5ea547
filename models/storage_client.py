"""Storage clients whose every attempt is bounded, so `with_retries` holds the user's retry budget.

`with_retries` bounds our own backoff; without this module one attempt could outlast the whole budget
inside the S3 client (s3fs retries 5 times, botocore up to 5 times each, with 5 s connect and 15 s read
timeouts). For S3 URIs the client is built with no retries of its own (botocore `total_max_attempts` 1,
s3fs `retries` 1), with `RetryPolicy`'s connect and read timeouts, and without `Expect: 100-continue`
(aiohttp starts the read timeout only once the body is sent, and waits for the server's "100 Continue"
with no timeout at all: a server that accepts and never answers would hang every PUT for good). So a call
whose server does not answer fails after at most `policy.attempt_timeout_s`, and a storage outage stops
the caller within budget + one attempt's timeout. Not bounded: a body larger than the socket buffers sent
to a server that stops reading mid-upload (TCP's own timeouts end that; our objects are small). Other
protocols keep their clients' own settings.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Mapping

import fsspec

from .retry import RetryPolicy, with_retries

__all__ = ["bounded_options", "url_to_fs", "read_uri"]

_S3 = ("s3", "s3a")


def _protocol(uri: str) -> str:
    return fsspec.core.split_protocol(uri)[0] or "file"


def bounded_options(uri: str, storage_options: Mapping[str, Any] | None, policy: RetryPolicy) -> dict:
    """`storage_options` plus the client settings that bound one attempt at `uri` (S3 only)."""
    options = dict(storage_options or {})
    if _protocol(uri) in _S3:
        options["config_kwargs"] = {
            **dict(options.get("config_kwargs") or {}),
            "connect_timeout": policy.connect_timeout_s, "read_timeout": policy.read_timeout_s,
            "retries": {"total_max_attempts": 1, "mode": "standard"},  # with_retries is the only retry loop
        }
        session_cls = _session_without_expect_continue()
        if session_cls is not None:
            options["config_kwargs"]["http_session_cls"] = session_cls
    return options


@functools.cache  # one class per process: fsspec caches filesystems under their options
def _session_without_expect_continue():
    """aiobotocore's HTTP session minus `Expect: 100-continue` (None where aiobotocore cannot take one)."""
    try:
        from aiobotocore.config import AioConfig
        from aiobotocore.httpsession import AIOHTTPSession
    except ImportError:
        return None
    if "http_session_cls" not in inspect.signature(AioConfig.__init__).parameters:
        return None

    class NoContinueSession(AIOHTTPSession):
        async def send(self, request):
            if "Expect" in request.headers:  # not a signed header
                del request.headers["Expect"]
            return await super().send(request)

    return NoContinueSession


def url_to_fs(uri: str, storage_options: Mapping[str, Any] | None, policy: RetryPolicy):
    """(filesystem, path) for `uri`, its client bounded by `policy` (see the module docstring)."""
    fs, path = fsspec.core.url_to_fs(uri, **bounded_options(uri, storage_options, policy))
    if _protocol(uri) in _S3:
        # s3fs takes no retries option; the instance is cached under options that carry our timeouts,
        # so only clients built here see this
        fs.retries = 1
    return fs, path


def read_uri(uri: str, storage_options: Mapping[str, Any] | None = None, policy: RetryPolicy | None = None) -> bytes:
    """The whole object at `uri`, read with retries; FileNotFoundError passes through when it is missing."""
    policy = policy or RetryPolicy()
    fs, path = url_to_fs(uri, storage_options, policy)
    return with_retries(lambda: fs.cat_file(path), uri, policy, missing_ok=True)
