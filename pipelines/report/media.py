"""Thumbnails and copies of OUT's images for the site, each made once.

`materialize` makes what a `paths.Locator` recorded and the site does not hold yet: a JPEG thumbnail
(longest side `thumb_px`, aspect kept) per grid image, and, for a site outside OUT, a byte-for-byte copy per
linked file. A file that exists in the site is never remade: OUT's image names derive from their keys
(the output contract), so the same path always holds the same picture. Work runs on a thread pool (storage
round trips and Pillow's codecs release the GIL). An image that cannot be decoded gets a grey placeholder
thumbnail and a note, so no page links a missing file; delete `thumbs/` in the site to remake them all.
"""

from __future__ import annotations

import io
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from PIL import Image, UnidentifiedImageError

from ..storage import Store
from .paths import FILES, Locator, thumb_path

__all__ = ["materialize", "MediaSummary", "content_type", "make_thumbnail"]

JPEG_QUALITY = 85


@dataclass
class MediaSummary:
    thumbs_made: int = 0
    thumbs_kept: int = 0
    copies_made: int = 0
    copies_kept: int = 0
    notes: list[str] = field(default_factory=list)


def content_type(path: str) -> str:
    """The Content-Type a static host should serve `path` with."""
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def make_thumbnail(png: bytes, px: int) -> bytes:
    """JPEG bytes of the image scaled so its longest side is at most `px` (never enlarged)."""
    with Image.open(io.BytesIO(png)) as img:
        img = img.convert("RGB")
        img.thumbnail((px, px), Image.Resampling.LANCZOS, reducing_gap=2.0)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()


def _placeholder(px: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (px, px), (128, 128, 128)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def materialize(out: Store, site: Store, locator: Locator, existing: Iterable[str], workers: int = 8,
                log: Callable[[str], None] = print) -> MediaSummary:
    """Make every thumbnail and copy `locator` recorded that is not in `existing` (site-root paths)."""
    have = set(existing)
    summary = MediaSummary()
    px = locator.thumb_px
    thumbs = sorted(r for r in locator.thumbs if thumb_path(r, px) not in have)
    copies = sorted(r for r in locator.copies if f"{FILES}/{r}" not in have)
    summary.thumbs_kept = len(locator.thumbs) - len(thumbs)
    summary.copies_kept = len(locator.copies) - len(copies)

    def thumb(rel: str) -> str | None:
        note = None
        try:
            data = out.read_bytes(rel)  # a persistent storage fault (StorageError) stops the report
        except FileNotFoundError:
            data, note = None, f"{rel} is missing; its thumbnail is a grey placeholder"
        try:
            small = make_thumbnail(data, px) if data is not None else _placeholder(px)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            small, note = _placeholder(px), f"{rel} cannot be decoded ({e}); its thumbnail is a grey placeholder"
        site.write_bytes(thumb_path(rel, px), small, content_type="image/jpeg")
        return note

    def copy(rel: str) -> None:
        site.write_bytes(f"{FILES}/{rel}", out.read_bytes(rel), content_type=content_type(rel))

    if thumbs or copies:
        log(f"report: making {len(thumbs)} thumbnails and {len(copies)} copies "
            f"({summary.thumbs_kept + summary.copies_kept} already in the site)")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        summary.notes += [n for n in pool.map(thumb, thumbs) if n]
        list(pool.map(copy, copies))
    summary.thumbs_made, summary.copies_made = len(thumbs), len(copies)
    return summary
