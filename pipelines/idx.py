"""IDX image sets (the MNIST file format), Fashion-MNIST's among them, as `--images` sources.

A URI names one split:
- `fashion-mnist:train` or `fashion-mnist:test` (`fashion-mnist` alone is the training split): Debian's
  `dataset-fashion-mnist` files under /usr/share/datasets/fashion-mnist/ (`FASHION_MNIST_DIR` overrides);
- a folder holding `<split>-images-idx3-ubyte[.gz]` files (the training split, `train`, when there is one;
  else the only split there), or one such images file: its labels come from the `-labels-idx1-ubyte[.gz]`
  file beside it when there is one.

A source is `<images file>#<row>` (see pipelines/imagesets.py); labels are the class names of Fashion-MNIST
for its files and the class indices otherwise, so `--same-class` works. A missing or truncated file raises
one UserInputError naming it and the package that installs it. Decoded files are cached per process: a
worker reads the 47 MB of the training split once, not once per image.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from functools import lru_cache

import fsspec
import numpy as np

from models.errors import UserInputError
from models.fashion import FASHION_CLASSES as FASHION_MNIST_NAMES

__all__ = ["parse_idx", "idx_split", "idx_image", "is_idx_images", "FASHION_MNIST_NAMES", "IdxSplit"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_INSTALL = "install it with 'apt-get install dataset-fashion-mnist' (make dgn-demo does)"
_IMAGES = re.compile(r"^(?P<split>.+)-images-idx3-ubyte(?P<gz>\.gz)?$")
_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}
_REINSTALL = "write the file again (Fashion-MNIST's: 'apt-get install --reinstall dataset-fashion-mnist')"
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """The array an IDX file holds (gzip-compressed or not); UserInputError naming `name` when it is not a
    complete IDX file."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise UserInputError(f"{name} is truncated or corrupt ({e}); {_REINSTALL}") from e
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _DTYPES:
        raise UserInputError(f"{name} is not an IDX file (bad magic number); {_REINSTALL}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserInputError(f"{name} is truncated (header cut short); {_REINSTALL}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    need = header + int(np.prod(dims)) * dtype.itemsize
    if len(data) < need:
        raise UserInputError(f"{name} is truncated ({len(data)} of {need} bytes); {_REINSTALL}")
    return np.frombuffer(data, dtype, count=int(np.prod(dims)), offset=header).reshape(dims)


class IdxSplit:
    """One split: its images file (the sources' prefix), and a label per image (None when unlabelled)."""

    def __init__(self, images_file: str, labels_file: str | None, fashion: bool):
        self.images_file, self.labels_file, self.fashion = images_file, labels_file, fashion

    def count(self) -> int:
        return len(_load(self.images_file))

    def labels(self) -> list[str] | None:
        if self.labels_file is None:
            return None
        labels = _load(self.labels_file)
        names = FASHION_MNIST_NAMES if self.fashion and int(labels.max(initial=0)) < 10 else None
        return [names[v] if names else str(int(v)) for v in labels]

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 images [N, H, W] and int64 labels [N] (None when unlabelled), shared: do not modify."""
        labels = _load(self.labels_file).astype(np.int64) if self.labels_file else None
        return _load(self.images_file), labels


def is_idx_images(path: str) -> bool:
    return _IMAGES.match(os.path.basename(path)) is not None


def idx_split(uri: str) -> IdxSplit | None:
    """The split `uri` names (module docstring), or None when `uri` names no IDX set."""
    if uri == "fashion-mnist" or uri.startswith("fashion-mnist:"):
        split = uri.partition(":")[2] or "train"
        if split not in _SPLITS:
            raise UserInputError(f"--images {uri!r}: use fashion-mnist:train or fashion-mnist:test")
        root = os.environ.get("FASHION_MNIST_DIR", FASHION_MNIST_DIR)
        return _split_in(root, _SPLITS[split], uri, fashion=True)
    if "://" in uri and not uri.startswith("file://"):
        return None  # remote IDX files are not supported; the caller lists images there as usual
    path = uri.removeprefix("file://")
    if os.path.isfile(path) and is_idx_images(path):
        m = _IMAGES.match(os.path.basename(path))
        return _split_in(os.path.dirname(path), m["split"], uri, fashion="fashion" in path)
    if os.path.isdir(path):
        splits = sorted({m["split"] for f in os.listdir(path) if (m := _IMAGES.match(f))})
        if not splits:
            return None
        split = "train" if "train" in splits else splits[0]
        return _split_in(path, split, uri, fashion="fashion" in path)
    return None


def _split_in(root: str, split: str, uri: str, fashion: bool) -> IdxSplit:
    def find(kind: str) -> str | None:
        for suffix in (".gz", ""):
            p = os.path.join(root, f"{split}-{kind}-ubyte{suffix}")
            if os.path.isfile(p):
                return p
        return None
    images = find("images-idx3")
    if images is None:
        raise UserInputError(f"--images {uri!r}: {os.path.join(root, f'{split}-images-idx3-ubyte.gz')} is missing; "
                             + (_INSTALL if fashion else "put the IDX images file there"))
    split_ = IdxSplit(images, find("labels-idx1"), fashion)
    n = split_.count()
    if split_.labels_file is not None and len(_load(split_.labels_file)) != n:
        raise UserInputError(f"{split_.labels_file} holds {len(_load(split_.labels_file))} labels for {n} images "
                             f"in {images}; {_REINSTALL}")
    return split_


@lru_cache(maxsize=8)
def _load(path: str) -> np.ndarray:
    try:
        with fsspec.open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserInputError(f"cannot read {path}: {e}; {_REINSTALL}") from e
    arr = parse_idx(data, path)
    if arr.ndim not in (1, 3):
        raise UserInputError(f"{path} holds a {arr.ndim}-d array; IDX image files hold [N, H, W], labels [N]")
    return arr


def idx_image(source: str) -> np.ndarray | None:
    """uint8 greyscale [H, W] of an `<images file>#<row>` source, else None (not an IDX source)."""
    file, sep, row = source.rpartition("#")
    if not sep or not row.isdigit() or not is_idx_images(file):
        return None
    images = _load(file.removeprefix("file://"))
    i = int(row)
    if i >= len(images):
        raise IndexError(f"row {i} of {file}, which holds {len(images)} images")
    return images[i]
