"""Sets of real images named by one `--images` URI, listed on the driver and read in shards by the workers.

A URI names one of:
- `offline` or `offline-photos`: the photos bundled with skimage and scikit-learn (pipelines/photos.py);
- `fashion-mnist:train`, `fashion-mnist:test`, or a folder or file of IDX images (pipelines/idx.py), labelled;
- a local folder, an S3 (or any fsspec) prefix, or one file: every .jpg/.jpeg/.png under it, recursively,
  sorted by path. Files with other names are not images: they are listed in `ImageSet.ignored` so that the
  caller can name them in its log. When every image lies exactly one folder below the root (and none at
  the root), the folder names are the labels (the ImageFolder layout: `root/<class>/<image>`);
- a Parquet file, or a folder/prefix holding Parquet files and no images: one image per row, its bytes in
  a column `image` (binary, or a struct with a `bytes` field, as Hugging Face datasets write it), else the
  only binary column; labels from a `label` column when there is one. Rows are sorted by file, then row.

A source is a string: the file's URI, `offline:<name>`, or `<parquet or IDX file URI>#<row>`. `read_images` returns
the pixels of the sources it could decode and, for each one it could not (a missing or corrupt file, bytes
that are not an image), the source and the reason: the caller skips and counts them, never crashes. Storage
faults that outlast their retries raise StorageError as everywhere else.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from models.errors import StorageError, UserInputError
from models.retry import RetryPolicy, with_retries
from models.storage_client import read_uri, url_to_fs

from .idx import idx_image, idx_split
from .photos import OFFLINE_SETS, offline_image, offline_sources

__all__ = ["Source", "ImageSet", "list_image_set", "read_images", "load_image", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NAMED_SETS = ", ".join(map(repr, (*OFFLINE_SETS, "fashion-mnist:train", "fashion-mnist:test")))


@dataclass(frozen=True)
class Source:
    uri: str
    label: str | None = None


@dataclass(frozen=True)
class ImageSet:
    uri: str
    sources: tuple[Source, ...]
    ignored: tuple[str, ...] = ()  # files under the URI that are not images

    @property
    def digest(self) -> str:
        """A digest of the listing (sources and labels, in order): a changed set gives a new digest."""
        h = hashlib.sha256()
        for s in self.sources:
            h.update(f"{s.uri}\t{s.label}\n".encode())
        return h.hexdigest()[:16]

    @property
    def labelled(self) -> bool:
        return any(s.label is not None for s in self.sources)


def _protocol(fs) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def list_image_set(uri: str, storage_options: Mapping[str, Any], policy: RetryPolicy | None = None) -> ImageSet:
    """The images `uri` names, in order; UserInputError when there is nothing there or nothing usable."""
    offline = offline_sources(uri)
    if offline is not None:
        return ImageSet(uri, tuple(Source(s) for s in offline))
    idx = idx_split(uri)
    if idx is not None:
        labels = idx.labels() or [None] * idx.count()
        return ImageSet(uri, tuple(Source(f"{idx.images_file}#{i}", lab) for i, lab in enumerate(labels)))
    policy = policy or RetryPolicy()
    try:
        fs, root = url_to_fs(uri, storage_options, policy)
    except (ImportError, ValueError, TypeError) as e:
        raise UserInputError(f"cannot open --images {uri!r}: {e}") from e
    found = with_retries(lambda: fs.find(root) if fs.isdir(root) else [root] if fs.exists(root) else None, uri,
                         policy)
    if found is None:
        raise UserInputError(f"--images {uri!r} not found; pass a folder, a bucket prefix or a Parquet file of "
                             f"images, or one of {_NAMED_SETS}")
    remote = _protocol(fs) not in ("file", "local")
    full = (lambda p: f"{_protocol(fs)}://{p}") if remote else (lambda p: p)
    found = sorted(found)
    images = [p for p in found if p.lower().endswith(IMAGE_SUFFIXES)]
    parquet = [p for p in found if p.lower().endswith(".parquet")]
    if images:
        rel = [posixpath.relpath(p, root) if p != root else posixpath.basename(p) for p in images]
        folders = all(r.count("/") == 1 for r in rel)
        sources = tuple(Source(full(p), r.split("/")[0] if folders else None) for p, r in zip(images, rel))
        return ImageSet(uri, sources, tuple(full(p) for p in found if not p.lower().endswith(IMAGE_SUFFIXES)))
    if parquet:
        sources = [s for p in parquet for s in _parquet_rows(fs, p, full(p))]
        ignored = tuple(full(p) for p in found if not p.lower().endswith(".parquet"))
        if sources:
            return ImageSet(uri, tuple(sources), ignored)
    raise UserInputError(f"no .jpg/.jpeg/.png images (nor Parquet rows of image bytes) under --images {uri!r}; "
                         f"pass a folder or prefix that holds some, or one of {_NAMED_SETS}")


def _image_column(schema: pa.Schema, where: str) -> str:
    def holds_bytes(t: pa.DataType) -> bool:
        return pa.types.is_binary(t) or pa.types.is_large_binary(t) or (
            pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)

    if "image" in schema.names and holds_bytes(schema.field("image").type):
        return "image"
    binary = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if len(binary) == 1:
        return binary[0]
    raise UserInputError(f"Parquet file {where!r} has no image column: name it 'image' (binary, or a struct "
                         f"with a 'bytes' field) or keep exactly one binary column (found {binary or 'none'})")


def _parquet_rows(fs, path: str, uri: str) -> list[Source]:
    def read_meta():
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            labels = pf.read(columns=["label"]).column("label").to_pylist() if "label" in schema.names else None
            return schema, pf.metadata.num_rows, labels

    try:
        schema, rows, labels = with_retries(read_meta, uri)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserInputError(f"cannot read Parquet file {uri!r} under --images: {e}") from e
    _image_column(schema, uri)
    return [Source(f"{uri}#{i}", None if labels is None or labels[i] is None else str(labels[i]))
            for i in range(rows)]


def _decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"))


def load_image(source: str, storage_options: Mapping[str, Any], policy: RetryPolicy | None = None) -> np.ndarray:
    """uint8 RGB [H, W, 3] of one source; raises (OSError, ValueError, ...) when it cannot be read."""
    images, failed = read_images([source], storage_options, policy)
    if failed:
        raise OSError(f"cannot read image {source!r}: {failed[0][1]}")
    return images[0]


def read_images(sources: Sequence[str], storage_options: Mapping[str, Any], policy: RetryPolicy | None = None
                ) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    """Pixels of each source (None where it failed) and (source, reason) for each failure. Remote reads
    are retried within `policy`'s budget, each attempt bounded (models/storage_client.py)."""
    policy = policy or RetryPolicy()
    out: list[np.ndarray | None] = [None] * len(sources)
    failed: list[tuple[str, str]] = []
    rows: dict[str, list[tuple[int, int]]] = defaultdict(list)  # parquet file -> (position, row)
    for pos, source in enumerate(sources):
        photo = offline_image(source)
        if photo is not None:
            out[pos] = photo
            continue
        try:
            grey = idx_image(source)
        except (IndexError, UserInputError) as e:
            failed.append((source, _reason(e)))
            continue
        if grey is not None:
            out[pos] = np.repeat(grey[..., None], 3, axis=2)
            continue
        file, sep, row = source.rpartition("#")
        if sep and file.lower().endswith(".parquet") and row.isdigit():
            rows[file].append((pos, int(row)))
            continue
        try:
            out[pos] = _decode(_read_file(source, storage_options, policy))
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - any decode failure makes the file unreadable, not the run
            failed.append((source, _reason(e)))
    for file, wanted in rows.items():
        for pos, result in _read_parquet_rows(file, wanted, storage_options, policy):
            if isinstance(result, np.ndarray):
                out[pos] = result
            else:
                failed.append((sources[pos], result))
    return out, failed


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _read_file(uri: str, storage_options: Mapping[str, Any], policy: RetryPolicy) -> bytes:
    """A remote object is read with retries (a persistent fault raises StorageError and stops the run); a
    local file that cannot be read (missing, no permission) fails alone, so the caller skips it."""
    if _local(uri):
        with fsspec.open(uri, "rb") as f:
            return f.read()
    return read_uri(uri, storage_options, policy)


def _read_parquet_rows(uri: str, wanted: list[tuple[int, int]], storage_options: Mapping[str, Any],
                       policy: RetryPolicy):
    """(position, pixels or failure reason) for rows of one Parquet file; reads only their row groups."""
    def read() -> dict[int, object]:
        fs, path = url_to_fs(uri, storage_options, policy)
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            column = _image_column(pf.schema_arrow, uri)
            starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
            by_group: dict[int, list[int]] = defaultdict(list)
            for _, r in wanted:
                if 0 <= r < starts[-1]:
                    by_group[int(np.searchsorted(starts, r, side="right") - 1)].append(r)
            blobs: dict[int, object] = {}
            for g, rs in by_group.items():
                col = pf.read_row_group(g, columns=[column]).column(column)
                for r in rs:
                    value = col[r - int(starts[g])].as_py()
                    blobs[r] = value.get("bytes") if isinstance(value, dict) else value
        return blobs

    try:
        blobs = read() if _local(uri) else with_retries(read, uri, policy, missing_ok=True)
    except UserInputError:  # StorageError included
        raise
    except Exception as e:  # noqa: BLE001 - a missing or corrupt file: every wanted row fails
        return [(pos, _reason(e)) for pos, _ in wanted]
    results = []
    for pos, r in wanted:
        blob = blobs.get(r)
        if not isinstance(blob, (bytes, bytearray)):
            results.append((pos, f"row {r} has no image bytes"))
            continue
        try:
            results.append((pos, _decode(blob)))
        except Exception as e:  # noqa: BLE001
            results.append((pos, _reason(e)))
    return results
