"""Training checkpoints under a prefix: which files are snapshots, their steps and labels, which steps a run keeps.

- A checkpoint is a file under `--checkpoints` (searched recursively) whose name ends in one of
  `CHECKPOINT_SUFFIXES`; its training step is the last integer in its file name (`ckpt_000120.pt`,
  `epoch3-step1500.pth` -> 1500). `--pattern REGEX` replaces both rules: a file is a checkpoint when the
  regex matches (`re.search`) its path relative to the prefix, and the named group `step` is its step
  (`checkpoint-(?P<step>\\d+)/model.bin`). Markers and sidecars (`.done`, `.json`) are never checkpoints.
- The snapshot label is the step zero-padded to `LABEL_WIDTH` digits, so partitions sort in step order.
- `StepSelection`: `--every N` keeps the steps that are multiples of N; `--steps A:B[:C]` keeps
  `range(A, B, C)` (A defaults to 0, B to no end, C to 1). A step that is kept stays kept as files arrive.
- `list_prefix` lists the prefix with each file's size and modification stamp (what the completeness rule
  compares between polls); `read_metrics` reads a checkpoint's sidecar `<name>.json` (or `<stem>.json`).
Nothing here reads a checkpoint's contents.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Mapping

from models.errors import StorageError, UserInputError
from models.retry import RetryPolicy, with_retries
from models.storage_client import url_to_fs

__all__ = ["CHECKPOINT_SUFFIXES", "LABEL_WIDTH", "Listed", "Checkpoint", "StepRange", "StepSelection",
           "compile_pattern", "parse_step", "snapshot_label", "parse_step_range", "find_checkpoints",
           "Prefix", "companions"]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
COMPANION_SUFFIXES = (".done", ".json")
LABEL_WIDTH = 9
_INTEGERS = re.compile(r"\d+")


@dataclass(frozen=True)
class Listed:
    """One file under the prefix: its path relative to the prefix, size and modification stamp."""

    rel: str
    size: int
    stamp: str  # local mtime or the object store's LastModified/ETag, as text


@dataclass(frozen=True)
class Checkpoint:
    """A listed file that names a training step."""

    uri: str
    rel: str
    step: int
    size: int
    stamp: str

    @property
    def label(self) -> str:
        return snapshot_label(self.step)

    @property
    def signature(self) -> tuple[int, str]:
        return self.size, self.stamp


def snapshot_label(step: int) -> str:
    """The step as the snapshot label: zero-padded so that labels (and partitions) sort in step order."""
    return f"{step:0{LABEL_WIDTH}d}"


def compile_pattern(text: str | None) -> re.Pattern | None:
    """--pattern as a regex with a named group `step`; UserInputError when invalid or without it."""
    if text is None:
        return None
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise UserInputError(f"--pattern {text!r} is not a regular expression ({e}); e.g. "
                             r"'ckpt_(?P<step>\d+)\.pt'") from e
    if "step" not in pattern.groupindex:
        raise UserInputError(f"--pattern {text!r} has no named group 'step'; write it as (?P<step>\\d+), e.g. "
                             r"'ckpt_(?P<step>\d+)\.pt'")
    return pattern


def parse_step(rel: str, pattern: re.Pattern | None = None) -> int | None:
    """The training step of the file at `rel` (relative to the prefix), or None when it is no checkpoint."""
    name = posixpath.basename(rel)
    if name.endswith(COMPANION_SUFFIXES):
        return None
    if pattern is not None:
        m = pattern.search(rel)
        if m is None or m.group("step") is None:
            return None
        try:
            return int(m.group("step"))
        except ValueError:
            return None
    if not name.endswith(CHECKPOINT_SUFFIXES):
        return None
    numbers = _INTEGERS.findall(posixpath.splitext(name)[0])
    return int(numbers[-1]) if numbers else None


@dataclass(frozen=True)
class StepRange:
    start: int = 0
    stop: int | None = None
    stride: int = 1

    def __contains__(self, step: int) -> bool:
        return step >= self.start and (self.stop is None or step < self.stop) and (step - self.start) % self.stride == 0

    def __str__(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop}:{self.stride}"


def parse_step_range(text: str) -> StepRange:
    """'A:B[:C]' (parts optional: '1000:', ':5000', '0::500') -> StepRange; ValueError when malformed."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"{text!r} is not A:B or A:B:C")
    try:
        start = int(parts[0]) if parts[0] else 0
        stop = int(parts[1]) if parts[1] else None
        stride = int(parts[2]) if len(parts) == 3 and parts[2] else 1
    except ValueError:
        raise ValueError(f"{text!r} is not A:B or A:B:C of integers") from None
    if start < 0 or stride < 1 or (stop is not None and stop <= start):
        raise ValueError(f"{text!r} is an empty range (need 0 <= A < B and C >= 1)")
    return StepRange(start, stop, stride)


@dataclass(frozen=True)
class StepSelection:
    """Which training steps a run keeps: multiples of `every`, those in `steps`, or all."""

    every: int | None = None
    steps: StepRange | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise UserInputError(f"--every {self.every} must be at least 1 (keep the steps that are multiples of N)")
        if self.every is not None and self.steps is not None:
            raise UserInputError("pass --every N or --steps A:B:C, not both")

    def keeps(self, step: int) -> bool:
        if self.every is not None:
            return step % self.every == 0
        return self.steps is None or step in self.steps

    def describe(self) -> str:
        return f"every {self.every}" if self.every else (f"steps {self.steps}" if self.steps else "all")


def find_checkpoints(listing: Mapping[str, Listed], uri: str, pattern: re.Pattern | None
                     ) -> tuple[list[Checkpoint], list[str], list[tuple[Checkpoint, Checkpoint]]]:
    """(checkpoints sorted by step, files with a checkpoint suffix but no step, (dropped, kept) pairs of two
    files with one step: the first name in sorted order keeps it)."""
    found: dict[int, Checkpoint] = {}
    no_step, clashes = [], []
    base = uri.rstrip("/")
    for rel in sorted(listing):
        item = listing[rel]
        step = parse_step(rel, pattern)
        if step is None:
            if pattern is None and rel.endswith(CHECKPOINT_SUFFIXES):
                no_step.append(rel)
            continue
        ckpt = Checkpoint(f"{base}/{rel}", rel, step, item.size, item.stamp)
        if step in found:
            clashes.append((ckpt, found[step]))
            continue
        found[step] = ckpt
    return [found[s] for s in sorted(found)], no_step, clashes


def companions(rel: str, suffix: str) -> tuple[str, str]:
    """The two names a marker or sidecar of the checkpoint at `rel` may have: `<name><suffix>` and
    `<stem><suffix>` (ckpt_100.pt.done or ckpt_100.done)."""
    stem = posixpath.splitext(rel)[0]
    return rel + suffix, stem + suffix


class Prefix:
    """The --checkpoints prefix on any fsspec filesystem: listings (with sizes and stamps) and small reads."""

    def __init__(self, uri: str | None, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy | None = None):
        if not uri or not uri.strip():
            raise UserInputError("--checkpoints is missing or empty; pass the folder or prefix the trainer writes "
                                 "checkpoints to")
        self.uri = uri.rstrip("/") or uri
        self.retry = retry or RetryPolicy()
        try:
            self.fs, root = url_to_fs(self.uri, storage_options, self.retry)
        except (ImportError, ValueError, TypeError) as e:
            raise UserInputError(f"cannot open --checkpoints {uri!r}: {e}") from e
        self.root = root.rstrip("/")

    def list(self) -> dict[str, Listed]:
        """Every file under the prefix (empty when the prefix does not exist yet)."""
        def listing() -> dict:
            self.fs.invalidate_cache()  # s3fs caches listings; a watcher must see new objects
            try:
                return self.fs.find(self.root, detail=True)
            except FileNotFoundError:
                return {}

        out = {}
        prefix = self.root + "/"
        for path, info in with_retries(listing, self.uri, self.retry).items():
            if info.get("type", "file") != "file" or not path.startswith(prefix):
                continue
            stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("ETag")
            out[path[len(prefix):]] = Listed(path[len(prefix):], int(info.get("size") or 0), str(stamp))
        return out

    def exists(self) -> bool:
        return bool(with_retries(lambda: self.fs.exists(self.root), self.uri, self.retry))

    def read_metrics(self, rel: str, listing: Mapping[str, Listed]) -> dict | None:
        """The checkpoint's sidecar metrics (a JSON object), or None when there is none or it is unreadable."""
        for name in companions(rel, ".json"):
            if name in listing:
                try:
                    blob = with_retries(lambda: self.fs.cat_file(f"{self.root}/{name}"), f"{self.uri}/{name}",
                                        self.retry, missing_ok=True)
                    data = json.loads(blob)
                except StorageError:
                    raise
                except (OSError, ValueError):
                    return None
                return data if isinstance(data, dict) else None
        return None
