"""An output root on any fsspec filesystem, with atomic writes and retried I/O.

Local files are written to a temporary name in the same directory and renamed into place; remote objects
(S3, GCS, ...) are written with one PUT, which object stores make visible all at once. Either way a reader
never sees a partial file. Every call goes through `with_retries`: transient faults are retried with
backoff, persistent ones raise StorageError naming the URI and the cause. The client is built by
models/storage_client.py, so one hanging attempt cannot outlast the retry budget.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from typing import Any, Mapping

from models.errors import UserInputError
from models.retry import RetryPolicy, with_retries
from models.storage_client import url_to_fs

__all__ = ["Store"]

TMP_MARK = ".tmp-"
STALE_S = 3600.0  # a temporary file this old is stale whoever wrote it (a write takes seconds, not an hour)


class Store:
    """Files under `uri` (a local folder or a bucket prefix); paths are '/'-separated and relative."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy | None = None):
        self.uri = uri.rstrip("/") or uri
        self.retry = retry or RetryPolicy()
        try:
            self.fs, self.root = url_to_fs(self.uri, storage_options, self.retry)
        except (ImportError, ValueError, TypeError) as e:
            raise UserInputError(f"cannot open --out {uri!r}: {e}") from e
        self.root = self.root.rstrip("/")
        self.local = "file" in _protocols(self.fs)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _uri(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    def write_bytes(self, rel: str, data: bytes, content_type: str | None = None) -> None:
        """Write `data` atomically; `content_type` (e.g. text/html) is stored with S3 and GCS objects, so a
        static host serves them as what they are (local files carry none)."""
        full = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            tmp = f"{full}{TMP_MARK}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, full)
        else:
            meta = _content_type_kwargs(self.fs, content_type)
            with_retries(lambda: self.fs.pipe_file(full, data, **meta), self._uri(rel), self.retry)

    def remove(self, rel: str) -> None:
        """Delete one file; a missing file is not an error."""
        def rm() -> None:
            try:
                self.fs.rm_file(self.path(rel))
            except FileNotFoundError:
                pass
        with_retries(rm, self._uri(rel), self.retry)

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes; FileNotFoundError when it does not exist."""
        return with_retries(lambda: self.fs.cat_file(self.path(rel)), self._uri(rel), self.retry,
                            missing_ok=True)

    def find(self, rel: str, suffix: str = "") -> list[str]:
        """Relative paths of all files under `rel` ending with `suffix` (temporary files excluded), sorted."""
        return list(self.find_sizes(rel, suffix))

    def find_sizes(self, rel: str, suffix: str = "") -> dict[str, int]:
        """{relative path: size in bytes} of the files `find` lists, in path order (one listing, no request per
        file)."""
        base = self.path(rel)

        def listing() -> dict:
            self.fs.invalidate_cache()
            try:
                return self.fs.find(base, detail=True)
            except FileNotFoundError:
                return {}

        prefix = self.root + "/"
        found = with_retries(listing, self._uri(rel), self.retry)
        return dict(sorted((p[len(prefix):] if p.startswith(prefix) else p, int(info.get("size") or 0))
                           for p, info in found.items() if p.endswith(suffix) and TMP_MARK not in p))

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files that killed writers left behind (local roots only); returns how many.

        Several commands may write under one root at once (a cron sweep, a watcher, a compaction), so a
        temporary file is removed only when it is provably stale (`is_stale`): never another live writer's."""
        if not self.local or not os.path.isdir(self.root):
            return 0
        n, now = 0, time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(dirpath, name)
                if TMP_MARK in name and is_stale(path, now):
                    try:
                        os.remove(path)
                    except FileNotFoundError:  # its writer renamed it, or another command removed it
                        continue
                    n += 1
        return n

    def check_writable(self) -> None:
        """Raise UserInputError/StorageError unless a file can be created under the root.

        Local roots are checked without creating anything; remote roots get a probe object, removed after.
        """
        if self.local:
            here = self.root
            while not os.path.exists(here):
                here = os.path.dirname(here) or "."
            if not os.path.isdir(here) or not os.access(here, os.W_OK | os.X_OK):
                raise UserInputError(f"--out {self.uri!r} is not writable ({here!r} is not a writable folder); "
                                     "pass a folder you can write to")
            return
        probe = f".neuron-atlas-probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"")
        with_retries(lambda: self.fs.rm_file(self.path(probe)), self._uri(probe), self.retry)


def is_stale(path: str, now: float | None = None) -> bool:
    """Whether a temporary file (`<name>.tmp-<host>-<pid>-<random>`, as `Store.write_bytes` names them) is
    no one's any more: its writer was a process of this host that has exited, or it is older than `STALE_S`
    (a writer on another host sharing the folder, a reused pid, or a name from before owners were recorded)."""
    owner = path.rsplit(TMP_MARK, 1)[-1].split("-")
    if len(owner) == 3 and owner[0] == _host_tag() and owner[1].isdigit() and not _alive(int(owner[1])):
        return True
    try:
        return (time.time() if now is None else now) - os.path.getmtime(path) > STALE_S
    except FileNotFoundError:
        return False


def _host_tag() -> str:
    """This host, as 8 hex digits (a hostname may hold '-' or characters a file name should not)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _content_type_kwargs(fs, content_type: str | None) -> dict:
    """The keyword by which `fs.pipe_file` stores an object's Content-Type (S3: ContentType, GCS: content_type)."""
    if content_type is None:
        return {}
    protocols = _protocols(fs)
    if "s3" in protocols:
        return {"ContentType": content_type}
    if "gs" in protocols or "gcs" in protocols:
        return {"content_type": content_type}
    return {}


def _protocols(fs) -> tuple:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)
