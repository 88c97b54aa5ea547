"""`--init URI`: the real photos that synthesis starts from, one per seed (caricatures; DGN-AM from a photo's code).

The URI is anything `--images` takes (a photo, a folder or bucket prefix of photos, a Parquet file of image
bytes, an offline set; pipelines/imagesets.py), read once by the driver. One photo starts every seed; a set
of N photos needs `--seeds N` (seed i starts from the i-th photo in listing order). Each photo is prepared as
the net sees real images (pipelines/photos.preprocessing_input: short side resized, centre crop) and named in
the keys by a digest of those pixels, so another photo, or the same file edited, makes new keys; the run
writes each as `inits/<digest>.png` under --out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from models.errors import UserInputError
from models.preprocess import Preprocessing
from models.retry import RetryPolicy

from .imagesets import list_image_set, read_images
from .photos import as_uint8, preprocessing_input

__all__ = ["InitPhotos", "read_init_photos", "init_path"]


@dataclass(frozen=True)
class InitPhotos:
    uri: str
    sources: tuple[str, ...]  # per seed
    images: tuple[np.ndarray, ...]  # per seed: float32 [C, H, W] in [0, 1], the net's input size
    digests: tuple[str, ...]  # per seed: sha256 (16 hex) of the prepared pixels

    def hyperparams(self) -> dict:
        return {"init": list(self.digests)}

    def write(self, store) -> None:
        """Each distinct start photo as the net saw it, `inits/<digest>.png` under --out (idempotent), so the
        site can show a caricature beside its photo (the key's `init` digests name the files)."""
        from .sink import png_bytes

        present = set(store.find("inits", ".png"))
        for digest, image in dict(zip(self.digests, self.images)).items():
            if init_path(digest) not in present:
                store.write_bytes(init_path(digest), png_bytes(as_uint8(image)))


def init_path(digest: str) -> str:
    """The start photo with this digest, relative to --out."""
    return f"inits/{digest}.png"


def read_init_photos(uri: str, seeds: int, pre: Preprocessing, storage_options: Mapping[str, Any],
                     policy: RetryPolicy | None = None) -> InitPhotos:
    """The start photo of each of `seeds` seeds; UserInputError (one line) when `uri` holds no readable image,
    an unreadable one, or a number of photos that is neither 1 nor `seeds`."""
    try:
        listing = list_image_set(uri, storage_options, policy)
    except UserInputError as e:
        raise UserInputError(str(e).replace("--images", "--init")) from None
    sources = [s.uri for s in listing.sources]
    if len(sources) not in (1, seeds):
        raise UserInputError(f"--init {uri!r} holds {len(sources)} photos for {seeds} seeds: give one photo (every "
                             f"seed starts from it) or one per seed (--seeds {len(sources)})")
    images, failed = read_images(sources, storage_options, policy)
    if failed:
        source, reason = failed[0]
        raise UserInputError(f"--init: cannot read {source!r}: {reason}")
    prepared = [np.ascontiguousarray(preprocessing_input(img, pre), np.float32) for img in images]
    digests = [hashlib.sha256(p.tobytes()).hexdigest()[:16] for p in prepared]
    pick = [0] * seeds if len(sources) == 1 else list(range(seeds))
    return InitPhotos(uri, tuple(sources[i] for i in pick), tuple(prepared[i] for i in pick),
                      tuple(digests[i] for i in pick))
