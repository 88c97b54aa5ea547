"""Video files as bytes: lossless animated WebP (the frames exactly), H.264 MP4 (PyAV), a contact strip PNG,
and decoding them (and any container PyAV opens) back into uint8 frames `[T, H, W, 3]`.

Lossless WebP keeps every pixel, but libwebp merges a frame identical to the one before it into that frame
(its duration grows). Every frame is therefore written with the same duration, `frame_ms(fps)` whole
milliseconds, and `webp_frames` expands a frame of k times that duration into k frames: the decoded frames
equal the written ones, their count included. The MP4 is for people (yuv420p loses colour detail); odd sizes
are padded by one replicated edge row or column, since H.264 needs even dimensions.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
from PIL import Image

__all__ = ["frame_ms", "webp_bytes", "webp_frames", "mp4_bytes", "decode_frames", "strip_png", "strip_indices",
           "fit_frame"]


def frame_ms(fps: float) -> int:
    """The whole-millisecond duration of one frame at `fps`."""
    return max(1, round(1000.0 / fps))


def webp_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 [T, H, W, 3] -> a lossless animated WebP, every frame lasting frame_ms(fps), looping."""
    images = [Image.fromarray(f, "RGB") for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], lossless=True, quality=100,
                   method=4, exact=True, duration=frame_ms(fps), loop=0)
    return buf.getvalue()


def webp_frames(data: bytes, fps: float | None = None) -> np.ndarray:
    """Decode an animated (or still) WebP into uint8 [T, H, W, 3], expanding merged frames; without `fps`,
    the frame duration is taken as the greatest common divisor of the stored durations."""
    with Image.open(io.BytesIO(data)) as im:
        frames, durations = [], []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            im.load()
            frames.append(np.asarray(im.convert("RGB")))
            durations.append(int(im.info.get("duration") or 0))
    base = frame_ms(fps) if fps else math.gcd(*durations) if any(durations) else 0
    counts = [max(1, round(d / base)) if base else 1 for d in durations]
    return np.stack([f for f, k in zip(frames, counts) for _ in range(k)])


def mp4_bytes(frames: np.ndarray, fps: float, crf: int = 18) -> bytes:
    """uint8 [T, H, W, 3] -> H.264 (libx264, yuv420p, constant quality `crf`) in an MP4 container."""
    import av

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def decode_frames(data: bytes, first_only: bool = False) -> np.ndarray:
    """Every frame of a video file (MP4 or any container PyAV opens; animated WebP) as uint8 [T, H, W, 3]
    (only the first with `first_only`: a cheap check). ValueError for bytes with no decodable video frame."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return webp_frames(data)[:1] if first_only else webp_frames(data)
    import av

    frames = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            for f in container.decode(video=0):
                frames.append(f.to_ndarray(format="rgb24"))
                if first_only:
                    break
    except av.FFmpegError as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e
    if not frames:
        raise ValueError("no frames")
    return np.stack(frames)


def strip_indices(frames: int, count: int = 8) -> list[int]:
    """Every Nth frame, N = ceil(T / count), starting with the first: at most `count` frames."""
    every = max(1, math.ceil(frames / count))
    return list(range(0, frames, every))


def strip_png(frames: np.ndarray, count: int = 8, gap: int = 2, scale: int = 1) -> bytes:
    """A contact strip: every Nth frame (strip_indices) side by side on white, `gap` px apart, each frame
    enlarged `scale` times (nearest neighbour, so pixels stay pixels)."""
    picked = [frames[i] for i in strip_indices(len(frames), count)]
    h, w = frames.shape[1] * scale, frames.shape[2] * scale
    canvas = np.full((h, len(picked) * (w + gap) - gap, 3), 255, np.uint8)
    for k, f in enumerate(picked):
        canvas[:, k * (w + gap):k * (w + gap) + w] = f.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(canvas, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] at the net's input size: as is when it already is, else the short side resized to the
    size and the centre cropped (bilinear)."""
    th, tw = size
    h, w = frame.shape[:2]
    if (h, w) == (th, tw):
        return frame
    scale = max(th / h, tw / w)
    rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
    img = Image.fromarray(frame).resize((rw, rh), Image.BILINEAR)
    left, top = (rw - tw) // 2, (rh - th) // 2
    return np.asarray(img.crop((left, top, left + tw, top + th)))
