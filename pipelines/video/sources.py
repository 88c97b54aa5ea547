"""Real videos named by one `--videos` URI (a local folder, a bucket prefix, or one file), for the frame-order
analysis of `neuron-atlas video --analyze-order`.

A video is a file PyAV opens (.mp4, .m4v, .mov, .avi, .mkv, .webm), an animated .webp (neuron-atlas's own
lossless frames), or a folder of frame images (.png, .jpg, .jpeg, read in name order) holding no video
file of its own. Videos are listed recursively and sorted by path. When every video lies exactly one folder
below the root, that folder's name is its label (root/<class>/<video>, as ImageFolder). Reading a video that
is missing, empty or not decodable raises UserInputError naming it; storage faults that outlast their retries
raise StorageError as everywhere else.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from PIL import Image

from models.errors import UserInputError
from models.retry import RetryPolicy

from ..storage import Store
from .media import decode_frames, fit_frame

__all__ = ["RealVideo", "VideoSet", "list_videos", "read_video", "pick_frames", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".webp")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class RealVideo:
    name: str  # path relative to VideoSet.uri (the folder above, when --videos names one file)
    files: tuple[str, ...]  # relative paths: one video file, or a folder's frames in order
    label: str | None = None


@dataclass(frozen=True)
class VideoSet:
    uri: str
    store: Store
    videos: tuple[RealVideo, ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for v in self.videos:
            h.update(f"{v.name}\t{v.label}\t{len(v.files)}\n".encode())
        return h.hexdigest()[:16]


def list_videos(uri: str, storage_options: Mapping[str, Any], retry: RetryPolicy | None = None) -> VideoSet:
    """The videos `uri` names, in path order; UserInputError when it names none."""
    store = Store(uri, storage_options, retry)
    if not store.fs.exists(store.root):
        raise UserInputError(f"--videos {uri!r} not found; pass a folder or prefix of MP4s or frame folders")
    if not store.fs.isdir(store.root):  # one file: the folder above is the root
        parent, base = uri.rstrip("/").rsplit("/", 1) if "/" in uri.rstrip("/") else (".", uri)
        return VideoSet(parent, Store(parent, storage_options, retry), (RealVideo(base, (base,)),))
    files = store.find("")
    videos = [RealVideo(f, (f,)) for f in files if f.lower().endswith(VIDEO_SUFFIXES)]
    holders = {posixpath.dirname(v.name) for v in videos}
    folders: dict[str, list[str]] = {}
    for f in files:
        folder = posixpath.dirname(f)
        if f.lower().endswith(FRAME_SUFFIXES) and folder not in holders:
            folders.setdefault(folder, []).append(f)
    videos += [RealVideo(folder or ".", tuple(sorted(frames))) for folder, frames in folders.items()]
    if not videos:
        raise UserInputError(f"no videos under --videos {uri!r}: pass a folder or prefix holding video files "
                             f"({', '.join(VIDEO_SUFFIXES)}) or folders of frame images")
    videos.sort(key=lambda v: v.name)
    if all(v.name.count("/") == 1 for v in videos):
        videos = [RealVideo(v.name, v.files, v.name.split("/")[0]) for v in videos]
    return VideoSet(uri, store, tuple(videos))


def pick_frames(total: int, frames: int | None) -> list[int]:
    """All `total` frames, or `frames` of them evenly spaced when the video is longer."""
    if frames is None or total <= frames:
        return list(range(total))
    return [int(i * total / frames) for i in range(frames)]


def read_video(vs: VideoSet, video: RealVideo, size: tuple[int, int], frames: int | None = None,
               check: bool = False) -> np.ndarray:
    """uint8 [T, H, W, 3] at the net's input size (frames of that size pass through untouched); `check` decodes
    only the first frame (and a folder's last), to find unreadable videos before any work starts."""
    where = f"{vs.uri.rstrip('/')}/{video.name}"
    try:
        if len(video.files) == 1 and video.files[0].lower().endswith(VIDEO_SUFFIXES):
            clip = decode_frames(vs.store.read_bytes(video.files[0]), first_only=check)
            keep = pick_frames(len(clip), frames)
            out = [fit_frame(clip[i], size) for i in keep]
        else:
            keep = [0, len(video.files) - 1] if check else pick_frames(len(video.files), frames)
            out = [fit_frame(_image(vs.store.read_bytes(video.files[i])), size) for i in keep]
    except (ValueError, OSError) as e:
        if isinstance(e, UserInputError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserInputError(f"cannot read video {where!r}: {first}; remove it or fix the file") from e
    return np.stack(out)


def _image(data: bytes) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
